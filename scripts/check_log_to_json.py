#!/usr/bin/env python3
"""Turns the text output of `scripts/gpu_run.sh check` into check records.

For runs whose --json writer failed (commit c37f316: a null-JSON bug, fixed in 8f274fa) the
printed tables are the measurement; this parses them as printed, without changing a number, and
marks the record as parsed from the log.
    scripts/check_log_to_json.py LOG --commit C --device D --gpu-run-sh scripts/gpu_run.sh OUTDIR
"""
import argparse
import json
import pathlib
import re


def commands(gpu_run_sh, gpus):
    """The check commands of gpu_run.sh, in order, with $gpus filled in."""
    text = pathlib.Path(gpu_run_sh).read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        m = re.search(r'\$bin (check .*?)\|\|', line)
        if m:
            cmd = " ".join(m.group(1).split()).replace('"$gpus"', str(gpus)).replace("${gpus}", str(gpus))
            out.append("layoutbench " + re.sub(r' --json \S+', '', cmd))
    return out


def parse(log):
    runs, run, layout = [], None, None
    for line in log.splitlines():
        if line.startswith("noise floor"):
            run = {"noise_floor": [float(x) for x in line.split(":", 1)[1].split()], "layouts": []}
            runs.append(run)
        elif line.startswith("threshold per layer"):
            run["noise_floor_factor"] = float(line.split(":", 1)[1].split("x")[0])
        elif line.startswith("layout "):
            m = re.match(r"layout (\S+?)(?: \(replaces (\S+)\))?: (.*)", line)
            layout = {"layout": m.group(1), "replaces": m.group(2) or "", "layers": []}
            run["layouts"].append(layout)
        elif layout is not None and re.match(r"\s+tp=", line):
            cfg, split, rows = line.strip().split("; ")
            layout["parallel"] = dict((k, v) for k, v in (kv.split("=") for kv in cfg.split()))
            layout["split"] = split.split()[1]
            layout["rank_tokens"] = [int(x) for x in rows.split()[3:]]
        elif layout is not None and re.match(r"\s+\d+\s+\S+e", line):
            i, max_abs, rel_l2, cos, thr, verdict = line.split()
            layout["layers"].append({"layer": int(i), "max_abs": float(max_abs), "rel_l2": float(rel_l2),
                                     "cosine": float(cos), "threshold": float(thr), "pass": verdict == "ok"})
        elif layout is not None and "layers took" in line:
            m = re.search(r"took ([\d.]+) ms on rank 0, (\d+) collectives", line)
            layout["layout_ms"], layout["collective_calls"] = float(m.group(1)), int(m.group(2))
        elif line.startswith("all layouts match") or line.startswith("DIVERGENCE"):
            run["pass"] = line.startswith("all layouts match")
            m = re.search(r"\((\d+) layout\(s\), (\d+) layers, (\d+) tokens, (\w+)\)", line)
            run["tokens"], run["dtype"] = int(m.group(3)), m.group(4)
            for l in run["layouts"]:
                l["pass"] = all(x["pass"] for x in l["layers"])
            layout = None
    return runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("outdir")
    ap.add_argument("--commit", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--gpus", type=int, required=True)
    ap.add_argument("--gpu-run-sh", required=True, help="gpu_run.sh as of --commit")
    a = ap.parse_args()
    log = pathlib.Path(a.log)
    runs = parse(log.read_text())
    cmds = commands(a.gpu_run_sh, a.gpus)
    assert len(cmds) == len(runs), (cmds, len(runs))
    for cmd, run in zip(cmds, runs):
        model = re.search(r"--model (\S+)", cmd).group(1)
        record = {"schema": "layoutbench.run/1", "subcommand": "check", "command": cmd, "commit": a.commit,
                  "device": a.device, "ranks": a.gpus, "backend": "nccl", "model_name": model,
                  "parsed_from_log": str(log.name), **run}
        path = pathlib.Path(a.outdir) / f"check_{model}_{a.gpus}gpu_{run['dtype']}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    main()
