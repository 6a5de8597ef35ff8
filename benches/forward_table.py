"""Issue 5's table from `wan bench --offload resident` and benches/diffusers_forward.py JSON lines of
one run: per preset and video size, our time and peak VRAM beside diffusers', and the ratio.

    python3 benches/forward_table.py bench.jsonl"""
import json
import sys


def rows(path):
    for line in open(path):
        line = line.strip()
        if line.startswith("{") and '"forward"' in line:
            r = json.loads(line)
            if r.get("mode") == "resident" and "frames" in r:
                yield r


def main():
    by = {}
    for r in rows(sys.argv[1]):
        key = (r["preset"], r["frames"], r["height"], r["width"])
        by.setdefault(key, {})[r["impl"]] = r  # the last line of each kind wins
    print("| model | video (tokens) | wanrt s | diffusers s | wanrt / diffusers | wanrt peak GiB | diffusers peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for (preset, f, h, w), got in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        o, d = got.get("wanrt"), got.get("diffusers")
        tokens = (o or d)["tokens"]
        os_, ds = (o["s"] if o else float("nan")), (d["s"] if d else float("nan"))
        op, dp = (o["peak_gib"] if o else float("nan")), (d["peak_gib"] if d else float("nan"))
        ratio = os_ / ds if o and d else float("nan")
        print(f"| {preset} | {f}x{h}x{w} ({tokens}) | {os_:.4f} | {ds:.4f} | {ratio:.3f} | {op:.2f} | {dp:.2f} |")


if __name__ == "__main__":
    main()
