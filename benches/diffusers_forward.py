"""diffusers' side of `wan bench`: WanTransformer3DModel at a published preset's shapes with random
bf16 weights, resident, one forward timed with CUDA events (1 warm-up, median of N). Prints one JSON
line like `wan bench`. Usage: python3 diffusers_forward.py PRESET [FRAMES HEIGHT WIDTH] [ITERS]"""
import json
import statistics
import sys

import torch
from diffusers import WanTransformer3DModel

PRESETS = {
    "wan2.1-t2v-1.3b": dict(num_layers=30, num_attention_heads=12, ffn_dim=8960, in_channels=16),
    "wan2.1-t2v-14b": dict(num_layers=40, num_attention_heads=40, ffn_dim=13824, in_channels=16),
    "wan2.1-i2v-14b-480p": dict(num_layers=40, num_attention_heads=40, ffn_dim=13824, in_channels=36, image_dim=1280, added_kv_proj_dim=5120),
}
PRESETS["wan2.1-i2v-14b-720p"] = PRESETS["wan2.1-i2v-14b-480p"]  # same transformer, trained at 720p


def config(preset):
    """The WanTransformer3DModel config of a published preset."""
    cfg = dict(patch_size=(1, 2, 2), attention_head_dim=128, out_channels=16, text_dim=4096, freq_dim=256,
               cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
    cfg.update(PRESETS[preset])
    return cfg


def random_model(cfg, device):
    """The model with seeded random weights in ±0.01 under diffusers' bf16 policy (the
    _keep_in_fp32_modules in fp32), built on the meta device and filled in place on `device`: a
    default init of 14B fp32 parameters on the CPU takes most of a minute."""
    with torch.device("meta"):
        model = WanTransformer3DModel(**cfg)
    model = model.to_empty(device=device)
    keep = WanTransformer3DModel._keep_in_fp32_modules
    # CPU models (the offload bench) are filled on the GPU and copied down: a CPU generator fills 14B
    # parameters at well under 1 GB/s, minutes of device time before any timing starts.
    fill = "cuda" if torch.cuda.is_available() else device
    gen = torch.Generator(device=fill).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            dtype = torch.float32 if any(k in name.split(".") for k in keep) else torch.bfloat16
            p.data = torch.empty(p.shape, dtype=dtype, device=fill).uniform_(-0.01, 0.01, generator=gen).to(device)
    # to_empty leaves the RoPE tables (non-persistent buffers computed at init) uninitialized.
    model.rope = type(model.rope)(cfg["attention_head_dim"], cfg["patch_size"], cfg["rope_max_seq_len"]).to(device)
    return model.eval()


def inputs(cfg, t, h, w):
    """Random bf16 forward arguments for latents of T x H x W (text 512 x 4096, CLIP 257 x 1280 for I2V)."""
    x = torch.randn(1, cfg["in_channels"], t, h, w, device="cuda", dtype=torch.bfloat16)
    ctx = torch.randn(1, 512, 4096, device="cuda", dtype=torch.bfloat16)
    kw = dict(hidden_states=x, timestep=torch.tensor([999], device="cuda"), encoder_hidden_states=ctx, return_dict=False)
    if "image_dim" in cfg:
        kw["encoder_hidden_states_image"] = torch.randn(1, 257, 1280, device="cuda", dtype=torch.bfloat16)
    return kw


def main():
    preset = sys.argv[1]
    frames, height, width = (int(a) for a in sys.argv[2:5]) if len(sys.argv) >= 5 else (81, 480, 832)
    iters = int(sys.argv[5]) if len(sys.argv) >= 6 else 3
    cfg = config(preset)
    model = random_model(cfg, "cuda")
    t, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    kw = inputs(cfg, t, h, w)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        model(**kw)
        times = []
        for _ in range(iters):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            model(**kw)
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps({"bench": "forward", "impl": "diffusers", "preset": preset, "mode": "resident",
                      "frames": frames, "height": height, "width": width, "tokens": t * (h // 2) * (w // 2),
                      "s": round(statistics.median(times) / 1e3, 4), "peak_gib": round(peak, 3)}), flush=True)


if __name__ == "__main__":
    main()
