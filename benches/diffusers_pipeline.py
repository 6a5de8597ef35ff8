"""diffusers' side of `wan bench --pipeline`: WanPipeline's stages at a published preset's shapes with
synthesized weights (transformer as in diffusers_forward.py, UMT5-XXL and the VAE filled with seeded
uniform values; the tokenizer is the fixture's, whose ids all lie in UMT5's vocabulary), timed with
CUDA events: text encode (prompt + negative, `encode_prompt`), STEPS denoising steps with CFG
(`__call__` with the embeddings, `output_type="latent"`), VAE decode. Prints one JSON line with
seconds per stage, seconds per step, the 50-step extrapolation and peak VRAM.

Usage: python3 diffusers_pipeline.py PRESET [FRAMES HEIGHT WIDTH] [STEPS] [resident|leaf-stream]
(leaf-stream: diffusers' group offloading, leaf level, with a stream: its best setting in 12 GiB)."""
import json
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from diffusers_forward import config, random_model  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def fill_(model, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.data = torch.empty(p.shape, dtype=p.dtype, device="cuda").uniform_(-0.01, 0.01, generator=gen)
    return model.eval()


def umt5(dtype):
    from transformers import UMT5Config, UMT5EncoderModel
    cfg = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                     relative_attention_num_buckets=32, relative_attention_max_distance=128,
                     feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True)
    with torch.device("meta"):
        m = UMT5EncoderModel(cfg)
    m = m.to_empty(device="cuda").to(dtype)
    return fill_(m, 1)


def vae():
    from diffusers import AutoencoderKLWan
    with torch.device("meta"):
        m = AutoencoderKLWan()
    return fill_(m.to_empty(device="cuda"), 2)


def timed(f):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = f()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0, torch.cuda.max_memory_allocated() / 2**30


def main():
    from diffusers import UniPCMultistepScheduler, WanPipeline
    from transformers import AutoTokenizer

    preset = sys.argv[1]
    frames, height, width = (int(a) for a in sys.argv[2:5]) if len(sys.argv) >= 5 else (81, 480, 832)
    steps = int(sys.argv[5]) if len(sys.argv) >= 6 else 2
    mode = sys.argv[6] if len(sys.argv) >= 7 else "resident"
    if "i2v" in preset:
        raise SystemExit("diffusers_pipeline.py times WanPipeline (T2V) presets")
    pipe = WanPipeline(
        tokenizer=AutoTokenizer.from_pretrained(str(ROOT / "tests/fixtures/umt5/tokenizer")),
        text_encoder=umt5(torch.bfloat16), vae=vae(),
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
        transformer=random_model(config(preset), "cuda"),
    )
    pipe.set_progress_bar_config(disable=True)
    if mode == "leaf-stream":
        from diffusers.hooks import apply_group_offloading
        for name in ("text_encoder", "transformer", "vae"):
            apply_group_offloading(getattr(pipe, name).to("cpu"), onload_device=torch.device("cuda"),
                                   offload_type="leaf_level", use_stream=True)
    prompt = "A red fox runs through a snowy forest at dawn, cinematic."
    with torch.no_grad():
        pipe.encode_prompt(prompt, "blurry", device="cuda")  # warm-up
        (pe, ne), text_s, text_peak = timed(lambda: pipe.encode_prompt(prompt, "blurry", device="cuda"))
        run = lambda n: pipe(prompt_embeds=pe, negative_prompt_embeds=ne, height=height, width=width,  # noqa: E731
                             num_frames=frames, num_inference_steps=n, guidance_scale=5.0, output_type="latent").frames
        run(1)  # warm-up
        latents, loop_s, loop_peak = timed(lambda: run(steps))
        z = latents.to(torch.float32)
        _, decode_s, decode_peak = timed(lambda: pipe.vae.decode(z, return_dict=False)[0])
    per_step = loop_s / steps
    print(json.dumps({"bench": "pipeline", "impl": "diffusers", "preset": preset, "mode": mode, "frames": frames,
                      "height": height, "width": width, "steps": steps, "encode_text_s": round(text_s, 4),
                      "step_s": round(per_step, 4), "decode_s": round(decode_s, 4),
                      "total_50_s": round(text_s + 50 * per_step + decode_s, 2),
                      "peak_gib": {"encode_text": round(text_peak, 3), "denoise": round(loop_peak, 3),
                                   "decode": round(decode_peak, 3)}}), flush=True)


if __name__ == "__main__":
    main()
