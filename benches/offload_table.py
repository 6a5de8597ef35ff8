"""Turns the JSON lines of `wan bench` and benches/diffusers_offload.py into the issue-7 table:
time per forward, peak VRAM, host RAM, setup, and ours vs the floor max(resident time, streamed bytes /
pinned H2D rate) and vs diffusers. Usage: python3 offload_table.py bench.jsonl"""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{") and '"forward"' in l]
ours = [r for r in rows if r.get("impl") == "wanrt"]
theirs = [r for r in rows if r.get("impl") == "diffusers"]
resident = {(r["preset"], r["tokens"]): r["s"] for r in ours if r["mode"] == "resident"}
# diffusers streams every weight: its floor takes our fully streamed plans' transfer floor.
transfer = {}
for r in ours:
    key = (r["preset"], r["tokens"])
    transfer[key] = max(transfer.get(key, 0.0), r.get("transfer_floor_s", 0.0))
print("| model | tokens | impl | mode | s/forward | floor s | vs floor | sweep s | vs sweep | H2D GB/s best/sustained | peak GiB | host GiB | setup s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in ours + theirs:
    key = (r["preset"], r["tokens"])
    # A run without a resident row of its shape (the onef step) takes the transfer floor alone.
    floor = max(resident.get(key, 0.0), r.get("transfer_floor_s", transfer.get(key, 0.0)))
    vs = r["s"] / floor if floor == floor and floor > 0 else float("nan")
    host = r.get("host_gib", r.get("host_rss_gib", float("nan")))
    sweep = r.get("sweep_s", 0.0)
    vs_sweep = f"{r['s'] / sweep:.3f}" if sweep else "-"
    print(f"| {r['preset']} | {r['tokens']} | {r['impl']} | {r['mode']} | {r['s']:.4f} | {floor:.4f} | {vs:.3f} | "
          f"{sweep or '-'} | {vs_sweep} | {r.get('h2d_gbps', '-')}/{r.get('h2d_sustained_gbps', '-')} | {r['peak_gib']:.2f} | {host} | {r.get('setup_s', float('nan'))} |")
