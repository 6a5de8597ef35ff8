#!/usr/bin/env python3
"""Kernel time shares from an Nsight Compute CSV (`ncu --metrics gpu__time_duration.sum --csv
--log-file FILE.csv PROGRAM ...`): total time per kernel name, its launches and its share, largest
first, as a Markdown table. ncu serializes kernels and locks clocks, so the shares, not the seconds,
are what carries over to a normal run. When the CSV also holds `dram__bytes_read.sum` and
`dram__bytes_write.sum` (`--metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum`),
the table adds each kernel's DRAM bytes and its rate (bytes / its time at ncu's clocks), to tell the
memory-bound kernels that reach the card's bandwidth from those that do not.

    python3 benches/kernel_shares.py FILE.csv [TOP]
"""
import collections
import csv
import sys


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    # ncu prefixes its own lines (==PROF== ...) to the CSV; the table starts at the header row.
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]
    rows = csv.DictReader(lines)
    total = collections.Counter()
    count = collections.Counter()
    dram = collections.Counter()
    byte_scale = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    for r in rows:
        metric = r.get("Metric Name")
        v = float(r["Metric Value"].replace(",", ""))
        unit = r.get("Metric Unit", "")
        name = r["Kernel Name"].split("(")[0]
        if metric == "gpu__time_duration.sum":
            scale = {"nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0}.get(unit or "nsecond", 1e-9)
            total[name] += v * scale
            count[name] += 1
        elif metric in ("dram__bytes_read.sum", "dram__bytes_write.sum"):
            dram[name] += v * byte_scale.get(unit, 1)
    all_s = sum(total.values())
    if dram:
        print("| kernel | launches | ms (ncu clocks) | share | DRAM GB | GB/s |\n|---|---|---|---|---|---|")
    else:
        print("| kernel | launches | ms (ncu clocks) | share |\n|---|---|---|---|")
    for name, s in total.most_common(top):
        row = f"| {name} | {count[name]} | {s * 1e3:.2f} | {100 * s / all_s:.1f} % |"
        if dram:
            row += f" {dram[name] / 1e9:.3f} | {dram[name] / s / 1e9:.0f} |"
        print(row)
    tail = f"| all {sum(count.values())} launches | | {all_s * 1e3:.2f} | 100 % |"
    if dram:
        tail += f" {sum(dram.values()) / 1e9:.3f} | |"
    print(tail)


if __name__ == "__main__":
    main()
