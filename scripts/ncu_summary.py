#!/usr/bin/env python3
"""Sums an `ncu --csv --metrics gpu__time_duration.sum` log by kernel name: where a decode step's
device time goes, largest first, with each kernel's count and share. With --json FILE it also
writes every launch in order with all the metrics the log holds (kernel, grid, metric: value)."""
import argparse
import csv
import io
import json
import sys
from collections import defaultdict


def launches(rows):
    """One dict a launch, in launch order: its kernel name, grid and every metric (numbers as floats)."""
    by_id = {}
    for row in rows:
        launch = by_id.setdefault(int(row["ID"]), {"kernel": row["Kernel Name"][:110], "grid": row.get("Grid Size")})
        value = row["Metric Value"].replace(",", "")
        try:
            launch[row["Metric Name"]] = float(value)
        except ValueError:
            launch[row["Metric Name"]] = value
    return [by_id[i] for i in sorted(by_id)]


def main(path, json_path=None):
    text = open(path, errors="replace").read()
    start = text.find('"ID"')
    if start < 0:
        print(f"{path}: no ncu rows")
        return 1
    rows = list(csv.DictReader(io.StringIO(text[start:])))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"source": path, "launches": launches(rows)}, f, indent=1)
    total = defaultdict(float)
    count = defaultdict(int)
    for row in rows:
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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("csv", help="the ncu --csv log")
    parser.add_argument("--json", help="also write every launch with its metrics here")
    args = parser.parse_args()
    sys.exit(main(args.csv, args.json))
