"""Full-size parity of `wan encode` with transformers (issue 15): UMT5-XXL and CLIP ViT-H/14 with
synthesized weights at the published shapes, saved by transformers (bf16 safetensors, as Wan's
`text_encoder/` and `image_encoder/` ship), loaded by our loader through `wan encode`.

On the GPU machine, from the repository root:

    python3 tools/parity/encoders_full_size.py /tmp/wan-encoders gpu-bundle/bin/wan

Builds the two folders (tokenizer: the UMT5 fixture's; image processor: the laion ViT-H/14 config),
runs transformers in bf16 and fp32 on the same (bf16-valued) weights, runs `wan encode --precision
bf16`, and prints one JSON line per tensor: ours vs transformers-bf16, transformers-bf16 vs
transformers-fp32, ours vs fp32, and whether ours is within the bound (no further from
transformers-bf16 than transformers-bf16 is from fp32).
"""
import json
import math
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoTokenizer, CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection, UMT5Config, UMT5EncoderModel

PROMPT = "A golden dragon flies slowly over a quiet mountain village at night, snow falling on red roofs."
REPO = pathlib.Path(__file__).resolve().parents[2]


def t5_std(name, shape, cfg):
    """transformers' UMT5PreTrainedModel._init_weights scales (initializer_factor 1), so the random
    model is as well-conditioned as a trained one: unscaled attention logits of unit variance."""
    d, kv, h, ff = cfg.d_model, cfg.d_kv, cfg.num_heads, cfg.d_ff
    for key, std in ((".q.", (d * kv) ** -0.5), (".k.", d ** -0.5), (".v.", d ** -0.5), (".o.", (h * kv) ** -0.5),
                     ("wi_0", d ** -0.5), ("wi_1", d ** -0.5), (".wo.", ff ** -0.5), ("relative_attention_bias", d ** -0.5)):
        if key in name:
            return std
    return 1.0  # the token embedding


def randomized(cls, cfg, seed):
    with torch.device("meta"):
        model = cls(cfg)
    model = model.to_empty(device="cuda").float().eval()
    # to_empty gives every module a fresh Parameter, which unties shared.weight from
    # encoder.embed_tokens.weight (UMT5Config forces tie_word_embeddings); tie them again, as
    # from_pretrained does, so the checkpoint's one embedding is the one the forward reads.
    model.tie_weights()
    if isinstance(cfg, UMT5Config):
        assert model.encoder.embed_tokens.weight is model.shared.weight, "UMT5 embeddings not tied"
    g = torch.Generator(device="cuda").manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g, device="cuda"))
            elif isinstance(cfg, UMT5Config):
                p.copy_(t5_std(name, p.shape, cfg) * torch.randn(p.shape, generator=g, device="cuda"))
            elif p.dim() == 2 and "embed" not in name and "relative_attention_bias" not in name:
                p.copy_(torch.randn(p.shape, generator=g, device="cuda") / math.sqrt(p.shape[1]))
            else:
                p.copy_(0.5 * torch.randn(p.shape, generator=g, device="cuda"))
        for p in model.parameters():  # the stored values: bf16
            p.copy_(p.to(torch.bfloat16).float())
        # to_empty leaves buffers uninitialized: CLIP's position ids are an arange.
        for name, buf in model.named_buffers():
            if name.endswith("position_ids"):
                buf.copy_(torch.arange(buf.shape[-1], device="cuda").expand_as(buf))
    return model


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def main():
    out, wan = pathlib.Path(sys.argv[1]), sys.argv[2]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copytree(REPO / "tests/fixtures/umt5/tokenizer", out / "tokenizer")
    proc = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, resample=3)
    proc.save_pretrained(out / "image_processor")
    image = REPO / "tests/fixtures/clip/image.png"
    refs = {}

    # UMT5-XXL.
    cfg = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                     relative_attention_num_buckets=32, relative_attention_max_distance=128,
                     feed_forward_proj="gated-gelu", is_encoder_decoder=False, tie_word_embeddings=False)
    model = randomized(UMT5EncoderModel, cfg, 0)
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    t = tok([PROMPT], padding="max_length", max_length=512, truncation=True, add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    ids, mask = t.input_ids.cuda(), t.attention_mask.cuda()
    n = int(mask.sum())
    with torch.no_grad():
        r32 = model(input_ids=ids, attention_mask=mask).last_hidden_state
        model = model.to(torch.bfloat16)
        r16 = model(input_ids=ids, attention_mask=mask).last_hidden_state
    for r in (r32, r16):
        r[:, n:] = 0
    refs["prompt_embeds"] = (r16.float().cpu(), r32.float().cpu())
    model.save_pretrained(out / "text_encoder", safe_serialization=True)
    del model
    torch.cuda.empty_cache()

    # CLIP ViT-H/14 saved as Wan's conversion script saves it (CLIPVisionModelWithProjection); the
    # pipeline's hidden_states[-2].
    ccfg = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                            patch_size=14, image_size=224, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=1024)
    clip = randomized(CLIPVisionModelWithProjection, ccfg, 1)
    px = torch.from_numpy(np.asarray(proc(Image.open(image), return_tensors="np").pixel_values)).cuda()
    with torch.no_grad():
        c32 = clip(pixel_values=px, output_hidden_states=True).hidden_states[-2]
        clip = clip.to(torch.bfloat16)
        c16 = clip(pixel_values=px.to(torch.bfloat16), output_hidden_states=True).hidden_states[-2]
    refs["image_embeds"] = (c16.float().cpu(), c32.float().cpu())
    clip.save_pretrained(out / "image_encoder", safe_serialization=True)
    del clip
    torch.cuda.empty_cache()

    ours_path = out / "ours.safetensors"
    run = subprocess.run([wan, "encode", "--model", str(out), "--prompt", PROMPT, "--image", str(image), "--out", str(ours_path),
                          "--precision", "bf16", "--offload", "resident"], capture_output=True, text=True)
    sys.stderr.write(run.stderr)
    if run.returncode != 0:
        raise SystemExit(f"wan encode failed ({run.returncode})")
    ours = load_file(str(ours_path))
    for name, (r16, r32) in refs.items():
        o = ours[name].float()
        d16, base, d32 = rel(o, r16), rel(r16, r32), rel(o, r32)
        print(json.dumps({"bench": "encoder_parity", "tensor": name, "shape": list(o.shape), "ours_vs_bf16": d16,
                          "bf16_vs_fp32": base, "ours_vs_fp32": d32, "within": d16 <= base}))


if __name__ == "__main__":
    main()
