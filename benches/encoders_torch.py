"""transformers' UMT5-XXL encoder and CLIP ViT-H/14 vision tower on the GPU, random bf16 weights at
the published shapes, timed like `wan bench-encoder` (CUDA events, median after warm-ups). CLIP runs
as the Wan I2V pipeline calls it (diffusers pipeline_wan_i2v.py `encode_image`: output_hidden_states,
all 32 layers). One JSON line per run.

    python3 benches/encoders_torch.py umt5-xxl|clip-vit-h-14 [BATCH] [ITERS]
"""
import json
import sys

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel


def build(cls, cfg):
    with torch.device("meta"):
        model = cls(cfg)
    model = model.to_empty(device="cuda").to(torch.bfloat16).eval()
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02, generator=g)
    return model


def timed(fn, iters):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    which = sys.argv[1]
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    iters = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    if which == "umt5-xxl":
        cfg = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                         relative_attention_num_buckets=32, relative_attention_max_distance=128,
                         feed_forward_proj="gated-gelu", is_encoder_decoder=False, tie_word_embeddings=False)
        model = build(UMT5EncoderModel, cfg)
        ids = torch.randint(2, 200000, (batch, 512), device="cuda")
        mask = torch.zeros(batch, 512, dtype=torch.long, device="cuda")
        mask[:, :20] = 1
        with torch.no_grad():
            s = timed(lambda: model(input_ids=ids, attention_mask=mask).last_hidden_state, iters)
        tokens = 512
    elif which == "clip-vit-h-14":
        cfg = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                               patch_size=14, image_size=224, hidden_act="gelu", layer_norm_eps=1e-5)
        model = build(CLIPVisionModel, cfg)
        px = torch.randn(batch, 3, 224, 224, device="cuda", dtype=torch.bfloat16)
        with torch.no_grad():
            s = timed(lambda: model(pixel_values=px, output_hidden_states=True).hidden_states[-2], iters)
        tokens = 257
    else:
        raise SystemExit(f"unknown encoder {which!r}: umt5-xxl or clip-vit-h-14")
    print(json.dumps({"bench": "encoder", "impl": "transformers", "model": which, "mode": "resident", "batch": batch,
                      "tokens": tokens, "s": round(s, 5), "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3)}))


if __name__ == "__main__":
    main()
