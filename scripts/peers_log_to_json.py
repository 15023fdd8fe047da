#!/usr/bin/env python3
"""A peers record (../shared/peers/fused_moe_peers.py's JSON rows) rebuilt from the script's console
log, for a device call whose JSON did not come back while the log did. Every number is read from the
log's per-row table (used, ms, prep, gemm, graph, g.gemm, rel_l2, config); nothing else of the JSON
(peaks, config tables) is recovered.

    scripts/peers_log_to_json.py peers.log out.json [--commit HASH] [--command TEXT]
    scripts/peers_log_to_json.py --self-test
"""
import argparse
import json
import re
import sys

PEERS = ("sglang_triton", "sglang_triton_borrowed", "torch_grouped_mm")


def parse(lines):
    rows, model, device = [], None, None
    for line in lines:
        if line.startswith("device "):
            device = line[len("device "):].split(" (")[0]
        header = re.match(r"^(\S+): \d+ experts", line)
        if header:
            model = header.group(1)
            continue
        f = line.split()
        if model and len(f) >= 17 and f[0].isdigit() and f[1] in PEERS:
            ms, prep, gemm, graph, graph_gemm = map(float, f[3:8])
            rows.append({"model": model, "tokens": int(f[0]), "peer": f[1], "experts_used": int(f[2]), "ms": ms,
                         "prep_ms": prep, "gemm_ms": gemm, "graph_ms": graph, "graph_gemm_ms": graph_gemm,
                         "rel_l2": None if f[16] == "-" else float(f[16]), "config_str": " ".join(f[17:]),
                         "error": None})
    return device, rows


def self_test():
    # Two models' headers and rows as the peers' script prints them, a checked and an unchecked row,
    # and lines that must not be read as rows (the column header, the summary at the end).
    log = """device NVIDIA H200 (cuda:0, 1 visible; sm_90, 132 SMs)
qwen3-30b-a3b: 128 experts, top 8, hidden 2048, moe_intermediate 768 (softmax top-k routing)
  tokens peer                    used       ms    prep    gemm   graph  g.gemm TFLOP/s %peak   GB/s   %bw g.%pk g.%bw gg%pk gg%bw   rel_l2  config
       4 sglang_triton             30   0.4570  0.2834  0.0778  0.1370  0.0757     0.7   0.1    619  14.6   0.3  48.7   0.6  88.1 4.18e-03  M16N64K128G16w4s2
    1024 torch_grouped_mm         128   0.7779  0.2490  0.4079  0.7450  0.4059    99.4  14.6   1553  36.6  15.2  38.2  27.9  70.1        -  torch.nn.functional.grouped_mm
deepseek-v3: 256 experts, top 8, hidden 7168, moe_intermediate 2048
       8 sglang_triton_borrowed    61   1.4197  0.5501  1.1985  1.2498  1.1794     4.0   0.6   3784  89.2   0.7 101.3   0.7 107.3 4.20e-03  M16N64K128G1w4s3
  qwen3-30b-a3b       4: eager 0.2945 ms torch_grouped_mm (0.2% peak, 22.6% bw); graph 0.1370 ms sglang_triton
"""
    device, rows = parse(log.splitlines())
    assert device == "NVIDIA H200", device
    assert [(r["model"], r["tokens"], r["peer"]) for r in rows] == [
        ("qwen3-30b-a3b", 4, "sglang_triton"), ("qwen3-30b-a3b", 1024, "torch_grouped_mm"),
        ("deepseek-v3", 8, "sglang_triton_borrowed")], rows
    assert rows[0]["graph_ms"] == 0.1370 and rows[0]["graph_gemm_ms"] == 0.0757 and rows[0]["experts_used"] == 30
    assert rows[0]["rel_l2"] == 4.18e-03 and rows[1]["rel_l2"] is None, rows
    assert rows[1]["config_str"] == "torch.nn.functional.grouped_mm" and rows[2]["graph_gemm_ms"] == 1.1794, rows
    assert parse(["tokens peer used ms"]) == (None, [])
    print("self-test passed")


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("out")
    ap.add_argument("--commit")
    ap.add_argument("--command")
    a = ap.parse_args()
    device, rows = parse(open(a.log).read().splitlines())
    if not rows:
        raise SystemExit(f"{a.log}: no peer rows found")
    record = {"source": f"rebuilt from the console log {a.log.split('/')[-1]} by scripts/peers_log_to_json.py",
              "device": device, "rows": rows, "commit": a.commit, "command": a.command}
    with open(a.out, "w") as f:
        json.dump(record, f, indent=1)
    print(f"{a.out}: {len(rows)} rows")


if __name__ == "__main__":
    main()
