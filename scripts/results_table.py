#!/usr/bin/env python3
"""Regenerates the results table (docs/results.md) from the JSON records under results/.

Measured numbers in the docs come only from here, so they always match a committed record:
    scripts/results_table.py --write   # rewrites the block between the RESULTS markers
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- RESULTS:BEGIN -->", "<!-- RESULTS:END -->"
PEERS_BEGIN, PEERS_END = "<!-- PEERS:BEGIN -->", "<!-- PEERS:END -->"
TABLE_DOC = ROOT / "docs" / "results.md"


def record_link(path):
    # Relative to the page the table lives in (docs/), so the links work on GitHub and offline.
    return f"[{path.name}](../{path.relative_to(ROOT)})"


def gib(n):
    return f"{n / 2**30:.1f} GiB"


def reference_row(path, r):
    m = r["metrics"]
    what = f"reference `{r['model'] if 'model' in r else path.stem}`"
    cmd = r["command"].split(" --json")[0].replace("build-gpu/harness/", "")
    return (f"| `{cmd}` | {r['device'].split(' (')[0]} | {m['prefill_tokens_per_s']:.0f} tok/s prefill, "
            f"peak {gib(m['peak_memory_bytes'])} | {record_link(path)} |")


def gpu_check_row(path, r):
    worst = min(row["cosine"] for run in r["runs"] for row in run["rows"])
    flips = sum(run["tokens_with_routing_flips"] for run in r["runs"])
    tokens = sum(run["tokens"] for run in r["runs"])
    return (f"| `{r['command'] if isinstance(r['command'], str) else ' '.join(r['command'])}` (bf16 GPU vs fp32 CPU) | {r['device'].split(' (')[0]} | "
            f"worst per-layer cosine {worst:.6f} (> {r['threshold']['min_cosine']}); "
            f"{flips}/{tokens} tokens changed experts | {record_link(path)} |")


# Variables of the call scripts, not of the run: left out of a record's command.
RUNNER_VARIABLES = {"LB_COMMIT", "LB_SHARED_DIR", "LB_BENCH_MOE_ONLY", "LB_NIGHTLY_TIMEOUT", "LB_CHECK_TIMEOUT",
                    "LB_KERNELS_TIMEOUT", "LB_KERNEL_TESTS", "LB_BUILD_TARGET", "LB_WALL", "LB_X"}


def short_command(r):
    cmd = r["command"] if isinstance(r["command"], str) else " ".join(r["command"])
    cmd = cmd.split(" --json")[0].replace("build-gpu/harness/", "")
    # The A/B switches the run was under (its environment), so that an A/B's rows tell apart.
    env = (r.get("provenance") or {}).get("environment") or {}
    switches = [f"{k}={v}" for k, v in sorted(env.items())
                if k.startswith("LB_") and k not in RUNNER_VARIABLES and f"{k}=" not in cmd]
    return " ".join(switches + [cmd])


def collectives_row(path, r):
    rows = r["rows"]
    same_call = [x for x in rows if "busbw_ratio_to_direct" in x and "padded" not in x["algo"]]
    big = [x["busbw_ratio_to_direct"] for x in same_call if x["bytes"] >= 16 << 20]
    small = [x["busbw_ratio_to_direct"] for x in same_call if x["bytes"] < 16 << 20]
    ar = max((x for x in rows if x["op"] == "all_reduce"), key=lambda x: x["bytes"])
    picks = sorted({f"{x['split']}:{x['algo']}" for x in rows if x["op"] == "reduce_scatterv" and "auto" in x["algo"]})
    launch = "mpirun, one process per GPU" if "mpirun" in path.name else "one process, one thread per GPU"
    return (f"| `{short_command(r)}` ({launch}) | {r['device'].split(' (')[0]} x{r['ranks']} | "
            f"#wrong {r['wrong_total']}; busbw / direct NCCL: {min(big):.3f}-{max(big):.3f} for 16-256 MB, "
            f"{min(small):.3f}-{max(small):.3f} for 1-4 MB; all_reduce {ar['bytes'] >> 20} MB busbw "
            f"{ar['busbw_GBps']:.0f} GB/s; reduce_scatterv auto pick {', '.join(picks)} | "
            f"{record_link(path)} |")


def check_row(path, r):
    layouts = r["layouts"]
    margin = max(l["rel_l2"] / l["threshold"] for x in layouts for l in x["layers"])
    verdict = "all pass" if r["pass"] else "DIVERGENCE"
    note = " (parsed from the run's log)" if "parsed_from_log" in r else ""
    if r.get("decode_steps"):
        worst = max(v["rel_l2"] / v["threshold"] for x in layouts for v in x["decode"])
        note += (f"; {r['decode_steps']} decode steps, every (step, layer) of every layout: worst rel_l2 / threshold "
                 f"{worst:.2f}")
    if "worst_row_ratio" in r:
        note += f"; worst row / its bound {r['worst_row_ratio']:.2f}"
    return (f"| `{short_command(r)}` | {r['device'].split(' (')[0]} x{r['ranks']} | {len(layouts)} layouts, {verdict}; "
            f"worst rel_l2 / threshold {margin:.2f}; noise floor {r['noise_floor'][0]:.4f}-{r['noise_floor'][-1]:.4f}"
            f"{note} | {record_link(path)} |")


def v4_check_row(path, r):
    # DeepSeek-V4: verdict on the reference's choices; the layouts' own choices may move a few rows.
    layouts = r["layouts"]
    outputs = lambda x: x["layers"] + x["head"]
    margin = max(o["rel_l2"] / o["threshold"] for x in layouts for o in outputs(x))
    verdict = "all pass" if r["pass"] else "DIVERGENCE"
    own = lambda x: x["own_choices"]
    moved = ", ".join(
        f"{x['layout']} " + (next(f"{o['rows_past_threshold']}/{o['rows']} rows at {o['output']}"
                                  for o in outputs(own(x)) if o["output"] == own(x)["first_moved"])
                             if own(x)["first_moved"] else "none")
        for x in layouts)
    return (f"| `{short_command(r)}` | {r['device'].split(' (')[0]} x{r['ranks']} | {len(layouts)} layouts, {verdict} "
            f"on the reference's indexer picks and experts, worst rel_l2 / threshold {margin:.2f} "
            f"(threshold {r['threshold']:g}, f32); on their own choices, rows first moved: {moved} | "
            f"{record_link(path)} |")


def capture_row(path, r):
    # The op-capture run beside the same command without it: the cost of capturing every op.
    plain = json.loads((path.parent / path.name.replace("capture_op_", "capture_none_")).read_text())
    plain_ms = {x["layout"]: x["layout_ms"] for x in plain["layouts"]}
    ratios = ", ".join(f"{x['layout']} {x['layout_ms']:.0f} ms / {plain_ms[x['layout']]:.0f} ms = "
                       f"{x['layout_ms'] / plain_ms[x['layout']]:.2f}x" for x in r["layouts"])
    return (f"| `{short_command(r)}` against `--capture none` | {r['device'].split(' (')[0]} x{r['ranks']} | "
            f"op capture with per-layer checking, layout time (one run each): {ratios} | "
            f"{record_link(path)} |")


def gsm8k_row(path, r):
    runs = r["runs"]
    parts = []
    for x in runs:
        what = f"{x['name']}: prefill {x['prefill_tokens_per_s']:.0f} tok/s, decode {x['decode_tokens_per_s']:.0f} tok/s"
        if "agreement" in x:
            what += f", identical to the reference {x['agreement']['identical']}/{x['agreement']['total']}"
        parts.append(what)
    acc = runs[0]["accuracy"]
    note = ("random weights: accuracy means nothing" if not r["accuracy_meaningful"]
            else f"reference accuracy {acc['correct']}/{acc['total']}")
    return (f"| `{short_command(r)}` | {r['device'].split(' (')[0]} x{r['ranks']} | {'; '.join(parts)} ({note}) | "
            f"{record_link(path)} |")


def bench_moe_row(path, r):
    parts = []
    for m in r["models"]:
        by = {x["tokens"]: x for x in m["rows"]}
        # 8192 tokens, or the largest count of a record that has fewer rows.
        big = by.get(8192) or by[max(by)]
        decode = [by[t] for t in (1, 2, 4, 8, 16, 32, 64) if t in by]
        text = (f"{m['model']}: {big['tokens']} tokens {big['fused_ms']:.2f} ms = {big['fused_tflops']:.0f} TFLOP/s "
                f"({100 * big['share_of_matmul_peak']:.0f}% of peak, {big['speedup']:.1f}x the plain path)")
        if decode:
            text += (f"; decode {'/'.join(str(x['tokens']) for x in decode)} tokens "
                     f"{'/'.join(format(100 * x['share_of_bandwidth'], '.0f') for x in decode)}% of bandwidth")
        parts.append(text)
    return (f"| `{short_command(r)}` | {r['device'].split(' (')[0]} | measured peaks {r['peak_matmul_tflops']:.0f} TFLOP/s, "
            f"{r['peak_copy_gbps']:.0f} GB/s; {'; '.join(parts)} | {record_link(path)} |")


def bench_layer_row(path, r):
    steps = {x["step"]: x["ms"] for x in r["steps"]}
    hf_path = path.parent / path.name.replace("bench_layer_", "hf_layer_")
    hf = json.loads(hf_path.read_text()) if hf_path.exists() else None
    vs_hf = (f"; transformers {hf['transformers']} layer in the same call {hf['ms']:.2f} ms "
             f"({hf['ms'] / steps['whole layer (fused)']:.2f}x slower than fused)") if hf else ""
    eager_path = path.parent / (hf_path.stem + "_experts-eager.json")
    if eager_path.exists():
        eager = json.loads(eager_path.read_text())
        vs_hf += (f"; with its experts loop (`--experts eager`) {eager['ms']:.2f} ms "
                  f"({eager['ms'] / steps['whole layer (fused)']:.2f}x slower than fused)")
    return (f"| `{short_command(r)}` | {r['device'].split(' (')[0]} | one layer, {r['tokens']} tokens: plain "
            f"{steps['whole layer (plain)']:.2f} ms, fused {steps['whole layer (fused)']:.2f} ms (attention "
            f"{steps['attention (plain)']:.2f} -> {steps['attention (fused)']:.2f} ms, experts {steps['experts (plain)']:.2f} -> "
            f"{steps['experts (fused)']:.2f} ms){vs_hf} | {record_link(path)} |")


def bench_row(path, r):
    # Each layout against the baseline it replaced, run interleaved in one process, and the time
    # of each one's prefill collectives (their changed step).
    by = {x["layout"]: x for x in r["layouts"]}
    comm = lambda name: sum(c["ms"] for c in by[name]["prefill_collectives"].values())
    parts = []
    for x in r["ratios"]:
        decode = ", ".join(f"b={b} {x[f'decode_speedup_b{b}']:.2f}x" for b in
                           sorted(int(k.rsplit("b", 1)[1]) for k in x if k.startswith("decode_speedup_b")))
        changed = x.get("changed_collectives", {})
        changed = (f", changed collectives {changed['speedup']:.2f}x ({' + '.join(changed['layout_ops'])} "
                   f"{changed['layout_ms']:.2f} ms against {' + '.join(changed['baseline_ops'])} "
                   f"{changed['baseline_ms']:.2f} ms)") if "speedup" in changed else ""
        parts.append(f"{x['layout']} vs {x['baseline']}: prefill {x['prefill_speedup']:.2f}x "
                     f"({by[x['layout']]['prefill_ms']:.1f} / {by[x['baseline']]['prefill_ms']:.1f} ms, collectives "
                     f"{comm(x['layout']):.2f} / {comm(x['baseline']):.2f} ms){changed}" + (f", decode {decode}" if decode else ""))
    # A layout run without its baseline: its own prefill time and share of the matmul peak.
    paired = {x["layout"] for x in r["ratios"]} | {x["baseline"] for x in r["ratios"]}
    for x in r["layouts"]:
        if x["layout"] not in paired and "prefill_ms" in x:
            peak = (f" ({100 * x['prefill_share_of_matmul_peak']:.0f}% of the matmul peak)"
                    if "prefill_share_of_matmul_peak" in x else "")
            parts.append(f"{x['layout']} prefill {x['prefill_ms']:.2f} ms{peak}")
    # Decode step times, where the record has the memory-traffic floor (CUDA-graph decode and later).
    for x in r["layouts"]:
        steps = [d for d in x.get("decode", []) if "share_of_memory_floor" in d]
        if steps:
            # Records of bc85eee and later time held bursts on the device and keep the host's wall time beside.
            held = all(d.get("step_timing", "").startswith("device") for d in steps)
            digits = 3 if held else 2
            timing = ("; device time, held bursts; wall " + "/".join(f"{d['step_ms_wall']:.3f}" for d in steps) + " ms"
                      if held else "")
            parts.append(f"{x['layout']} decode " + "/".join(f"{d['step_ms']:.{digits}f}" for d in steps) + " ms at b=" +
                         "/".join(str(d["batch"]) for d in steps) + " (" +
                         "/".join(f"{100 * d['share_of_memory_floor']:.0f}" for d in steps) + "% of the memory floor" +
                         timing + ")")
    # Rank 0's prefill time split, where the record has it (fa69c0b and later).
    for x in r["layouts"]:
        split = x.get("prefill_time_split")
        if split:
            parts.append(f"{x['layout']} prefill time: compute {100 * split['compute_share']:.0f}%, communication "
                         f"{100 * split['communication_share']:.0f}%, waiting {100 * split['waiting_share']:.0f}%")
    if "cuda_graphs" in r:
        parts.insert(0, "CUDA graphs " + ("on" if r["cuda_graphs"] else "off"))
    if r.get("cuda_graphs") and r.get("chained_launches") is False:
        parts.insert(1, "chained launches off (LB_CHAINED_LAUNCH=0)")
    what = (f"{r['dtype']}, prefill only" if r.get("model", {}).get("family") == "deepseek_v4" else f"kernels {r['kernels']}")
    return (f"| `{short_command(r)}` | {r['device'].split(' (')[0]} x{r['ranks']} | {what}, at "
            f"{r.get('commit')}; "
            f"{'; '.join(parts)} | {record_link(path)} |")


def incomplete_row(path, r):
    return (f"| `{short_command(r)}` | {(r.get('device') or 'device not recorded').split(' (')[0]} x{r.get('ranks', '?')} | did not complete: "
            f"{r.get('error', 'no error recorded').split('. ')[0]} | {record_link(path)} |")


def rows():
    out = []
    for path in sorted((ROOT / "results").rglob("*.json")):
        # A nightly suite's run folder is its own report (report.html there); its records that the
        # table cites are copied to their kind's folder.
        if "nightly" in path.relative_to(ROOT / "results").parts:
            continue
        r = json.loads(path.read_text())
        if r.get("complete") is False:
            out.append(incomplete_row(path, r))
        elif r.get("subcommand") == "reference":
            out.append(reference_row(path, r))
        elif r.get("subcommand") == "test:GpuReference.Bf16OnGpuMatchesFp32OnCpu":
            out.append(gpu_check_row(path, r))
        elif r.get("subcommand") == "bench-moe":
            out.append(bench_moe_row(path, r))
        elif r.get("subcommand") == "bench-layer":
            out.append(bench_layer_row(path, r))
        elif r.get("subcommand") == "bench":
            out.append(bench_row(path, r))
        elif r.get("subcommand") == "gsm8k":
            out.append(gsm8k_row(path, r))
        elif r.get("subcommand") == "collectives":
            out.append(collectives_row(path, r))
        elif r.get("subcommand") == "check" and path.name.startswith("capture_op_"):
            out.append(capture_row(path, r))
        elif r.get("subcommand") == "check" and r.get("model", {}).get("family") == "deepseek_v4":
            out.append(v4_check_row(path, r))
        elif r.get("subcommand") == "check" and not path.name.startswith("capture_"):
            out.append(check_row(path, r))
    return out


def table():
    head = ["| Run | Device | Measured | Record |", "|---|---|---|---|"]
    return "\n".join(head + rows())


# The peers' rows per model: fused_moe_peers.py names the models shorter than the presets.
PEER_MODEL = {"qwen3-30b-a3b": "qwen3", "deepseek-v3": "deepseek-v3"}
PEER_COLUMNS = [("sglang_triton", "graph_gemm_ms", "SGLang, two GEMMs alone (graph)"),
                ("sglang_triton", "graph_ms", "SGLang, whole step (graph; its align/SiLU/sum as torch ops)"),
                ("sglang_triton_borrowed", "graph_gemm_ms", "SGLang GEMMs, Qwen3's tuned table as stand-in (graph)"),
                ("torch_grouped_mm", "graph_ms", "torch grouped_mm, whole (graph)")]


def peers_tables():
    """Our fused experts (bench-moe) beside the peers that scripts/gpu_run.sh's bench-moe step times in the
    same device call (../shared/peers/fused_moe_peers.py): the peer's time over ours per token count, so
    > 1 means ours is faster."""
    out = []
    for path in sorted((ROOT / "results").rglob("peers_fused_moe_*.json")):
        ours_path = path.parent / path.name.replace("peers_fused_moe_", "bench_moe_")
        if not ours_path.exists():
            continue
        peers, ours = json.loads(path.read_text()), json.loads(ours_path.read_text())
        out.append(f"From {record_link(ours_path)} and {record_link(path)} ({ours['device'].split(' (')[0]}, "
                   f"at {ours.get('commit')}); peer time over ours, > 1: ours is faster.")
        for m in ours["models"]:
            rows = {(r["peer"], r["tokens"]): r for r in peers["rows"]
                    if r.get("model") in (m["model"], PEER_MODEL.get(m["model"])) and not r.get("error")}
            mine = [x for x in m["rows"] if any(t == x["tokens"] for _, t in rows)]
            if not mine:
                continue
            out.append("")
            out.append(f"| {m['model']} experts, tokens | " + " | ".join(str(x["tokens"]) for x in mine) + " |")
            out.append("|---|" + "---|" * len(mine))
            out.append("| ours, ms | " + " | ".join(f"{x['fused_ms']:.3f}" for x in mine) + " |")
            # Each side draws its own random routing: where few experts are used, time follows their count.
            used = [rows.get(("sglang_triton", x["tokens"])) for x in mine]
            out.append("| experts used, ours / SGLang's | " +
                       " | ".join(f"{x['experts_used']}/{u['experts_used']}" if u else "" for x, u in zip(mine, used)) + " |")
            for peer, key, label in PEER_COLUMNS:
                cells = []
                for x in mine:
                    r = rows.get((peer, x["tokens"]))
                    cells.append(f"{r[key] / x['fused_ms']:.2f}" if r and r.get(key) else "")
                if any(cells):
                    out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out).strip() or "No bench-moe record has its peers beside it yet."


def main():
    text, peers = table(), peers_tables()
    if "--write" in sys.argv:
        s = TABLE_DOC.read_text()
        for (begin, end), block in (((BEGIN, END), text), ((PEERS_BEGIN, PEERS_END), peers)):
            a, b = s.index(begin) + len(begin), s.index(end)
            s = s[:a] + "\n" + block + "\n" + s[b:]
        TABLE_DOC.write_text(s)
    else:
        print(text + "\n\n" + peers)


if __name__ == "__main__":
    main()
