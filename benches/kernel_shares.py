#!/usr/bin/env python3
"""Kernel time shares from an Nsight Compute CSV (`ncu --metrics gpu__time_duration.sum --csv
--log-file FILE.csv PROGRAM ...`): total time per kernel name, its launches and its share, largest
first, as a Markdown table. ncu serializes kernels and locks clocks, so the shares, not the seconds,
are what carries over to a normal run.

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
    for r in rows:
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        v = float(r["Metric Value"].replace(",", ""))
        unit = r.get("Metric Unit", "nsecond")
        scale = {"nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0}.get(unit, 1e-9)
        name = r["Kernel Name"].split("(")[0]
        total[name] += v * scale
        count[name] += 1
    all_s = sum(total.values())
    print(f"| kernel | launches | ms (ncu clocks) | share |\n|---|---|---|---|")
    for name, s in total.most_common(top):
        print(f"| {name} | {count[name]} | {s * 1e3:.2f} | {100 * s / all_s:.1f} % |")
    print(f"| all {sum(count.values())} launches | | {all_s * 1e3:.2f} | 100 % |")


if __name__ == "__main__":
    main()
