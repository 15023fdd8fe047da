#!/usr/bin/env python3
"""What each kernel adds to a graphed decode step, from the Chrome trace that `bench --trace-decode DIR`
writes (LibTorch's profiler around one burst of decode steps; each step's kernels on the device's
clock). Chained launches let a kernel start before the one before it ends, so a kernel's duration
overstates what it costs the step; here each step's kernels are walked in start order with a
frontier F (the latest end so far), and each kernel gets

  added     max(0, end - max(F, start)): the step's length that it alone accounts for
  idle      max(0, start - F): the device doing nothing before it (a launch or a wait)

so that the sum of added and idle over a step's kernels is the step's span. Printed per kernel name,
averaged over the steps, largest first, with each name's summed duration beside them. A step starts
at each launch of the first item (in time order) that runs exactly `--steps` times in the trace:
every step of a graph runs the same kernels, and items outside the burst (the profiler's own, a
fill before the first step) are left out.
Usage:
  decode_trace_summary.py TRACE.json [--steps 8] [--json OUT.json]
  decode_trace_summary.py --self-test
"""
import json
import os
import statistics
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nsys_prefill_summary import read_kineto  # noqa: E402  (the same trace reader)


def split_steps(items, steps):
    """The device's kernels (start_ns, end_ns, name) in start order, cut into `steps` runs, each from
    one launch of the anchor (the first item whose name runs exactly `steps` times) to the next;
    items before the first anchor are left out."""
    items = sorted(items)
    counts = defaultdict(int)
    for _, _, name in items:
        counts[name] += 1
    anchor = next((name for _, _, name in items if counts[name] == steps), None)
    if steps < 1 or anchor is None:
        raise ValueError(f"no kernel runs exactly {steps} times in these {len(items)}: not a burst of {steps} steps")
    starts = [i for i, (_, _, name) in enumerate(items) if name == anchor] + [len(items)]
    return [items[starts[s]:starts[s + 1]] for s in range(steps)]


def walk(step):
    """(span, [(name, duration, added, idle)]) of one step's kernels in start order."""
    frontier = step[0][0]
    out = []
    for start, end, name in step:
        idle = max(0.0, start - frontier)
        added = max(0.0, end - max(frontier, start))
        out.append((name, end - start, added, idle))
        frontier = max(frontier, end)
    return frontier - step[0][0], out


def summarize(rows, steps=8):
    """Per device: median step span, and per kernel name the mean per step of its count, duration,
    added and idle time (microseconds), largest added + idle first."""
    by_device = defaultdict(list)
    for device, start, end, name in rows:
        by_device[device].append((start, end, name))
    summary = {}
    for device, items in sorted(by_device.items()):
        spans, per_name = [], defaultdict(lambda: [0, 0.0, 0.0, 0.0])
        for step in split_steps(items, steps):
            span, kernels = walk(step)
            spans.append(span)
            for name, duration, added, idle in kernels:
                entry = per_name[name[:100]]
                entry[0] += 1
                entry[1] += duration
                entry[2] += added
                entry[3] += idle
        n = len(spans)
        kernels = [{"name": name, "count": c / n, "duration_us": d / n / 1e3, "added_us": a / n / 1e3,
                    "idle_us": i / n / 1e3} for name, (c, d, a, i) in per_name.items()]
        # The mean step (added + idle over all names) next to the median span: the first step of a
        # burst can carry the profiler's start.
        kernels.sort(key=lambda k: -(k["added_us"] + k["idle_us"]))
        summary[device] = {
            "steps": n,
            "step_span_us": statistics.median(spans) / 1e3,
            "kernels_per_step": sum(k["count"] for k in kernels),
            "duration_us": sum(k["duration_us"] for k in kernels),
            "added_us": sum(k["added_us"] for k in kernels),
            "idle_us": sum(k["idle_us"] for k in kernels),
            "kernels": kernels,
        }
    return summary


def print_summary(summary, top=25):
    for device, d in summary.items():
        print(f"device {device}: {d['steps']} steps, median span {d['step_span_us']:.1f} us, "
              f"{d['kernels_per_step']:.0f} kernels a step summing to {d['duration_us']:.1f} us "
              f"(added {d['added_us']:.1f} + idle {d['idle_us']:.1f} us a step on average)")
        print(f"  {'added':>8} {'idle':>7} {'duration':>9} {'count':>6}  kernel (us per step)")
        for k in d["kernels"][:top]:
            print(f"  {k['added_us']:8.1f} {k['idle_us']:7.1f} {k['duration_us']:9.1f} {k['count']:6.1f}  {k['name'][:90]}")


def self_test():
    # Two steps of three kernels: A 0-10, B 5-20 (5 hidden behind A), C 25-30 after 5 idle; a fill
    # before the burst, left out.
    step = [("gemv", 0, 10), ("topk", 5, 20), ("head", 25, 30)]
    events = [{"ph": "X", "cat": "kernel", "name": "fill", "ts": -50, "dur": 1, "args": {"device": 0}}]
    for s in range(2):
        for name, a, b in step:
            events.append({"ph": "X", "cat": "kernel", "name": name, "ts": 100 * s + a, "dur": b - a,
                           "args": {"device": 0}})
    rows, _, _ = read_kineto(json.dumps({"traceEvents": events}))
    d = summarize(rows, steps=2)["0"]
    assert abs(d["step_span_us"] - 30) < 1e-9, d["step_span_us"]
    by = {k["name"]: k for k in d["kernels"]}
    assert abs(by["gemv"]["added_us"] - 10) < 1e-9 and abs(by["topk"]["added_us"] - 10) < 1e-9, by
    assert abs(by["topk"]["duration_us"] - 15) < 1e-9, by
    assert abs(by["head"]["idle_us"] - 5) < 1e-9 and abs(by["head"]["added_us"] - 5) < 1e-9, by
    assert abs(d["added_us"] + d["idle_us"] - d["step_span_us"]) < 1e-9
    assert "fill" not in by, by
    try:
        split_steps([(0, 1, "a")] * 3, 2)
        raise AssertionError("3 launches of one kernel split into 2 steps")
    except ValueError:
        pass
    print("decode_trace_summary self-test passed")


def main(argv):
    if argv[1:] == ["--self-test"]:
        self_test()
        return 0
    if len(argv) < 2:
        print(__doc__)
        return 2
    steps, out = 8, None
    args = argv[2:]
    while args:
        flag = args.pop(0)
        if flag == "--steps" and args:
            steps = int(args.pop(0))
        elif flag == "--json" and args:
            out = args.pop(0)
        else:
            print(f"unknown argument {flag}", file=sys.stderr)
            return 2
    with open(argv[1]) as f:
        rows, _, _ = read_kineto(f.read())
    summary = summarize(rows, steps)
    print_summary(summary)
    if out:
        with open(out, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
