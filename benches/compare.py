"""Sets wanrt's and torch's microbenchmark JSON lines side by side: python3 compare.py OURS THEIRS."""
import json
import sys


def load(path):
    """Records by key; several of ours may share a key (attention tiles), told apart by `path`."""
    out = {}
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        key = (r["bench"], r.get("k"), r.get("n"), tuple(r.get("shape", [])), r.get("nk"))
        out.setdefault(key, []).append(r)
    return out


ours, theirs = load(sys.argv[1]), load(sys.argv[2])
print("| bench | shape | wanrt | torch | ratio (wanrt/torch rate) |")
print("|---|---|---|---|---|")
for key, o in ((k, r) for k, rs in ours.items() for r in rs):
    t = theirs.get(key, [None])[0]
    if key[0] == "gemm":
        shape = f"M={o['m']} K={o['k']} N={o['n']}"
        for field, label in [("tflops", "matmul"), ("bias_tflops", "linear+bias")]:
            tv = t[field] if t else float("nan")
            print(f"| gemm {label} | {shape} | {o[field]} TFLOP/s | {tv} TFLOP/s | {o[field] / tv:.3f} |")
    elif key[0] == "h2d":
        tv = t["gbps"] if t else float("nan")
        print(f"| pinned H2D | {o['bytes'] >> 20} MiB | {o['gbps']} GB/s | {tv} GB/s | {o['gbps'] / tv:.3f} |")
    elif key[0] == "attention":
        tv = t["tflops"] if t else float("nan")
        shape = f"{o['shape']} nk={o.get('nk', o['shape'][1])} {o.get('path', '')}"
        print(f"| attention | {shape} | {o['tflops']} TFLOP/s | {tv} TFLOP/s | {o['tflops'] / tv:.3f} |")
    elif key[0] == "gemm_rate":
        tv = t["tflops"] if t else float("nan")
        print(f"| dense GEMM (cuBLASLt / torch) | {o['m']}³ bf16 | {o['tflops']} TFLOP/s | {tv} TFLOP/s | {o['tflops'] / tv:.3f} |")
    elif key[0] in ("conv", "conv_chunk") and o.get("path") == "mma":
        # benches/conv_bench.rs vs benches/conv_torch.py (channels_last_3d, cat + pad + conv): the
        # table's tile only (the other tiles' lines stay in the JSON); fraction of our GEMM rate at the end.
        t = next((r for r in theirs.get(key, []) if r.get("path") == "cudnn-cl"), None)
        tv = t["tflops"] if t else float("nan")
        gemm = next(iter(ours.get(("gemm_rate", 8192, 8192, (), None), [])), None)
        frac = f", {o['tflops'] / gemm['tflops']:.2f} of GEMM" if gemm else ""
        if key[0] == "conv":
            what = f"conv {o['model']} {o['res']} {o['layer']} ×{o['count']}"
            shape = f"M={o['m']} N={o['n']} K={o['k']} {o['tile']}"
        else:
            what, shape = f"conv chunk {o['model']} {o['res']}", f"{o['ms']} ms vs {t['ms'] if t else 'nan'} ms"
        print(f"| {what} | {shape} | {o['tflops']} TFLOP/s | {tv} TFLOP/s | {o['tflops'] / tv:.3f}{frac} |")
