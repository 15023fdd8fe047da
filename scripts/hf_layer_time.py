#!/usr/bin/env python3
"""Times one HF transformers Qwen3-MoE decoder layer at the real Qwen3-30B-A3B shape (bf16, random
weights, one sequence, SDPA attention), for bench-layer's side-by-side comparison in the same run:
    scripts/hf_layer_time.py --tokens 4096 [--experts eager] --json out.json
--experts picks transformers' experts implementation (eager: a loop over the experts that have
tokens; default: whatever transformers picks for a bare layer).
"""
import argparse
import datetime
import json
import os
import sys
import time

import torch
import transformers
from transformers import Qwen3MoeConfig
from transformers.models.qwen3_moe import modeling_qwen3_moe as m


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--experts", default="default", help="transformers' experts implementation, or default")
    p.add_argument("--json")
    a = p.parse_args()
    cfg = Qwen3MoeConfig(hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768, num_experts=128,
                         num_experts_per_tok=8, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                         norm_topk_prob=True, num_hidden_layers=1, vocab_size=151936)
    cfg._attn_implementation = "sdpa"
    if a.experts != "default":
        cfg._experts_implementation = a.experts
    torch.manual_seed(0)
    layer = m.Qwen3MoeDecoderLayer(cfg, 0).to("cuda", torch.bfloat16).eval()
    rotary = m.Qwen3MoeRotaryEmbedding(cfg).to("cuda")
    x = torch.randn(1, a.tokens, 2048, device="cuda", dtype=torch.bfloat16)
    pos = torch.arange(a.tokens, device="cuda")[None]
    cos, sin = rotary(x, pos)
    times = []
    with torch.no_grad():
        for i in range(a.repeats + 1):
            torch.cuda.synchronize()
            t = time.perf_counter()
            layer(x, attention_mask=None, position_ids=pos, position_embeddings=(cos, sin))
            torch.cuda.synchronize()
            if i:
                times.append((time.perf_counter() - t) * 1000)
    ms = sorted(times)[len(times) // 2]
    experts = getattr(cfg, "_experts_implementation", None)
    print(f"transformers {transformers.__version__} Qwen3MoeDecoderLayer, {a.tokens} tokens, experts "
          f"{experts}: {ms:.3f} ms (median)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"subcommand": "hf-layer", "command": " ".join([sys.argv[0]] + sys.argv[1:]),
                       "commit": os.environ.get("LB_COMMIT"),
                       "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "transformers": transformers.__version__, "torch": torch.__version__, "tokens": a.tokens,
                       "repeats": a.repeats, "experts_implementation": experts, "ms": ms, "ms_all": times, "device": torch.cuda.get_device_name()},
                      f, indent=2)


if __name__ == "__main__":
    main()
