#!/usr/bin/env python3
"""Where one prefill's device time goes, per GPU, from `nsys stats --report cuda_gpu_trace --format csv`
(every kernel, copy and memset with its start, duration and device), or from the Chrome trace that
LibTorch's profiler writes (`bench --trace-prefill DIR`: the same device items, and the host thread's
CUDA runtime calls):

  span      first start to last end on that device
  busy      time with at least one kernel, copy or memset running
  compute   time with a non-NCCL kernel (or a copy) running
  comm      time with an NCCL kernel running
  overlap   compute and comm at once (communication hidden behind compute)
  idle      span - busy: the device waits on the host (launches, host syncs) or on nothing

then the idle gaps (the largest, with the items on either side, and, from a trace with host calls,
the share of idle time during which the host sat in a synchronizing call: a device-to-host copy or a
wait), the host's runtime calls by summed time, and the largest kernels by summed duration. Usage:
  nsys_prefill_summary.py TRACE.csv|TRACE.json [--json OUT.json]
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


def read_kineto(text):
    """(device rows as read_trace gives them, host runtime calls and the harness's named host spans
    (lb::layer, lb::attention, lb::mlp, lb::head) as (start_ns, end_ns, name)) from a Chrome trace of
    LibTorch's profiler (timestamps in microseconds)."""
    events = json.loads(text).get("traceEvents", [])
    rows, host, scopes = [], [], []
    for e in events:
        if e.get("ph") != "X" or "ts" not in e:
            continue
        start, end = float(e["ts"]) * 1e3, (float(e["ts"]) + float(e.get("dur", 0))) * 1e3
        if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset"):
            rows.append((str(e.get("args", {}).get("device", e.get("pid", 0))), start, end, e.get("name", "")))
        elif e.get("cat") in ("cuda_runtime", "cuda_driver"):
            host.append((start, end, e.get("name", "")))
        elif e.get("cat") == "user_annotation" and e.get("name", "").startswith("lb::"):
            scopes.append((start, end, e["name"]))
    if not rows:
        raise ValueError("no kernel, gpu_memcpy or gpu_memset events: not a GPU trace of LibTorch's profiler")
    return rows, host, scopes


def merged(intervals):
    out = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def is_blocking(call):
    """Runtime calls that hold the host until the device catches up (a copy to the host, a wait)."""
    if "Synchronize" in call or call in ("cudaMemcpyAsync", "cuMemcpyDtoHAsync_v2"):
        return True
    return call.startswith(("cudaMemcpy", "cuMemcpy")) and "Async" not in call


def innermost(scopes, t):
    """The shortest named host span open at time t (the harness step that was issuing work), or ''."""
    open_now = [(e - s, n) for s, e, n in scopes if s <= t <= e]
    return min(open_now)[1] if open_now else ""


def gaps(items, host, scopes=(), min_ns=2000.0, top=8):
    """Idle time between the device's busy intervals: gaps of at least min_ns, the largest with their
    neighbours, and how much of the idle time the host spent inside blocking calls."""
    busy = merged([(s, e) for s, e, _ in items])
    found = [(b[0] - a[1], a[1], b[0]) for a, b in zip(busy, busy[1:]) if b[0] - a[1] >= min_ns]
    ends = sorted(items, key=lambda it: it[1])
    starts = sorted(items, key=lambda it: it[0])

    def before(t):
        last = [it for it in ends if it[1] <= t]
        return last[-1][2][:60] if last else ""

    def after(t):
        first = [it for it in starts if it[0] >= t]
        return first[0][2][:60] if first else ""

    blocking = merged([(s, e) for s, e, n in host if is_blocking(n)])
    in_blocking = 0.0
    for _, s, e in found:
        for bs, be in blocking:
            in_blocking += max(0.0, min(e, be) - max(s, bs))
    largest = sorted(found, reverse=True)[:top]
    # Each gap charged to the harness step whose host work ended it (the span open when the next
    # item started): where the host kept the GPU waiting.
    by_scope = defaultdict(float)
    for g, _, e in found:
        by_scope[innermost(scopes, e) or "outside lb:: spans"] += g
    out = {
        "gaps": len(found), "gap_ms": sum(g for g, _, _ in found) / 1e6,
        "gap_ms_in_blocking_host_calls": in_blocking / 1e6,
        "largest": [{"us": g / 1e3, "after": before(s), "before": after(e), "host_step": innermost(scopes, e)}
                    for g, s, e in largest],
    }
    if scopes:
        out["gap_ms_by_host_step"] = {n: t / 1e6 for n, t in sorted(by_scope.items(), key=lambda kv: -kv[1])}
    return out


def host_calls(host, top=8):
    calls = defaultdict(lambda: [0, 0.0])
    for s, e, name in host:
        calls[name][0] += 1
        calls[name][1] += e - s
    return [{"name": n, "count": c, "ms": t / 1e6} for n, (c, t) in sorted(calls.items(), key=lambda kv: -kv[1][1])[:top]]


def union_length(intervals):
    return sum(e - s for s, e in merged(intervals))


def is_comm(name):
    return "nccl" in name.lower()


def summarize(rows, top=12, host=None, scopes=()):
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
            "idle_gaps": gaps(items, host or [], scopes),
        }
    if host:
        out["host_calls"] = host_calls(host)
    return out


def print_summary(summary):
    for device, d in summary.items():
        if device == "host_calls":
            print("host runtime calls (the tracing thread), by summed time:")
            for c in d:
                print(f"  {c['ms']:8.3f} ms  x{c['count']:<5d} {c['name']}")
            continue
        span = d["span_ms"] or 1.0
        print(f"device {device}: span {d['span_ms']:.2f} ms, {d['items']} kernels/copies")
        for key in ("compute", "comm", "overlap", "idle"):
            print(f"  {key:8s} {d[key + '_ms']:8.2f} ms  {100 * d[key + '_ms'] / span:5.1f}%")
        g = d["idle_gaps"]
        print(f"  {g['gaps']} idle gaps >= 2 us, {g['gap_ms']:.2f} ms; {g['gap_ms_in_blocking_host_calls']:.2f} ms of it "
              "while the host sat in a copy to the host or a wait")
        for step, ms in g.get("gap_ms_by_host_step", {}).items():
            print(f"    {ms:8.3f} ms of it ended by host work in {step}")
        for x in g["largest"]:
            where = f"  [{x['host_step']}]" if x.get("host_step") else ""
            print(f"    {x['us']:8.1f} us  after {x['after']}  before {x['before']}{where}")
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
    # A Kineto trace: kernels 0-10 us and 50-60 us on device 0; the host waits in
    # cudaStreamSynchronize 5-40 us and launches at 45 us: 30 us of the 40 us gap were a wait.
    trace = {"traceEvents": [
        {"ph": "X", "cat": "kernel", "name": "gemm", "ts": 0, "dur": 10, "args": {"device": 0}},
        {"ph": "X", "cat": "kernel", "name": "topk", "ts": 50, "dur": 10, "args": {"device": 0}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaStreamSynchronize", "ts": 5, "dur": 35},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 45, "dur": 3},
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 4},
        {"ph": "X", "cat": "user_annotation", "name": "lb::layer", "ts": 0, "dur": 70},
        {"ph": "X", "cat": "user_annotation", "name": "lb::attention", "ts": 42, "dur": 20}]}
    rows, host, scopes = read_kineto(json.dumps(trace))
    k = summarize(rows, host=host, scopes=scopes)
    g = k["0"]["idle_gaps"]
    assert g["gaps"] == 1 and abs(g["gap_ms"] - 0.040) < 1e-9, g
    assert abs(g["gap_ms_in_blocking_host_calls"] - 0.030) < 1e-9, g
    assert g["largest"][0]["after"] == "gemm" and g["largest"][0]["before"] == "topk", g
    assert g["largest"][0]["host_step"] == "lb::attention", g  # the innermost span open at 50 us
    assert g["gap_ms_by_host_step"] == {"lb::attention": 0.040}, g
    assert k["host_calls"][0] == {"name": "cudaStreamSynchronize", "count": 1, "ms": 0.035}, k["host_calls"]
    try:
        read_kineto(json.dumps({"traceEvents": trace["traceEvents"][4:]}))
    except ValueError:
        pass
    else:
        raise AssertionError("a trace without device events was accepted")
    print("self-test passed")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--json"):
        print(__doc__)
        return 2
    text = open(argv[1], errors="replace").read()
    if text.lstrip().startswith("{"):
        rows, host, scopes = read_kineto(text)
        summary = summarize(rows, host=host, scopes=scopes)
    else:
        summary = summarize(read_trace(text))
    print_summary(summary)
    if len(argv) == 4:
        with open(argv[3], "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
