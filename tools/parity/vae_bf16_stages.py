"""Where diffusers' bf16 VAE departs from its fp32 run, stage by stage, on the tiny fixture
(tests/fixtures/vae): the relative RMS distance of each recorded stage (encoder then decoder, the
decoder fed the bf16 run's own posterior mode, end to end) from the fixture's fp32 stages. The GPU
test gpu_vae prints the same table for ours.

    python tools/parity/vae_bf16_stages.py [cpu|cuda]...
"""

from __future__ import annotations

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "fixtures"))

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import gen_vae  # noqa: E402
import tinyconfigs as tc  # noqa: E402


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def main() -> None:
    from diffusers import AutoencoderKLWan

    base = ROOT / "tests" / "fixtures" / tc.DIR["vae"]
    inputs = load_file(str(base / "inputs.safetensors"))
    ref_stages = load_file(str(base / "fp32_stages.safetensors"))
    ref = load_file(str(base / "fp32.safetensors"))
    for device in sys.argv[1:] or ["cpu"]:
        vae = AutoencoderKLWan.from_pretrained(str(base / "vae"), torch_dtype=torch.bfloat16).to(device).eval()
        rec = tc.Recorder(vae, gen_vae.ENCODER_STAGES + gen_vae.DECODER_STAGES, cat_dim=2)
        with torch.no_grad():
            posterior = vae.encode(inputs["video"].to(device, torch.bfloat16)).latent_dist
            decoded = vae.decode(posterior.mode()).sample
        rec.close()
        got = rec.result(prefix="video.")
        row = {"bench": "vae_bf16_stages", "device": device}
        row.update({k.removeprefix("video."): round(rel_rms(v, ref_stages[k]), 6) for k, v in got.items()})
        row["moments"] = round(rel_rms(posterior.parameters, ref["video.moments"]), 6)
        row["decoded"] = round(rel_rms(decoded, ref["video.decoded"]), 6)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
