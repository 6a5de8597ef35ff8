"""Full-size parity (issue 5): a Wan2.1 T2V-1.3B transformer with seeded random weights is saved once
by diffusers as a published-style folder (fp32, sharded), run by diffusers in bf16 and fp32 on one
480p-81f input; `wan forward` then runs the same folder and input, and this script compares.

    python3 tools/parity/full_size.py prepare DIR      # folder, inputs, reference_{bf16,fp32}.safetensors
    gpu-bundle/bin/wan forward --model DIR --inputs DIR/inputs.safetensors --out DIR/ours.safetensors --offload resident
    python3 tools/parity/full_size.py compare DIR      # prints the metric; exit 1 when out of tolerance

Metric (as tests/gpu_transformer.rs): relative RMS error ‖ours − ref_bf16‖ / ‖ref_bf16‖ must not exceed
‖ref_bf16 − ref_fp32‖ / ‖ref_fp32‖ (the reference's own bf16-vs-fp32 distance)."""
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def prepare(out: Path):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    cfg = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
               text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
               qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
    with torch.device("cuda"):
        model = WanTransformer3DModel(**cfg)
    gen = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = max(1, p[0].numel()) if p.dim() > 1 else 1
            if "norm" in name and name.endswith("weight"):
                p.copy_(0.8 + 0.4 * torch.rand(p.shape, device="cuda", generator=gen))
            elif p.dim() > 1 and "scale_shift_table" not in name:
                a = fan_in ** -0.5
                p.copy_((torch.rand(p.shape, device="cuda", generator=gen) * 2 - 1) * a)
            else:
                p.copy_((torch.rand(p.shape, device="cuda", generator=gen) * 2 - 1) * 0.05)
    folder = out / "transformer"
    model.save_pretrained(folder, max_shard_size="2GB")  # fp32, sharded with an index, as published
    del model
    torch.cuda.empty_cache()
    x = torch.randn(1, 16, 21, 60, 104, generator=torch.Generator().manual_seed(1)).bfloat16().float()
    ctx = torch.randn(1, 512, 4096, generator=torch.Generator().manual_seed(2)).bfloat16().float()
    ctx[:, 40:] = 0  # the pipeline's zero padding after a 40-token prompt
    inputs = {"hidden_states": x, "timestep": torch.tensor([999]), "encoder_hidden_states": ctx}
    save_file(inputs, out / "inputs.safetensors")
    for dtype, tag in [(torch.bfloat16, "bf16"), (torch.float32, "fp32")]:
        m = WanTransformer3DModel.from_pretrained(folder, torch_dtype=dtype).to("cuda").eval()
        with torch.no_grad():
            y = m(hidden_states=x.to("cuda", dtype), timestep=inputs["timestep"].cuda(),
                  encoder_hidden_states=ctx.to("cuda", dtype), return_dict=False)[0]
        save_file({"sample": y.float().cpu().contiguous()}, out / f"reference_{tag}.safetensors")
        del m
        torch.cuda.empty_cache()
    print(f"prepared {out}")


def rel_rms(a, b):
    return ((a - b).double().pow(2).sum() / b.double().pow(2).sum()).sqrt().item()


def compare(out: Path) -> int:
    ours = load_file(out / "ours.safetensors")["sample"].float()
    r16 = load_file(out / "reference_bf16.safetensors")["sample"]
    r32 = load_file(out / "reference_fp32.safetensors")["sample"]
    err, bound = rel_rms(ours, r16), rel_rms(r16, r32)
    ok = bool(torch.isfinite(ours).all()) and err <= bound
    print(json.dumps({"check": "full_size_parity", "model": "wan2.1-t2v-1.3b", "tokens": 32760,
                      "rel_rms_vs_ref_bf16": err, "ref_bf16_vs_fp32": bound, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    cmd, path = sys.argv[1], Path(sys.argv[2])
    path.mkdir(parents=True, exist_ok=True)
    sys.exit(prepare(path) if cmd == "prepare" else compare(path))
