#!/usr/bin/env bash
# One call on the GPU machine: configure, build, run the GPU tests and benchmarks, and leave
# JSON records in $OUT (default results/latest). Steps: fixtures build test reference (all by default).
#   scripts/gpu_run.sh [step ...]
# LB_COMMIT names the commit in the records (the GPU machine gets the tree without .git).
set -uo pipefail
cd "$(dirname "$0")/.."
# NVLink multicast stays off on shared multi-GPU hosts.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-results/latest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export BUILD_DIR=${BUILD_DIR:-build-gpu}
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(fixtures build test reference)
status=0

for step in "${steps[@]}"; do
  echo "=== $step"
  case "$step" in
    fixtures)
      python3 tests/fixtures/make_fixtures.py --out tests/fixtures || status=1
      tar czf "$OUT/fixtures.tgz" tests/fixtures ;;
    build)
      scripts/build.sh > "$OUT/build.log" 2>&1 || { status=1; tail -50 "$OUT/build.log"; } ;;
    test)
      (cd "$BUILD_DIR" && LB_RESULTS_DIR="$OUT" ctest --output-on-failure -j 8) > "$OUT/ctest.log" 2>&1 || status=1
      tail -40 "$OUT/ctest.log" ;;
    reference)
      bin=$BUILD_DIR/harness/layoutbench
      $bin reference --model qwen3-30b-a3b --layers 48 --tokens 4096 --dtype bf16 --device cuda --repeats 3 \
        --json "$OUT/reference_qwen3-30b-a3b_48L_4096tok_bf16.json" || status=1
      $bin reference --model deepseek-v3 --layers 4 --tokens 4096 --dtype bf16 --device cuda --repeats 3 \
        --json "$OUT/reference_deepseek-v3_4L_4096tok_bf16.json" || status=1 ;;
    *) echo "unknown step $step"; status=1 ;;
  esac
done
exit $status
