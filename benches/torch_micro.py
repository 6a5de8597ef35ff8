"""torch's side of the runtime microbenchmarks, same shapes and timing method as benches/microbench.rs
(CUDA events, 3 warm-ups, median of 10). Prints one JSON object per line."""
import json
import statistics
import sys

import torch
import torch.nn.functional as F

WARMUP, REPS = 3, 10


def time_ms(fn, stream=None):
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(REPS):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(stream)
        fn()
        e.record(stream)
        e.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


def gemm():
    m = 32760
    for k, n in [(1536, 1536), (1536, 8960), (8960, 1536), (5120, 5120), (5120, 13824), (13824, 5120)]:
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k ** 0.5
        b = torch.randn(n, device="cuda", dtype=torch.bfloat16) * 0.1
        flops = 2.0 * m * k * n
        plain = time_ms(lambda: torch.matmul(x, w.t()))
        bias = time_ms(lambda: F.linear(x, w, b))
        print(json.dumps({"bench": "gemm", "m": m, "k": k, "n": n, "ms": round(plain, 4),
                          "tflops": round(flops / plain / 1e9, 1), "bias_ms": round(bias, 4),
                          "bias_tflops": round(flops / bias / 1e9, 1)}), flush=True)


def h2d():
    nbytes = 1 << 30
    host = torch.empty(nbytes, dtype=torch.uint8).pin_memory()
    dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        ms = time_ms(lambda: dst.copy_(host, non_blocking=True), stream)
    print(json.dumps({"bench": "h2d", "bytes": nbytes, "ms": round(ms, 3), "gbps": round(nbytes / ms / 1e6, 2)}), flush=True)


def attention():
    # Same shapes as benches/attention_bench.rs: (B, H, Nq, d, Nk). SDPA takes (B, H, N, d).
    for (b, h, nq, d, nk) in [(1, 12, 32760, 128, 32760), (1, 40, 32760, 128, 32760),
                              (1, 40, 75600, 128, 75600), (1, 40, 32760, 128, 512)]:
        q = torch.randn(b, h, nq, d, device="cuda", dtype=torch.bfloat16)
        k, v = (torch.randn(b, h, nk, d, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v))
        flops = 4.0 * b * h * nq * nk * d
        print(json.dumps({"bench": "attention", "path": "sdpa", "shape": [b, nq, h, d], "nk": nk,
                          "ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1)}), flush=True)
        del q, k, v


if __name__ == "__main__":
    which = sys.argv[1:] or ["gemm", "h2d", "attention"]
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}", file=sys.stderr)
    for name in which:
        globals()[name]()
