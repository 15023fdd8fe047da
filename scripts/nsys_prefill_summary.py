#!/usr/bin/env python3
"""Where one prefill's device time goes, per GPU, from `nsys stats --report cuda_gpu_trace --format csv`
(every kernel, copy and memset with its start, duration and device):

  span      first start to last end on that device
  busy      time with at least one kernel, copy or memset running
  compute   time with a non-NCCL kernel (or a copy) running
  comm      time with an NCCL kernel running
  overlap   compute and comm at once (communication hidden behind compute)
  idle      span - busy: the device waits on the host (launches, host syncs) or on nothing

then the largest kernels by summed duration. Usage:
  nsys_prefill_summary.py TRACE.csv [--json OUT.json]
  nsys_prefill_summary.py --self-test
"""
import csv
import io
import json
import sys
from collections import defaultdict


def column(header, *prefixes):
    """The first column whose name starts with one of `prefixes` (nsys versions name them slightly apart)."""
    for prefix in prefixes:
        for name in header:
            if name.strip().lower().startswith(prefix.lower()):
                return name
    return None


def read_trace(text):
    """Rows of (device, start_ns, end_ns, name) from the CSV text; lines before the header are skipped."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if "Start" in line and "Duration" in line), None)
    if first is None:
        raise ValueError("no 'Start' and 'Duration' header: not a cuda_gpu_trace CSV")
    reader = csv.DictReader(io.StringIO("\n".join(lines[first:])))
    start, duration = column(reader.fieldnames, "Start"), column(reader.fieldnames, "Duration")
    device, name = column(reader.fieldnames, "Device", "GPU"), column(reader.fieldnames, "Name")
    rows = []
    for r in reader:
        if not r.get(start) or not r.get(duration):
            continue
        s = float(r[start].replace(",", ""))
        rows.append((r.get(device, "0") if device else "0", s, s + float(r[duration].replace(",", "")),
                     r.get(name, "") if name else ""))
    return rows


def union_length(intervals):
    total, end = 0.0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def is_comm(name):
    return "nccl" in name.lower()


def summarize(rows, top=12):
    by_device = defaultdict(list)
    for device, s, e, name in rows:
        by_device[device].append((s, e, name))
    out = {}
    for device, items in sorted(by_device.items()):
        span = max(e for _, e, _ in items) - min(s for s, _, _ in items)
        busy = union_length([(s, e) for s, e, _ in items])
        comm = union_length([(s, e) for s, e, n in items if is_comm(n)])
        compute = union_length([(s, e) for s, e, n in items if not is_comm(n)])
        kernels = defaultdict(float)
        for s, e, name in items:
            kernels[name[:100]] += e - s
        out[device] = {
            "span_ms": span / 1e6, "busy_ms": busy / 1e6, "compute_ms": compute / 1e6, "comm_ms": comm / 1e6,
            "overlap_ms": (compute + comm - busy) / 1e6, "idle_ms": (span - busy) / 1e6, "items": len(items),
            "top": [{"name": n, "ms": t / 1e6} for n, t in sorted(kernels.items(), key=lambda kv: -kv[1])[:top]],
        }
    return out


def print_summary(summary):
    for device, d in summary.items():
        span = d["span_ms"] or 1.0
        print(f"device {device}: span {d['span_ms']:.2f} ms, {d['items']} kernels/copies")
        for key in ("compute", "comm", "overlap", "idle"):
            print(f"  {key:8s} {d[key + '_ms']:8.2f} ms  {100 * d[key + '_ms'] / span:5.1f}%")
        for k in d["top"]:
            print(f"  {k['ms']:8.3f} ms  {k['name']}")


def self_test():
    # Device 0: compute 0-4, NCCL 3-6 (1 hidden), idle 6-8, compute 8-10. Device 1: one NCCL kernel.
    text = ("preamble line\n"
            '"Start (ns)","Duration (ns)","CorrId","Device","Strm","Name"\n'
            '0,4000000,1,0,7,gemm\n3000000,3000000,2,0,9,ncclDevKernel_AllReduce\n8000000,2000000,3,0,7,gemm\n'
            '100,900,4,1,7,ncclDevKernel_AllGather\n')
    s = summarize(read_trace(text))
    d = s["0"]
    expect = {"span_ms": 10.0, "busy_ms": 8.0, "compute_ms": 6.0, "comm_ms": 3.0, "overlap_ms": 1.0, "idle_ms": 2.0}
    for key, want in expect.items():
        assert abs(d[key] - want) < 1e-9, f"{key}: {d[key]} != {want}"
    assert d["top"][0] == {"name": "gemm", "ms": 6.0}
    assert s["1"]["comm_ms"] == 900 / 1e6 and s["1"]["compute_ms"] == 0.0
    try:
        read_trace("no header here\n1,2,3\n")
    except ValueError:
        pass
    else:
        raise AssertionError("a file without the header was accepted")
    print("self-test passed")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--json"):
        print(__doc__)
        return 2
    summary = summarize(read_trace(open(argv[1], errors="replace").read()))
    print_summary(summary)
    if len(argv) == 4:
        with open(argv[3], "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
