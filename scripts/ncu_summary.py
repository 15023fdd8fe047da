#!/usr/bin/env python3
"""Sums an `ncu --csv --metrics gpu__time_duration.sum` log by kernel name: where a decode step's
device time goes, largest first, with each kernel's count and share."""
import csv
import io
import sys
from collections import defaultdict


def main(path):
    text = open(path, errors="replace").read()
    start = text.find('"ID"')
    if start < 0:
        print(f"{path}: no ncu rows")
        return 1
    total = defaultdict(float)
    count = defaultdict(int)
    for row in csv.DictReader(io.StringIO(text[start:])):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(row.get("Metric Unit"), 1e-3)
        name = row["Kernel Name"][:110]
        total[name] += float(row["Metric Value"].replace(",", "")) * scale
        count[name] += 1
    all_us = sum(total.values())
    print(f"{sum(count.values())} kernels, {all_us:.1f} us")
    for name, us in sorted(total.items(), key=lambda kv: -kv[1]):
        print(f"{us:9.1f} us {100 * us / all_us:5.1f}% x{count[name]:<4d} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
