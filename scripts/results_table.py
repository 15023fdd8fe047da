#!/usr/bin/env python3
"""Regenerates the README's results table from the JSON records under results/.

Numbers in the README come only from here, so they always match a committed record:
    scripts/results_table.py --write   # rewrites the block between the RESULTS markers
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- RESULTS:BEGIN -->", "<!-- RESULTS:END -->"


def gib(n):
    return f"{n / 2**30:.1f} GiB"


def reference_row(path, r):
    m = r["metrics"]
    what = f"reference `{r['model'] if 'model' in r else path.stem}`"
    cmd = r["command"].split(" --json")[0].replace("build-gpu/harness/", "")
    return (f"| `{cmd}` | {r['device'].split(' (')[0]} | {m['prefill_tokens_per_s']:.0f} tok/s prefill, "
            f"peak {gib(m['peak_memory_bytes'])} | [{path.name}]({path.relative_to(ROOT)}) |")


def gpu_check_row(path, r):
    worst = min(row["cosine"] for run in r["runs"] for row in run["rows"])
    flips = sum(run["tokens_with_routing_flips"] for run in r["runs"])
    tokens = sum(run["tokens"] for run in r["runs"])
    return (f"| `{r['command'] if isinstance(r['command'], str) else ' '.join(r['command'])}` (bf16 GPU vs fp32 CPU) | {r['device'].split(' (')[0]} | "
            f"worst per-layer cosine {worst:.6f} (> {r['threshold']['min_cosine']}); "
            f"{flips}/{tokens} tokens changed experts | [{path.name}]({path.relative_to(ROOT)}) |")


def rows():
    out = []
    for path in sorted((ROOT / "results").rglob("*.json")):
        r = json.loads(path.read_text())
        if r.get("subcommand") == "reference":
            out.append(reference_row(path, r))
        elif r.get("subcommand") == "test:GpuReference.Bf16OnGpuMatchesFp32OnCpu":
            out.append(gpu_check_row(path, r))
    return out


def table():
    head = ["| Run | Device | Measured | Record |", "|---|---|---|---|"]
    return "\n".join(head + rows())


def main():
    text = table()
    if "--write" in sys.argv:
        readme = ROOT / "README.md"
        s = readme.read_text()
        a, b = s.index(BEGIN) + len(BEGIN), s.index(END)
        readme.write_text(s[:a] + "\n" + text + "\n" + s[b:])
    else:
        print(text)


if __name__ == "__main__":
    main()
