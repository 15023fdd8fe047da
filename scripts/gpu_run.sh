#!/usr/bin/env bash
# One call on the GPU machine: configure, build, run the GPU tests and benchmarks, and leave
# JSON records in $OUT (default results/latest). Steps: fixtures fixtures-v4 tokenizer build test reference
# collectives mpi check check-v3a check-v4 check-decode check-rows hang capture gsm8k gsm8k-48 decode-1gpu decode-chained-ab profile-decode profile-decode-detail ncu-moe profile-prefill profile-prefill-kernels trace-prefill trace-decode decode-2gpu nightly kernels bench-moe bench-layer rank-shards bench bench-v3a bench-v4 (default: build test, then reference on one GPU, collectives mpi check on several).
#   scripts/gpu_run.sh [step ...]
# LB_COMMIT names the commit in the records (the GPU machine gets the tree without .git);
# LB_BENCH_KERNELS limits the bench step to "fused" or "reference" (default both).
set -uo pipefail
cd "$(dirname "$0")/.."
# NVLink multicast stays off on shared multi-GPU hosts.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-results/latest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export BUILD_DIR=${BUILD_DIR:-build-gpu}
# ICU carried from the CI machine (scripts/carry_icu.sh) where libicu-dev is missing: its libraries
# must be found at run time too, libicudata included (a dependency of libicuuc).
if [ ! -f /usr/include/unicode/regex.h ] && [ ! -d .carry/icu ] && [ -f .carry/icu.tar.xz ]; then
  tar xJf .carry/icu.tar.xz -C .carry
fi
if [ ! -f /usr/include/unicode/regex.h ] && [ -d .carry/icu/lib ]; then
  export LD_LIBRARY_PATH=$PWD/.carry/icu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}  # mpirun -x passes it on
# The device tool hands an empty $OUT and brings back at most 8 files from it
# (/work/.library/device/README.md): past that, every record goes into one tarball, so none is
# dropped (a call at 877a744 lost its peers record that way). A folder that held files before is
# left as it is.
out_was_empty=0; [ -z "$(ls -A "$OUT")" ] && out_was_empty=1
pack_if_many() {
  local files
  files=$(find "$OUT" -type f | wc -l)
  if [ "$out_was_empty" = 1 ] && [ "$files" -gt 8 ]; then
    tar czf /tmp/gpu_run_records.tgz -C "$OUT" . && rm -rf "${OUT:?}"/* && mv /tmp/gpu_run_records.tgz "$OUT/records.tgz"
    echo "$files files in $OUT: packed into records.tgz"
  fi
}
trap pack_if_many EXIT
# On this machine a GPU test that skips is a failure: the build fell back to a CPU LibTorch, or the
# test lost its GPU. $1: a ctest or gtest log.
fail_on_gpu_skips() {
  local skipped
  skipped=$(grep -E "Gpu[A-Za-z0-9_]*\.[A-Za-z0-9_/]+.*\*\*\*Skipped|^\[ +SKIPPED +\] Gpu" "$1" | sort -u)
  if [ -n "$skipped" ]; then
    echo "GPU tests skipped on the GPU machine:"
    echo "$skipped"
    status=1
  fi
}
steps=("$@")
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
if [ ${#steps[@]} -eq 0 ]; then
  steps=(build test)
  if [ "$gpus" -ge 2 ]; then steps+=(collectives mpi check); else steps+=(reference); fi
fi
bin=$BUILD_DIR/harness/layoutbench
status=0

for step in "${steps[@]}"; do
  echo "=== $step $(date +%T)"
  case "$step" in
    fixtures)
      python3 tests/fixtures/make_fixtures.py --out tests/fixtures || status=1
      tar czf "$OUT/fixtures.tgz" tests/fixtures ;;
    fixtures-v4)
      python3 tests/fixtures/make_v4_fixtures.py --out tests/fixtures || status=1
      tar czf "$OUT/fixtures_v4.tgz" tests/fixtures/deepseek_v4_tiny ;;
    tokenizer)
      # HF tokenizers' ids for the second tokenizer fixture; GSM8K from LB_SHARED_DIR, since ../shared
      # does not travel to the GPU machine.
      python3 tests/fixtures/make_tokenizer_fixtures.py gsm8k --gsm8k-dir "${LB_SHARED_DIR:-../shared}/datasets/gsm8k" \
        || status=1
      tar czf "$OUT/tokenizer_fixtures.tgz" tests/fixtures/tokenizers ;;
    build)
      scripts/build.sh > "$OUT/build.log" 2>&1 || { status=1; tail -50 "$OUT/build.log"; } ;;
    test)
      (cd "$BUILD_DIR" && LB_RESULTS_DIR="$OUT" ctest --output-on-failure -j 8) > "$OUT/ctest.log" 2>&1 || status=1
      tail -40 "$OUT/ctest.log"
      fail_on_gpu_skips "$OUT/ctest.log" ;;
    reference)
      $bin reference --model qwen3-30b-a3b --layers 48 --tokens 4096 --dtype bf16 --device cuda --repeats 3 \
        --json "$OUT/reference_qwen3-30b-a3b_48L_4096tok_bf16.json" || status=1
      $bin reference --model deepseek-v3 --layers 4 --tokens 4096 --dtype bf16 --device cuda --repeats 3 \
        --json "$OUT/reference_deepseek-v3_4L_4096tok_bf16.json" || status=1 ;;
    collectives)
      $bin collectives --gpus "$gpus" --sizes 1M,4M,16M,64M,256M --splits balanced,skewed \
        --json "$OUT/collectives_${gpus}gpu.json" || status=1 ;;
    mpi)
      # One process per GPU, the NCCL id over MPI; the same benchmark as the threaded one.
      mpirun --allow-run-as-root --oversubscribe -np "$gpus" \
        -x NCCL_NVLS_ENABLE -x TORCH_SYMM_MEM_DISABLE_MULTICAST -x NVSHMEM_DISABLE_NVLS -x LB_COMMIT -x LD_LIBRARY_PATH \
        $bin collectives --gpus "$gpus" --sizes 1M,4M,16M,64M,256M --splits balanced,skewed \
        --json "$OUT/collectives_${gpus}gpu_mpirun.json" || status=1 ;;
    check)
      # Real shapes, random weights, 4 layers, 8192 tokens in several sequences, bf16.
      timeout "${LB_CHECK_TIMEOUT:-1200}" $bin check --model qwen3-30b-a3b --layout all --gpus "$gpus" --layers 4 --lengths 3001,2047,1500,1644 \
        --dtype bf16 --json "$OUT/check_qwen3-30b-a3b_${gpus}gpu_bf16.json" || status=1
      timeout "${LB_CHECK_TIMEOUT:-1200}" $bin check --model deepseek-v3 --layout dp-attn-rsv,dp-attn-ar,dense-tp-attn,dense-tp1,dense-tp-full \
        --gpus "$gpus" --layers 4 --lengths 3001,2047,1500,1644 --dtype bf16 \
        --json "$OUT/check_deepseek-v3_${gpus}gpu_bf16.json" || status=1 ;;
    check-rows)
      # Row-level verdicts at real shape (bf16, 8192 tokens): every layout, both models, and the cost of
      # the row verdicts (the same Qwen3 check with them off, timed in the same call).
      for rv in on off; do
        s0=$(date +%s%N)
        timeout "${LB_CHECK_TIMEOUT:-1200}" $bin check --model qwen3-30b-a3b --layout all --gpus "$gpus" --layers 4 \
          --lengths 3001,2047,1500,1644 --dtype bf16 --row-verdicts $rv \
          --json "$OUT/check_rows_${rv}_qwen3-30b-a3b_${gpus}gpu_bf16.json" > "$OUT/check_rows_${rv}_qwen3.log" 2>&1 || status=1
        echo "qwen3 check --row-verdicts $rv: $(( ($(date +%s%N) - s0) / 1000000 )) ms" | tee -a "$OUT/check_rows_wall.txt"
      done
      timeout "${LB_CHECK_TIMEOUT:-1200}" $bin check --model deepseek-v3 --layout all --gpus "$gpus" --layers 4 \
        --lengths 3001,2047,1500,1644 --dtype bf16 --json "$OUT/check_rows_on_deepseek-v3_${gpus}gpu_bf16.json" \
        > "$OUT/check_rows_on_deepseek-v3.log" 2>&1 || status=1
      grep -h "worst row\|all layouts\|DIVERG" "$OUT"/check_rows_on_*.log | sort | uniq -c ;;
    hang)
      # A hung NCCL rank ends the run within the timeout plus a grace, with the record written.
      s0=$(date +%s)
      timeout 300 $bin check --model tiny-qwen3-moe --layout tp --backend nccl --gpus "$gpus" --layers 2 --timeout 10 \
        --inject-fault hang:1:any:5 --json "$OUT/hang_nccl_${gpus}gpu.json" > "$OUT/hang_nccl.log" 2>&1
      echo "hung NCCL rank: rc=$? after $(( $(date +%s) - s0 )) s" | tee -a "$OUT/hang_nccl.log"
      tail -3 "$OUT/hang_nccl.log" ;;
    check-v3a)
      # DeepSeek-V3 (MLA) under layout A against its TP baseline, real shape, 4 layers.
      timeout "${LB_CHECK_TIMEOUT:-1200}" $bin check --model deepseek-v3 --layout tp,cp-fused-moe --gpus "$gpus" --layers 4 \
        --lengths 3001,2047,1500,1644 --dtype bf16 --json "$OUT/check_deepseek-v3_layoutA_${gpus}gpu_bf16.json" || status=1 ;;
    bench-v3a)
      timeout "${LB_CHECK_TIMEOUT:-1200}" $bin bench --model deepseek-v3 --layout tp,cp-fused-moe --gpus "$gpus" --layers 4 \
        --lengths 2048,2048,2048,2048 --decode-batch 1,8,64 --decode-context 1024 --kernels fused \
        --json "$OUT/bench_deepseek-v3_layoutA_4L_${gpus}gpu_bf16_fused.json" || status=1 ;;
    check-v4)
      # DeepSeek-V4-Flash real shape (random weights), 4 layers (sliding, sliding, CSA, HCA; hash
      # routing on the first 3), tp and layout A against the reference, f32 (every GPU holds all
      # 110 GB of weights). 4096 tokens: the indexer picks 512 of up to 1024 compressed entries.
      timeout "${LB_CHECK_TIMEOUT:-1200}" $bin check --model deepseek-v4-flash --layout tp,cp-fused-moe --gpus "$gpus" \
        --layers 4 --tokens 4096 --json "$OUT/check_deepseek-v4-flash_4L_${gpus}gpu_f32.json" || status=1 ;;
    bench-v4)
      timeout "${LB_CHECK_TIMEOUT:-1200}" $bin bench --model deepseek-v4-flash --layout tp,cp-fused-moe --gpus "$gpus" \
        --layers 4 --tokens 4096 --repeats 5 --json "$OUT/bench_deepseek-v4-flash_4L_${gpus}gpu_f32.json" || status=1 ;;
    capture)
      # The cost of op-level capture with per-layer checking: the same layouts with and without it.
      for mode in none op; do
        timeout "${LB_CHECK_TIMEOUT:-1200}" $bin check --model qwen3-30b-a3b --layout dp-attn-rsv,cp-fused-moe \
          --gpus "$gpus" --layers 4 --lengths 3001,2047,1500,1644 --dtype bf16 --capture $mode \
          --json "$OUT/capture_${mode}_qwen3-30b-a3b_${gpus}gpu_bf16.json" || status=1
      done ;;
    kernels)
      # The GPU kernel tests alone (fused MoE and grouped GEMM against the oracle, bf16 reference).
      (cd "$BUILD_DIR" && LB_RESULTS_DIR="$OUT" timeout "${LB_KERNELS_TIMEOUT:-600}" ./tests/lb_tests --gtest_filter="${LB_KERNEL_TESTS:-Gpu*:FusedMoe*:FusedNorm*:KvCache*}") \
        > "$OUT/kernels.log" 2>&1 || status=1
      grep -E "^\[ +(OK|FAILED|SKIPPED) +\]|Failure|rel" "$OUT/kernels.log" | head -40
      fail_on_gpu_skips "$OUT/kernels.log" ;;
    bench-moe)
      # Our fused experts, then the peers (SGLang's Triton kernel, torch grouped_mm) in the same call:
      # a speed claim is a ratio to them measured side by side (scripts/results_table.py pairs the files).
      gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' _)
      moe_tokens=1,2,4,8,16,32,64,128,256,512,1024,2048,4096,8192,16384
      $bin bench-moe --tokens $moe_tokens --json "$OUT/bench_moe_$gpu_name.json" || status=1
      PYTHONUNBUFFERED=1 timeout 400 python3 "${LB_SHARED_DIR:-../shared}/peers/fused_moe_peers.py" --max-seconds 300 --reps 10 --tokens $moe_tokens \
        --out "$OUT/peers_fused_moe_$gpu_name.json" > "$OUT/peers_fused_moe.log" 2>&1 || status=1
      tail -30 "$OUT/peers_fused_moe.log"
      [ -n "${LB_BENCH_MOE_ONLY:-}" ] && continue
      for k in reference fused; do
        $bin reference --model qwen3-30b-a3b --layers 48 --tokens 4096 --dtype bf16 --device cuda --repeats 3 \
          --kernels $k --json "$OUT/reference_qwen3-30b-a3b_48L_4096tok_bf16_kernels_$k.json" || status=1
      done ;;
    bench-layer)
      # With the transformers layer timed in the same call, for the ratio.
      for t in 4096 64; do
        $bin bench-layer --tokens $t --json "$OUT/bench_layer_qwen3-30b-a3b_${t}tok_bf16.json" || status=1
        python3 scripts/hf_layer_time.py --tokens $t --json "$OUT/hf_layer_qwen3-30b-a3b_${t}tok_bf16.json" || status=1
        # And with transformers' loop over the experts (anchors.md's 35.9 ms names no implementation).
        python3 scripts/hf_layer_time.py --tokens $t --experts eager \
          --json "$OUT/hf_layer_qwen3-30b-a3b_${t}tok_bf16_experts-eager.json" || status=1
      done ;;
    rank-shards)
      # What one rank of an N-GPU layout computes, apart from its collectives, on one GPU (N = the GPUs
      # here, at least 2): the whole layer and rank 0's shard under tp=N and tp=N,dp=N at 4 x 2048
      # tokens (results/prefill/rank_shards_6ecc4d5/). The tp=N shard's experts step is also a
      # DP-attention rank's MoE (the same intermediate shard on the same gathered tokens). Beside a
      # multi-GPU bench in the same call, it splits a rank's prefill into its kernels' time and the
      # rest (collectives, waiting).
      n=$(( gpus > 2 ? gpus : 2 ))
      lens=2048,2048,2048,2048
      $bin bench-layer --lengths $lens --repeats 7 --json "$OUT/bench_layer_qwen3-30b-a3b_4x2048_whole.json" || status=1
      $bin bench-layer --lengths $lens --parallel tp=$n --repeats 7 \
        --json "$OUT/bench_layer_qwen3-30b-a3b_4x2048_tp${n}_rank0.json" || status=1
      $bin bench-layer --lengths $lens --parallel tp=$n,dp=$n --repeats 7 \
        --json "$OUT/bench_layer_qwen3-30b-a3b_4x2048_tp${n}dp${n}_rank0.json" || status=1 ;;
    bench)
      # Each layout beside its baseline, interleaved: prefill 8192 tokens, decode at 1-64 sequences.
      for k in ${LB_BENCH_KERNELS:-fused reference}; do
        $bin bench --model qwen3-30b-a3b --layout all --gpus "$gpus" --layers 4 --lengths 2048,2048,2048,2048 \
          --decode-batch 1,8,64 --decode-context 1024 --kernels $k \
          --json "$OUT/bench_qwen3-30b-a3b_4L_${gpus}gpu_bf16_$k.json" || status=1
      done ;;
    decode-1gpu)
      # Decode steps on one GPU at real shape (TP on one rank is the reference's math), graphs on.
      for m in qwen3-30b-a3b deepseek-v3; do
        timeout "${LB_CHECK_TIMEOUT:-1200}" $bin bench --model $m --layout tp --gpus 1 --layers 4 --lengths 2048,2048 \
          --decode-batch 1,8,64 --decode-context 1024 --kernels fused --repeats 3 \
          --json "$OUT/bench_decode_${m}_4L_1gpu_bf16_fused.json" || status=1
      done ;;
    decode-chained-ab)
      # What chained launches save: the one-GPU Qwen3 decode bench with them off, on, off, on (same
      # process image, one call), each run its own record.
      for run in 1 2; do
        for chained in 0 1; do
          LB_CHAINED_LAUNCH=$chained timeout 600 $bin bench --model qwen3-30b-a3b --layout tp --gpus 1 --layers 4 \
            --lengths 2048,2048 --decode-batch 1,8,64 --decode-context 1024 --kernels fused --repeats 3 \
            --json "$OUT/bench_decode_qwen3-30b-a3b_4L_1gpu_bf16_fused_chained$chained-run$run.json" | grep "decode b=" \
            || status=1
        done
      done ;;
    nightly)
      # The nightly suite on this machine's GPUs (suites/nightly-${gpus}gpu.json), its run folder, report
      # and history packed in one file (the machine returns few files).
      timeout "${LB_NIGHTLY_TIMEOUT:-1500}" $bin suite "suites/nightly-${gpus}gpu.json" --out "$OUT/nightly" \
        --shared "${LB_SHARED_DIR:-../shared}" || status=1
      tar czf "$OUT/nightly_${gpus}gpu.tgz" -C "$OUT" nightly && rm -rf "$OUT/nightly" ;;
    profile-decode)
      # Each kernel of one graphed decode step on one GPU, timed by Nsight Compute (no clock or cache
      # control, so the times are those of back-to-back replay); LB_PROFILE_BATCHES, default "1 64".
      ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
      for m in ${LB_PROFILE_MODELS:-qwen3-30b-a3b}; do
        for b in ${LB_PROFILE_BATCHES:-1 64}; do
          LB_PROFILE_DECODE_BATCH=$b timeout 600 "$ncu_bin" --profile-from-start off --clock-control none --cache-control none \
            --metrics gpu__time_duration.sum --csv $bin bench --model $m --layout tp --gpus 1 --layers 4 --lengths 256 \
            --decode-batch $b --decode-context 1024 --decode-steps 1 --kernels fused --repeats 1 \
            > "/tmp/ncu_decode_${m}_b$b.csv" 2> "/tmp/ncu_decode_${m}_b$b.err" || { status=1; tail -5 "/tmp/ncu_decode_${m}_b$b.err"; }
          python3 scripts/ncu_summary.py "/tmp/ncu_decode_${m}_b$b.csv" > "$OUT/ncu_decode_${m}_b$b.txt"
          head -30 "$OUT/ncu_decode_${m}_b$b.txt"
        done
      done ;;
    ncu-moe)
      # Our fused-MoE launches (sort, gate/up, down, combine) and SGLang's Triton kernel (the peers'
      # script, its tuned table, no graph) at the same Qwen3 token counts, each launch alone under
      # Nsight Compute: which kernel a bench-moe gap is in. LB_NCU_TOKENS, default "512 1024".
      # LB_NCU_RAW=1: the memory sections instead (SpeedOfLight, MemoryWorkloadAnalysis and its
      # tables, Occupancy, LaunchStats), each side's raw page (every metric of every launch) as CSV:
      # how the two sides' DRAM and L2 traffic compare (results/kernels/combine_occupancy_ab_869f534/).
      ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
      ncu_metrics=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size
      for t in ${LB_NCU_TOKENS:-512 1024}; do
        for side in ours sglang; do
          if [ -n "${LB_NCU_RAW:-}" ]; then
            collect=(--section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables
                     --section Occupancy --section LaunchStats -f -o "/tmp/ncu_moe_${side}_$t")
          else
            collect=(--metrics "$ncu_metrics" --csv)
          fi
          if [ $side = ours ]; then
            timeout 120 "$ncu_bin" --kernel-name regex:"wgmma_kernel|stream_kernel|sort_pairs_kernel|combine_kernel" \
              --launch-count 8 --cache-control none --clock-control none "${collect[@]}" \
              $bin bench-moe --model qwen3-30b-a3b --tokens $t --repeats 1 --min-batch-ms 0 > "/tmp/ncu_moe_ours_$t.csv" \
              2> "/tmp/ncu_moe_ours_$t.err" || { status=1; tail -5 "/tmp/ncu_moe_ours_$t.err"; }
          else
            timeout 150 "$ncu_bin" --target-processes all --kernel-name regex:"fused_moe_kernel" --launch-count 6 \
              --cache-control none --clock-control none "${collect[@]}" \
              python3 "${LB_SHARED_DIR:-../shared}/peers/fused_moe_peers.py" --models qwen3 --tokens $t --peers a \
              --no-borrowed --no-graph --no-hf-check --reps 1 --min-batch-ms 0 --peak-reps 1 \
              > "/tmp/ncu_moe_sglang_$t.csv" 2> "/tmp/ncu_moe_sglang_$t.err" || { status=1; tail -5 "/tmp/ncu_moe_sglang_$t.err"; }
          fi
          if [ -n "${LB_NCU_RAW:-}" ]; then
            "$ncu_bin" --import "/tmp/ncu_moe_${side}_$t.ncu-rep" --page raw --csv \
              > "$OUT/ncu_moe_qwen3_${t}tok_${side}_raw.csv" || status=1
          else
            python3 scripts/ncu_summary.py "/tmp/ncu_moe_${side}_$t.csv" --json "$OUT/ncu_moe_qwen3_${t}tok_$side.json" || status=1
          fi
        done
      done ;;
    profile-decode-detail)
      # Why the batch-1 step's slowest kernels are slow alone (the step tracks their sum, docs/decode.md):
      # Nsight Compute's full sections (memory throughput, occupancy, warp stall reasons) for the kernels
      # LB_PROFILE_KERNELS (a regex) names, one step's launches of each.
      ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
      LB_PROFILE_DECODE_BATCH=1 timeout 600 "$ncu_bin" --profile-from-start off --set full \
        -k "regex:${LB_PROFILE_KERNELS:-pair_rows|gemv|router_topk|rmsnorm|gqa_chunk}" \
        $bin bench --model qwen3-30b-a3b --layout tp --gpus 1 --layers 4 --lengths 256 --decode-batch 1 \
        --decode-context 1024 --decode-steps 1 --kernels fused --repeats 1 > "$OUT/ncu_decode_detail_b1.txt" 2>&1 \
        || { status=1; tail -5 "$OUT/ncu_decode_detail_b1.txt"; }
      grep -E "^  [a-z_]+.*\(|Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per" \
        "$OUT/ncu_decode_detail_b1.txt" | head -60 ;;
    profile-prefill)
      # Where each layout's prefill time goes on each GPU (compute, NCCL, both at once, idle), from one
      # prefill under Nsight Systems (bench brackets it: LB_PROFILE_PREFILL); LB_PROFILE_LAYOUTS picks them.
      nsys_bin=$(command -v nsys || ls /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/bin/nsys 2>/dev/null | head -1)
      if [ -z "$nsys_bin" ]; then
        # The lent GPU machines have none (seen 2026-12-01); bench's prefill_time_split and, on one GPU,
        # profile-prefill-kernels say where prefill time goes instead.
        echo "profile-prefill: no nsys on this machine (try profile-prefill-kernels)"; status=1; continue
      fi
      mkdir -p /tmp/nsys_prefill
      for l in ${LB_PROFILE_LAYOUTS:-tp cp-fused-moe dp-attn-rsv dp-attn-ar}; do
        LB_PROFILE_PREFILL=$l timeout 600 "$nsys_bin" profile --capture-range=cudaProfilerApi --capture-range-end=stop \
          -t cuda --force-overwrite true -o "/tmp/prefill_$l" $bin bench --model qwen3-30b-a3b --layout "$l" \
          --gpus "$gpus" --layers 4 --lengths 2048,2048,2048,2048 --kernels fused --repeats 1 > "/tmp/nsys_$l.log" 2>&1 \
          || { status=1; tail -5 "/tmp/nsys_$l.log"; continue; }
        "$nsys_bin" stats --report cuda_gpu_trace --format csv --force-export true --output "/tmp/prefill_$l" \
          "/tmp/prefill_$l.nsys-rep" > /dev/null 2>&1 || status=1
        python3 scripts/nsys_prefill_summary.py "/tmp/prefill_${l}_cuda_gpu_trace.csv" \
          --json "/tmp/nsys_prefill/${l}_${gpus}gpu.json" > "/tmp/nsys_prefill/${l}_${gpus}gpu.txt" || status=1
        head -20 "/tmp/nsys_prefill/${l}_${gpus}gpu.txt"
      done
      tar czf "$OUT/nsys_prefill_${gpus}gpu.tgz" -C /tmp nsys_prefill ;;  # one file: the machine returns few
    trace-prefill)
      # Where a prefill's time goes on each GPU, from LibTorch's profiler (no nsys on the lent machines):
      # bench traces one more prefill of each layout (LB_TRACE_LAYOUTS: tp on one GPU, all on several;
      # LB_TRACE_LENGTHS), and scripts/nsys_prefill_summary.py splits each GPU's span into compute, NCCL
      # and idle, lists the idle gaps and how much of them the host spent in a copy to the host or a wait.
      trace_dir=/tmp/trace_prefill_${gpus}gpu
      rm -rf "$trace_dir"; mkdir -p "$trace_dir"
      trace_layouts=${LB_TRACE_LAYOUTS:-$([ "$gpus" -ge 2 ] && echo all || echo tp)}
      timeout 600 $bin bench --model qwen3-30b-a3b --layout "$trace_layouts" --gpus "$gpus" --layers 4 \
        --lengths "${LB_TRACE_LENGTHS:-2048,2048,2048,2048}" --decode-batch none --kernels fused --repeats 3 \
        --trace-prefill "$trace_dir" --json "$trace_dir/bench.json" > "$trace_dir/bench.log" 2>&1 \
        || { status=1; tail -5 "$trace_dir/bench.log"; }
      for f in "$trace_dir"/prefill_*.json; do
        [ -f "$f" ] || continue
        python3 scripts/nsys_prefill_summary.py "$f" --json "${f%.json}.summary.json" > "${f%.json}.summary.txt" || status=1
        echo "--- $(basename "$f")"; head -30 "${f%.json}.summary.txt"
      done
      cp "$trace_dir"/*.summary.* "$trace_dir/bench.json" "$OUT/" 2>/dev/null
      tar czf "$OUT/trace_prefill_${gpus}gpu.tgz" -C /tmp "$(basename "$trace_dir")" ;;
    trace-decode)
      # What each kernel adds to a graphed decode step on one GPU: bench traces one more burst of steps
      # per batch under LibTorch's profiler (chained launches overlap, so a kernel's duration is not its
      # cost), and scripts/decode_trace_summary.py walks each step's kernels in start order.
      trace_dir=/tmp/trace_decode
      rm -rf "$trace_dir"; mkdir -p "$trace_dir"
      for m in ${LB_TRACE_MODELS:-qwen3-30b-a3b deepseek-v3}; do
        timeout 300 $bin bench --model "$m" --layout tp --gpus 1 --layers 4 --lengths 2048,2048 \
          --decode-batch "${LB_TRACE_BATCHES:-1,64}" --decode-context 1024 --kernels fused --repeats 3 \
          --trace-decode "$trace_dir/$m" --json "$trace_dir/bench_$m.json" > "$trace_dir/bench_$m.log" 2>&1 \
          || { status=1; tail -5 "$trace_dir/bench_$m.log"; }
        for f in "$trace_dir/$m"/decode_*.json; do
          [ -f "$f" ] || continue
          summary="$trace_dir/trace_${m}_$(basename "${f%.json}")"
          python3 scripts/decode_trace_summary.py "$f" --json "$summary.summary.json" > "$summary.summary.txt" || status=1
          echo "--- $m $(basename "$f")"; head -22 "$summary.summary.txt"
        done
      done
      tar czf "$OUT/trace_decode_1gpu.tgz" -C /tmp "$(basename "$trace_dir")" ;;
    profile-prefill-kernels)
      # The kernels of one 8192-token prefill on one GPU (tp on one rank: the reference's math), each
      # timed alone by Nsight Compute and summed by name: what the compute part of a prefill is made
      # of. One GPU only: Nsight Compute runs kernels one at a time, so NCCL peers would wait forever.
      ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
      LB_PROFILE_PREFILL=tp timeout 600 "$ncu_bin" --profile-from-start off --clock-control none --cache-control none \
        --metrics gpu__time_duration.sum --csv $bin bench --model qwen3-30b-a3b --layout tp --gpus 1 --layers 4 \
        --lengths 2048,2048,2048,2048 --decode-batch none --kernels fused --repeats 1 > /tmp/ncu_prefill.csv \
        2> /tmp/ncu_prefill.err \
        || { status=1; tail -5 /tmp/ncu_prefill.err; }
      python3 scripts/ncu_summary.py /tmp/ncu_prefill.csv > "$OUT/ncu_prefill_qwen3-30b-a3b_1gpu_8192tok.txt"
      head -30 "$OUT/ncu_prefill_qwen3-30b-a3b_1gpu_8192tok.txt" ;;
    decode-2gpu)
      # Every layout's decode beside its baseline on 2 GPUs, graphs on; run twice for the reproducibility of the ratios.
      for run in 1 2; do
        timeout "${LB_CHECK_TIMEOUT:-1200}" $bin bench --model qwen3-30b-a3b --layout all --gpus "$gpus" --layers 4 \
          --lengths 2048,2048,2048,2048 --decode-batch 1,8,64 --decode-context 1024 --kernels fused --repeats 15 \
          --json "$OUT/bench_decode_qwen3-30b-a3b_4L_${gpus}gpu_bf16_fused_run$run.json" || status=1
      done
      # Issue #24's prefill lines from the two runs: each layout's share of the matmul peak per rank
      # (>= 0.40 wanted), and how far each ratio moved between the runs (diff at 3%: a ratio listed
      # as a regression or an improvement moved more).
      runs=("$OUT/bench_decode_qwen3-30b-a3b_4L_${gpus}gpu_bf16_fused_run"{1,2}.json)
      if [ -f "${runs[0]}" ] && [ -f "${runs[1]}" ]; then
        python3 -c 'import json,sys
for f in sys.argv[1:]:
    d = json.load(open(f))
    print(f.split("/")[-1], " ".join("%s=%.3f" % (l["layout"], l["prefill_share_of_matmul_peak"]) for l in d["layouts"]))' \
          "${runs[@]}" | tee "$OUT/prefill_peak_shares.txt"
        $bin diff "${runs[@]}" --max-slowdown 0.03 > "$OUT/diff_decode_runs.txt" 2>&1
        grep -vE "^  command:" "$OUT/diff_decode_runs.txt" | head -30
      fi
      timeout "${LB_CHECK_TIMEOUT:-1200}" $bin bench --model deepseek-v3 --layout tp,cp-fused-moe --gpus "$gpus" --layers 4 \
        --lengths 2048,2048,2048,2048 --decode-batch 1,8,64 --decode-context 1024 --kernels fused --repeats 15 \
        --json "$OUT/bench_decode_deepseek-v3_layoutA_4L_${gpus}gpu_bf16_fused.json" || status=1 ;;
    check-decode)
      # The decode oracle at real shape: prefill, then 16 decode steps, every layer of every step.
      timeout "${LB_CHECK_TIMEOUT:-1200}" $bin check --model qwen3-30b-a3b --layout all --gpus "$gpus" --layers 4 \
        --lengths 3001,2047,1500,1644 --dtype bf16 --kernels fused --decode-steps 16 \
        --json "$OUT/check_decode_qwen3-30b-a3b_${gpus}gpu_bf16.json" || status=1
      timeout "${LB_CHECK_TIMEOUT:-1200}" $bin check --model deepseek-v3 --layout "${LB_DECODE_V3_LAYOUTS:-all}" \
        --gpus "$gpus" --layers 4 --lengths 3001,2047,1500,1644 --dtype bf16 --kernels fused --decode-steps 16 \
        --json "$OUT/check_decode_deepseek-v3_${gpus}gpu_bf16.json" || status=1 ;;
    gsm8k-48)
      # A 48-layer Qwen3-30B-A3B (random weights) generating 256 tokens for 200 5-shot questions, one layout;
      # the reference fused too (the plain one would take many minutes at 48 layers).
      shared=${LB_SHARED_DIR:-../shared}
      timeout "${LB_GSM8K_TIMEOUT:-900}" $bin gsm8k --model qwen3-30b-a3b --layout "${LB_GSM8K_LAYOUT:-dp-attn-rsv}" \
        --gpus "$gpus" --layers 48 --data "$shared/datasets/gsm8k/test.jsonl" \
        --tokenizer "$shared/tokenizers/gsm8k-bpe-4k/tokenizer.json" --shots 5 --num-questions 200 \
        --max-new-tokens 256 --batch-size 200 --kernels fused --reference-kernels fused \
        --json "$OUT/gsm8k_qwen3-30b-a3b_48L_${gpus}gpu_bf16_200q.json" || status=1 ;;
    gsm8k)
      # Every layout generating from 5-shot GSM8K prompts at real shape (random weights: token
      # agreement with the reference and tokens/s, not accuracy). ../shared does not travel to the
      # GPU machine: LB_SHARED_DIR names a carried copy.
      # On one GPU, the reference alone.
      shared=${LB_SHARED_DIR:-../shared}
      layouts=all; [ "$gpus" -ge 2 ] || layouts=none
      timeout "${LB_GSM8K_TIMEOUT:-600}" $bin gsm8k --model qwen3-30b-a3b --layout $layouts --gpus "$gpus" --layers 4 \
        --data "$shared/datasets/gsm8k/test.jsonl" --tokenizer "$shared/tokenizers/gsm8k-bpe-4k/tokenizer.json" \
        --shots 5 --num-questions 50 --max-new-tokens 32 --batch-size 50 \
        --json "$OUT/gsm8k_qwen3-30b-a3b_4L_${gpus}gpu_bf16.json" || status=1 ;;
    *) echo "unknown step $step"; status=1 ;;
  esac
done
exit $status
