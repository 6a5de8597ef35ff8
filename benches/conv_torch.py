"""torch's side of benches/conv_bench.rs: the Wan VAE's convs per chunk at 480p and 720p, bf16, on cuDNN,
timed like the Rust side (CUDA events, 3 warm-ups, median of 10). One JSON object per line with the same
keys (bench, model, res, layer, count, shape, m, n, k), so benches/compare.py can pair them.

Each conv runs as diffusers runs it (autoencoder_kl_wan.py): a causal conv concatenates its cache in
front (torch.cat along time), F.pad's the remaining zero frames and the spatial border, then F.conv3d
with no padding; the resample convs are per-frame Conv2d on (B·T, C, H, W) (ZeroPad2d(0,1,0,1) then
stride 2 for the downsamplers; padding 1 for the upsamplers). Timed as path `cudnn-cl`: the cat and pad
and conv, tensors in channels_last_3d (channels_last for the 2D convs); `conv_ms` is the conv alone on
the already padded input. With the argument `ncdhw`, the same in torch's default contiguous layout
(what diffusers runs unless told otherwise) as path `cudnn-ncdhw`.

Run: python3 benches/conv_torch.py [ncdhw] > torch_conv.jsonl
"""
import json
import statistics
import sys

import torch
import torch.nn.functional as F

WARMUP, REPS = 3, 10


def time_ms(fn):
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(REPS):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


def layer(name, count, t, prev, h, w, cin, cout, k, pad_t, pad_h, pad_w, stride, kind="3d"):
    return dict(name=name, count=count, t=t, prev=prev, h=h, w=w, cin=cin, cout=cout, k=k, pad_t=pad_t,
                pad_h=pad_h, pad_w=pad_w, stride=stride, kind=kind)


# Same constructors and lists as benches/conv_bench.rs.
def k3(name, count, t, h, w, cin, cout):
    return layer(name, count, t, 2, h, w, cin, cout, (3, 3, 3), 0, (1, 1), (1, 1), (1, 1, 1))


def k1(name, t, h, w, cin, cout):
    return layer(name, 1, t, 0, h, w, cin, cout, (1, 1, 1), 0, (0, 0), (0, 0), (1, 1, 1))


def up2d(name, t, h, w, cin, cout):
    return layer(name, 1, t, 0, h, w, cin, cout, (1, 3, 3), 0, (1, 1), (1, 1), (1, 1, 1), "2d")


def down2d(name, t, h, w, c):
    return layer(name, 1, t, 0, h, w, c, c, (1, 3, 3), 0, (0, 1), (0, 1), (1, 2, 2), "2d")


def time_conv(name, t, prev, h, w, cin, cout, st):
    return layer(name, 1, t, prev, h, w, cin, cout, (3, 1, 1), 0, (0, 0), (0, 0), (st, 1, 1))


def decoder(lh, lw):
    h1, w1, h2, w2, h3, w3 = 2 * lh, 2 * lw, 4 * lh, 4 * lw, 8 * lh, 8 * lw
    return [
        k3("dec.conv_in", 1, 1, lh, lw, 16, 384),
        k3("dec.mid+up0.res384", 10, 1, lh, lw, 384, 384),
        time_conv("dec.up0.time_conv", 1, 2, lh, lw, 384, 768, 1),
        up2d("dec.up0.resample", 2, h1, w1, 384, 192),
        k3("dec.up1.res0.conv1", 1, 2, h1, w1, 192, 384),
        k1("dec.up1.res0.shortcut", 2, h1, w1, 192, 384),
        k3("dec.up1.res384", 5, 2, h1, w1, 384, 384),
        time_conv("dec.up1.time_conv", 2, 2, h1, w1, 384, 768, 1),
        up2d("dec.up1.resample", 4, h2, w2, 384, 192),
        k3("dec.up2.res192", 6, 4, h2, w2, 192, 192),
        up2d("dec.up2.resample", 4, h3, w3, 192, 96),
        k3("dec.up3.res96", 6, 4, h3, w3, 96, 96),
        k3("dec.conv_out", 1, 4, h3, w3, 96, 3),
    ]


def encoder(lh, lw):
    h1, w1, h2, w2, h3, w3 = 2 * lh, 2 * lw, 4 * lh, 4 * lw, 8 * lh, 8 * lw
    return [
        k3("enc.conv_in", 1, 4, h3, w3, 3, 96),
        k3("enc.down0-1.res96", 4, 4, h3, w3, 96, 96),
        down2d("enc.down2.resample", 4, h3, w3, 96),
        k3("enc.down3.conv1", 1, 4, h2, w2, 96, 192),
        k1("enc.down3.shortcut", 4, h2, w2, 96, 192),
        k3("enc.down3-4.res192", 3, 4, h2, w2, 192, 192),
        down2d("enc.down5.resample", 4, h2, w2, 192),
        time_conv("enc.down5.time_conv", 4, 1, h1, w1, 192, 192, 2),
        k3("enc.down6.conv1", 1, 2, h1, w1, 192, 384),
        k1("enc.down6.shortcut", 2, h1, w1, 192, 384),
        k3("enc.down6-7.res384", 3, 2, h1, w1, 384, 384),
        down2d("enc.down8.resample", 2, h1, w1, 384),
        time_conv("enc.down8.time_conv", 2, 1, lh, lw, 384, 384, 2),
        k3("enc.down9-mid.res384", 8, 1, lh, lw, 384, 384),
        k3("enc.conv_out", 1, 1, lh, lw, 384, 32),
    ]


def out_dims(l):
    (kt, kh, kw), (st, sh, sw) = l["k"], l["stride"]
    to = (l["pad_t"] + l["prev"] + l["t"] - kt) // st + 1
    ho = (l["h"] + sum(l["pad_h"]) - kh) // sh + 1
    wo = (l["w"] + sum(l["pad_w"]) - kw) // sw + 1
    return to, ho, wo


def bench_layer(model, res, l, channels_last):
    dev, dt = "cuda", torch.bfloat16
    kt, kh, kw = l["k"]
    to, ho, wo = out_dims(l)
    m, n, k = to * ho * wo, l["cout"], kt * kh * kw * l["cin"]
    x = torch.randn(1, l["cin"], l["t"], l["h"], l["w"], device=dev, dtype=dt)
    cache = torch.randn(1, l["cin"], l["prev"], l["h"], l["w"], device=dev, dtype=dt) if l["prev"] else None
    wt = torch.randn(l["cout"], l["cin"], kt, kh, kw, device=dev, dtype=dt) / k ** 0.5
    b = torch.randn(l["cout"], device=dev, dtype=dt) * 0.1
    fmt3 = torch.channels_last_3d if channels_last else torch.contiguous_format
    fmt2 = torch.channels_last if channels_last else torch.contiguous_format
    if l["kind"] == "2d":
        # Per frame: (B·T, C, H, W), as diffusers' WanResample reshapes before resample.
        x2 = x.permute(0, 2, 1, 3, 4).reshape(l["t"], l["cin"], l["h"], l["w"]).contiguous(memory_format=fmt2)
        w2 = wt[:, :, 0].contiguous(memory_format=fmt2)
        if l["stride"][1] == 2:
            def run():
                return F.conv2d(F.pad(x2, (0, 1, 0, 1)), w2, b, stride=2)
            padded = F.pad(x2, (0, 1, 0, 1)).contiguous(memory_format=fmt2)

            def conv_only():
                return F.conv2d(padded, w2, b, stride=2)
        else:
            def run():
                return F.conv2d(x2, w2, b, padding=1)
            conv_only = run
    else:
        x = x.contiguous(memory_format=fmt3)
        wt = wt.contiguous(memory_format=fmt3)
        if cache is not None:
            cache = cache.contiguous(memory_format=fmt3)
        pad = (l["pad_w"][0], l["pad_w"][1], l["pad_h"][0], l["pad_h"][1], l["pad_t"], 0)

        def run():
            h = torch.cat([cache, x], dim=2) if cache is not None else x
            if any(pad):
                h = F.pad(h, pad)
            return F.conv3d(h, wt, b, stride=l["stride"])
        h = torch.cat([cache, x], dim=2) if cache is not None else x
        padded = (F.pad(h, pad) if any(pad) else h).contiguous(memory_format=fmt3)

        def conv_only():
            return F.conv3d(padded, wt, b, stride=l["stride"])
    ms = time_ms(run)
    conv_ms = time_ms(conv_only)
    flops = 2.0 * m * n * k
    (st, sh, sw) = l["stride"]
    shape = [1, l["t"], l["prev"], l["h"], l["w"], l["cin"], l["cout"], kt, kh, kw, st, sh, sw]
    print(json.dumps({"bench": "conv", "model": model, "res": res, "layer": l["name"], "count": l["count"],
                      "shape": shape, "m": m, "n": n, "k": k,
                      "path": "cudnn-cl" if channels_last else "cudnn-ncdhw",
                      "ms": round(ms, 4), "tflops": round(flops / ms / 1e9, 1),
                      "conv_ms": round(conv_ms, 4), "conv_tflops": round(flops / conv_ms / 1e9, 1)}), flush=True)
    return ms, flops


def gemm_rate():
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16) / n ** 0.5
    ms = time_ms(lambda: a @ b.t())
    print(json.dumps({"bench": "gemm_rate", "m": n, "n": n, "k": n, "ms": round(ms, 4),
                      "tflops": round(2.0 * n ** 3 / ms / 1e9, 1)}), flush=True)


if __name__ == "__main__":
    print(f"torch {torch.__version__} cuDNN {torch.backends.cudnn.version()} on {torch.cuda.get_device_name()}",
          file=sys.stderr)
    torch.backends.cudnn.benchmark = True
    layouts = [True] + ([False] if "ncdhw" in sys.argv[1:] else [])
    gemm_rate()
    for res, lh, lw in [("480p", 60, 104), ("720p", 90, 160)]:
        for model, layers in [("decoder", decoder(lh, lw)), ("encoder", encoder(lh, lw))]:
            for cl in layouts:
                # Totals over the layers wanrt's fast path takes (Cin % 8 == 0), like conv_bench's
                # conv_chunk line; ms_all adds the others (the encoder's conv_in, Cin = 3).
                total_ms = total_flops = all_ms = 0.0
                for l in layers:
                    ms, flops = bench_layer(model, res, l, cl)
                    all_ms += ms * l["count"]
                    if l["cin"] % 8 == 0:
                        total_ms += ms * l["count"]
                        total_flops += flops * l["count"]
                    torch.cuda.empty_cache()
                print(json.dumps({"bench": "conv_chunk", "model": model, "res": res, "shape": [model, res],
                                  "path": "cudnn-cl" if cl else "cudnn-ncdhw", "ms": round(total_ms, 3),
                                  "tflops": round(total_flops / total_ms / 1e9, 1), "ms_all": round(all_ms, 3)}),
                      flush=True)
