"""diffusers' side of `wan bench-vae`: AutoencoderKLWan at Wan2.1's published shapes (the class's
defaults: base_dim 96, z_dim 16, dim_mult (1, 2, 4, 4)) with seeded random weights, resident, untiled
(diffusers/models/autoencoders/autoencoder_kl_wan.py: `_decode` / `_encode`, the causal chunk loop),
timed with CUDA events (1 warm-up, best of N). Prints one JSON line like `wan bench-vae`.
Usage: python3 vae_diffusers.py decode|encode FRAMES HEIGHT WIDTH bf16|fp32 [ITERS]"""
import json
import sys

import torch
from diffusers import AutoencoderKLWan


def random_vae(dtype):
    """The published-shape VAE, weights uniform in ±1/sqrt(fan_in) (a conv's default scale, so
    activations stay finite through the 30-odd layers), RMS gammas 1, seeded."""
    torch.manual_seed(0)
    vae = AutoencoderKLWan().to("cuda", dtype=dtype).eval()
    gen = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
            elif p.dim() > 1:
                bound = 1.0 / (p[0].numel() ** 0.5)
                p.copy_(torch.empty(p.shape, device="cuda", dtype=torch.float32).uniform_(-bound, bound, generator=gen).to(dtype))
            else:
                p.zero_()
    return vae


def main():
    op, frames, height, width, prec = sys.argv[1], *(int(a) for a in sys.argv[2:5]), sys.argv[5]
    iters = int(sys.argv[6]) if len(sys.argv) > 6 else 3
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[prec]
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    vae = random_vae(dtype)
    t, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    if op == "decode":
        x = torch.randn(1, 16, t, h, w, device="cuda", dtype=dtype)
        run = lambda: vae.decode(x).sample
    else:
        x = torch.rand(1, 3, frames, height, width, device="cuda", dtype=dtype) * 2 - 1
        run = lambda: vae.encode(x).latent_dist.mode()
    with torch.no_grad():
        run()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(iters):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            out = run()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) / 1e3)
            del out
    weights = sum(p.numel() * p.element_size() for p in (vae.decoder if op == "decode" else vae.encoder).parameters())
    peak = torch.cuda.max_memory_allocated()
    print(json.dumps({"bench": "vae", "impl": "diffusers", "op": op, "frames": frames, "height": height, "width": width,
                      "precision": prec, "tiles": "untiled", "s": round(min(times), 4), "s_each": [round(s, 4) for s in times],
                      "device_peak_gib": round(peak / 2**30, 3), "peak_above_inputs_gib": round((peak - base) / 2**30, 3),
                      "weights_gib": round(weights / 2**30, 3), "torch": torch.__version__, "device": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    main()
