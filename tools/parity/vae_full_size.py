"""Full-size parity of `wan vae` with diffusers (issue 16): AutoencoderKLWan at Wan2.1's published
shapes (the class's defaults) with synthesized weights, saved by diffusers (bf16 safetensors, as
Wan2.1's `vae/` ships fp32 or bf16), read by our loader through `wan vae decode` / `wan vae encode`.

On the GPU machine, from the repository root:

    python3 tools/parity/vae_full_size.py /tmp/wan-vae-parity gpu-bundle/bin/wan

At 480p-17f (latents 16 x 5 x 60 x 104): diffusers in fp32 and bf16 on the same (bf16-valued)
weights (diffusers/models/autoencoders/autoencoder_kl_wan.py, `AutoencoderKLWan.decode` / `.encode`,
untiled), ours in bf16 and fp32, one JSON line per output: relative RMS of ours vs diffusers-bf16,
diffusers-bf16 vs diffusers-fp32, ours vs diffusers-fp32, and `within`: bf16, ours no further from
fp32 than diffusers' bf16 is (floor 2^-8, one bf16 rounding); fp32, within 1e-4 (TF32 off on both
sides; summation order only). Then the decode again with `--vram 1200MiB` (which forces 2x2 tiles,
tests/vae_tiling_plan.rs checks that) and with `--tile 256` (2x4 tiles): `tiled_equal` when the tiled
output equals the untiled one bit for bit.
"""
import json
import pathlib
import shutil
import subprocess
import sys

import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import load_file, save_file

FRAMES, HEIGHT, WIDTH = 17, 480, 832
BF16_FLOOR, FP32_BOUND = 2.0 ** -8, 1e-4


def randomized():
    """The published-shape VAE in fp32 with bf16-valued weights: convs and linears uniform in
    ±1/sqrt(fan_in) (torch's default scale, so activations stay O(1) through the network), RMS gammas
    near 1, biases small; seeded."""
    vae = AutoencoderKLWan().to("cuda").float().eval()
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g, device="cuda"))
            elif p.dim() > 1:
                b = p[0].numel() ** -0.5
                p.copy_(torch.empty(p.shape, device="cuda").uniform_(-b, b, generator=g))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=g, device="cuda"))
            p.copy_(p.to(torch.bfloat16).float())
    return vae


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def wan(binary, *args):
    run = subprocess.run([binary, "vae", *args], capture_output=True, text=True)
    sys.stderr.write(run.stderr)
    if run.returncode != 0:
        raise SystemExit(f"wan vae {args[0]} failed ({run.returncode})")
    return run.stderr


def main():
    out, binary = pathlib.Path(sys.argv[1]), sys.argv[2]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    vae = randomized()
    vae.to(torch.bfloat16).save_pretrained(out / "vae", safe_serialization=True)
    vae.float()
    g = torch.Generator(device="cuda").manual_seed(1)
    # A smooth video (low-frequency noise upsampled), values in [-1, 1], and latents of unit scale.
    video = torch.nn.functional.interpolate(torch.randn(1, 3, FRAMES, HEIGHT // 16, WIDTH // 16, generator=g, device="cuda"),
                                            size=(FRAMES, HEIGHT, WIDTH), mode="trilinear").clamp(-1, 1)
    t, h, w = (FRAMES - 1) // 4 + 1, HEIGHT // 8, WIDTH // 8
    latents = torch.randn(1, 16, t, h, w, generator=g, device="cuda")
    save_file({"video": video.cpu().contiguous()}, str(out / "video.safetensors"))
    save_file({"latents": latents.cpu().contiguous()}, str(out / "latents.safetensors"))
    refs = {}
    with torch.no_grad():
        d32 = vae.decode(latents).sample.cpu()
        e32 = vae.encode(video).latent_dist.mode().cpu()
        vae.to(torch.bfloat16)
        d16 = vae.decode(latents.bfloat16()).sample.float().cpu()
        e16 = vae.encode(video.bfloat16()).latent_dist.mode().float().cpu()
    refs["decode"], refs["encode"] = (d16, d32), (e16, e32)
    del vae
    torch.cuda.empty_cache()

    outputs = {}
    for prec in ("bf16", "fp32"):
        p = out / f"decoded_{prec}.safetensors"
        wan(binary, "decode", "--model", str(out), "--latents", str(out / "latents.safetensors"), "--out", str(p), "--precision", prec)
        outputs[("decode", prec)] = load_file(str(p))["video"]
        p = out / f"encoded_{prec}.safetensors"
        wan(binary, "encode", "--model", str(out), "--video", str(out / "video.safetensors"), "--out", str(p), "--precision", prec)
        outputs[("encode", prec)] = load_file(str(p))["latents"]
    for (op, prec), o in outputs.items():
        r16, r32 = refs[op]
        base = rel(r16, r32)
        d16, d32 = rel(o, r16), rel(o, r32)
        within = d32 <= max(base, BF16_FLOOR) if prec == "bf16" else d32 <= FP32_BOUND
        print(json.dumps({"bench": "vae_parity", "op": op, "precision": prec, "shape": list(o.shape), "ours_vs_bf16": d16,
                          "bf16_vs_fp32": base, "ours_vs_fp32": d32, "within": within}), flush=True)

    untiled = outputs[("decode", "bf16")]
    for opt in (["--vram", "1200MiB"], ["--tile", "256"]):
        p = out / f"decoded_tiled_{opt[1]}.safetensors"
        log = wan(binary, "decode", "--model", str(out), "--latents", str(out / "latents.safetensors"), "--out", str(p), "--precision", "bf16", *opt)
        tiled = load_file(str(p))["video"]
        plan = next((l for l in log.splitlines() if l.startswith("vae decode:")), "")
        differ = int((tiled.view(torch.int32) != untiled.view(torch.int32)).sum())
        print(json.dumps({"bench": "vae_parity", "op": "decode_tiled", "precision": "bf16", "option": " ".join(opt), "plan": plan,
                          "values_differing": differ, "max_abs_diff": float((tiled - untiled).abs().max()), "tiled_equal": differ == 0}), flush=True)


if __name__ == "__main__":
    main()
