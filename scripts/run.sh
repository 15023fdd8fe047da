#!/usr/bin/env bash
# README command 1: install what is missing, build, and run the main job on its default:
# the reference on a tiny Qwen3-MoE on CPU, or Qwen3-30B-A3B (4 layers, bf16) when a GPU is there.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
if nvidia-smi -L >/dev/null 2>&1 && python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  exec build/harness/layoutbench reference --model qwen3-30b-a3b --layers 4 --tokens 4096 --dtype bf16 --device cuda "$@"
fi
exec build/harness/layoutbench reference --model tiny-qwen3-moe --lengths 37,5,64 "$@"
