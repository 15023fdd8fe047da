#include "kernels/cuda/moe_stream.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/expert_tile.cuh"
#include "kernels/cuda/mma.cuh"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <type_traits>

namespace lb::cuda {

namespace {

// Block (pass, row tile, expert): kWarps warps, each 16 weight rows (of each matrix) against up to
// kN sorted pairs per pass over K. A stage is kCols K columns of the block's rows of each matrix
// and of its pairs' input rows; kStages of them are in flight while one is multiplied. Registers
// hold only the accumulators, so the loads in flight are bounded by shared memory, not by
// registers as in moe_decode.cu's tensor-core kernel, which this one replaced:
// H200, Qwen3 at 64 tokens ~93% of the copy bandwidth against ~80%, DeepSeek-V3 at 64 ~101%
// against ~84% (a copy reads and writes; a stream only reads).
constexpr int kStageCols = 64;  // K must be a multiple of the narrowest stage
// Hidden sizes below this read their weights with an L2 evict_first policy (see launch).
constexpr int64_t kEvictFirstMaxHidden = 4096;

// Chunk c of row r of a stage's tile: rows of kCols * 2 bytes, chunks XOR-swizzled by the row, so
// that the 8 rows one ldmatrix reads at the same column fall in 8 different bank groups.
template <int kCols> __device__ inline int swizzled(int r, int c) { return r * (kCols / 8) + (c ^ (r % 8)); }

// A stage: kCols K columns of the block's weight rows (of each matrix) and of its pairs' input rows.
template <int kMats, int kN, int kWarps, int kCols, int kStagesT> struct Stage {
  static constexpr int kStages = kStagesT;
  static constexpr int kRowChunks = kCols * 2 / 16;  // 16-byte chunks of a row in one stage
  static constexpr int kTileRows = 16 * kWarps;
  static constexpr int kWeightChunks = kMats * kTileRows * kRowChunks;
  static constexpr int kChunks = kWeightChunks + kN * kRowChunks;
  static constexpr int kWeightPerThread = kWeightChunks / (kWarps * 32);
  static constexpr int kInputPerThread = (kN * kRowChunks + kWarps * 32 - 1) / (kWarps * 32);
  // The stages, then the pass's routing weights (gate/up).
  static constexpr size_t kSharedBytes = size_t(kStages) * kChunks * 16 + kN * sizeof(float);
};

template <typename T, bool kGateUp, int kN, int kWarps, int kCols, int kStages>
__global__ void __launch_bounds__(kWarps * 32)
    stream_kernel(const T* in, const T* weight, const int64_t* order, const int64_t* offsets,
                  const float* pair_weight, T* out, int64_t out_cols, int64_t K, int64_t k, int* ready,
                  int gate_up_tiles, bool evict_first) {
  // Gate/up follows the pair sort and lets the next kernels launch only once the sort is done, so
  // that they may read its outputs before their own wait: down its offsets (then its first stages
  // of weights), the combine its rows (kernels/cuda/moe_rows.h).
  if (kGateUp) wait_for_previous_kernel();
  allow_next_kernel();
  constexpr int kMats = kGateUp ? 2 : 1;
  constexpr int kTiles = kN / 8;
  using S = Stage<kMats, kN, kWarps, kCols, kStages>;
  constexpr int kTileRows = S::kTileRows, kRowChunks = S::kRowChunks;
  extern __shared__ uint4 shared[];  // [kStages][S::kChunks], then kN floats
  float* pass_weights = reinterpret_cast<float*>(shared + kStages * S::kChunks);
  // From L2 (.cg): down may read them before its wait.
  const int64_t e = blockIdx.z, begin = __ldcg(offsets + e), end = __ldcg(offsets + e + 1);
  const int64_t row0 = int64_t(blockIdx.y) * kTileRows;
  if (begin == end) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int stages = int(K / kCols);

  // The weight chunks this thread copies each stage: consecutive threads take consecutive chunks of
  // a row, kRowChunks threads a row's part of the stage.
  const T* w_src[S::kWeightPerThread];
  int w_dst[S::kWeightPerThread];
#pragma unroll
  for (int i = 0; i < S::kWeightPerThread; ++i) {
    const int t = threadIdx.x + i * kWarps * 32;
    const int m = t / (kTileRows * kRowChunks), r = t / kRowChunks % kTileRows, c = t % kRowChunks;
    w_src[i] = weight_piece(weight, e, kMats, m, row0, r, c, out_cols, K);
    w_dst[i] = m * kTileRows * kRowChunks + swizzled<kCols>(r, c);
  }
  const uint64_t policy = evict_first ? evict_first_policy() : 0;
  const auto issue_weights = [&](int s) {
    uint4* buffer = shared + (s % kStages) * S::kChunks;
    if (evict_first) {
#pragma unroll
      for (int i = 0; i < S::kWeightPerThread; ++i)
        cp_async_16_hinted(buffer + w_dst[i], w_src[i] + s * kCols, policy);
    } else {
#pragma unroll
      for (int i = 0; i < S::kWeightPerThread; ++i) cp_async_16(buffer + w_dst[i], w_src[i] + s * kCols);
    }
  };
  // Down's first stages of weights (which no kernel writes) load while gate/up finishes; they join
  // the first pass's first group of copies, so its first wait covers them.
  bool weights_issued = false;
  if constexpr (!kGateUp) {
    const bool has_pass = begin + int64_t(blockIdx.x) * kN < end;
    if (has_pass) {
#pragma unroll
      for (int s = 0; s < kStages - 1; ++s)
        if (s < stages) issue_weights(s);
      weights_issued = true;
    }
    // With `ready`, down waits only for its own expert's rows of act, counted by the gate/up
    // blocks that wrote them (gate_up_tiles row tiles, each pair once a tile), so the blocks of
    // the experts done first run while gate/up's last ones still do. A block without a pass
    // writes nothing and need not wait.
    if (!ready) {
      wait_for_previous_kernel();
    } else if (has_pass) {
      wait_for_expert_rows(ready + e, int((end - begin) * gate_up_tiles));
    }
  }
  int done = 0;  // gate/up: the pairs this block wrote rows of

  // Blocks x = 0 .. passes - 1 of a row tile take its expert's pairs kN at a time in turn; they are
  // launched together, so the second reads of the weights mostly come from L2.
  for (int64_t first = begin + int64_t(blockIdx.x) * kN; first < end; first += int64_t(gridDim.x) * kN) {
    const int n = int(end - first < kN ? end - first : kN);
    const int tiles = (n + 7) / 8;
    const T* x_src[S::kInputPerThread];
    int x_dst[S::kInputPerThread];
#pragma unroll
    for (int i = 0; i < S::kInputPerThread; ++i) {
      const int t = threadIdx.x + i * kWarps * 32;
      const int p = t / kRowChunks, c = t % kRowChunks;
      // Pairs past n are not loaded: their columns of the products are garbage and never stored.
      x_src[i] = p < n ? in + (kGateUp ? order[first + p] / k : first + p) * K + c * 8 : nullptr;
      x_dst[i] = S::kWeightChunks + swizzled<kCols>(p, c);
    }
    // Read after the main loop's barriers; the last pass's epilogue ended with one.
    if constexpr (kGateUp) load_pass_weights<kWarps * 32>(pass_weights, pair_weight, order, first, n, kN);
    const auto issue_inputs = [&](int s) {
      uint4* buffer = shared + (s % kStages) * S::kChunks;
#pragma unroll
      for (int i = 0; i < S::kInputPerThread; ++i)
        if (x_src[i]) cp_async_16(buffer + x_dst[i], x_src[i] + s * kCols);
    };
    const auto issue = [&](int s) {
      issue_weights(s);
      issue_inputs(s);
    };

    float acc[kMats][kTiles][4] = {};
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < stages) {
        if (!weights_issued) issue_weights(s);
        issue_inputs(s);
      }
      cp_async_commit();  // empty groups too: the wait below counts groups
    }
    weights_issued = false;
    for (int s = 0; s < stages; ++s) {
      cp_async_wait<kStages - 2>();
      __syncthreads();  // stage s is everyone's, and everyone is done with the buffer refilled next
      if (s + kStages - 1 < stages) issue(s + kStages - 1);
      cp_async_commit();
      const uint4* buffer = shared + (s % kStages) * S::kChunks;
#pragma unroll
      for (int kk = 0; kk < kCols / 16; ++kk) {
        // A: lanes 0-7 rows 0-7, 8-15 rows 8-15 of the warp's 16, at the k-step's first 8 columns;
        // lanes 16-31 the same rows at its next 8.
        uint32_t a[kMats][4];
        const int a_row = warp * 16 + lane % 16, a_chunk = 2 * kk + lane / 16;
#pragma unroll
        for (int m = 0; m < kMats; ++m)
          ldmatrix_x4(a[m], buffer + m * kTileRows * kRowChunks + swizzled<kCols>(a_row, a_chunk));
#pragma unroll
        for (int j = 0; j < kTiles; ++j) {
          if (j >= tiles) break;  // block-uniform
          // B: lanes 0-7 pairs 8j..8j+7 at the first 8 columns, lanes 8-15 at the next 8.
          uint32_t b[2];
          ldmatrix_x2(b, buffer + S::kWeightChunks + swizzled<kCols>(8 * j + lane % 8, 2 * kk + (lane / 8) % 2));
#pragma unroll
          for (int m = 0; m < kMats; ++m) mma_16x8x16<T>(acc[m][j], a[m], b[0], b[1]);
        }
      }
    }
    cp_async_wait<0>();

    // acc[m][j][r]: row 16 * warp + lane / 4 + 8 * (r / 2), pair 8j + 2 * (lane % 4) + r % 2.
#pragma unroll
    for (int j = 0; j < kTiles; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int p = 8 * j + 2 * (lane % 4) + r % 2;
        const int64_t row = row0 + 16 * warp + lane / 4 + 8 * (r / 2);
        if (p >= n || row >= out_cols) continue;
        const float a = acc[0][j][r];
        const float v = kGateUp ? silu(a) * acc[kMats - 1][j][r] * pass_weights[p] : a;
        out[(first + p) * out_cols + row] = from_f<T>(v);
      }
    __syncthreads();  // everyone is done with the buffers and the routing weights: the next pass refills them
    done += n;
  }
  if (kGateUp && ready && done > 0) count_expert_rows(ready + e, done);
}

// Pairs a block takes per pass: two to three times the average per expert, so that few experts
// need a second pass over their weights, and no more than needed, since the input rows share the
// stages. (8 a pass up to 3 on average: Qwen3 64 tokens, 4 pairs an expert, took 0.2825-0.2828 ms
// with 16 against 0.2877-0.2884 with 8, 8 and 32 tokens 0.121 / 0.246 ms with 8 against 0.127 /
// 0.250 with 16; H200 at cc3aa69, results/kernels/stream_shapes_cc3aa69/. 128 a pass, with its
// accumulators in 236 registers and one block an SM, was slower than 64 at 1024 and 2048 Qwen3
// tokens: 0.72 / 1.29 ms against 0.67 / 1.19.)
int pairs_per_pass(double average) { return average <= 3 ? 8 : average <= 10 ? 16 : average <= 22 ? 32 : 64; }

template <typename T, bool kGateUp, int kN, int kWarps, int kCols, int kStages>
cudaError_t launch_shaped(const void* in, const void* weight, const int64_t* order, const int64_t* offsets,
                          const float* pair_weight, void* out, int64_t experts, int passes, int64_t out_cols, int64_t K,
                          int64_t k, int* ready, int gate_up_tiles, bool evict_first, cudaStream_t stream) {
  using S = Stage<kGateUp ? 2 : 1, kN, kWarps, kCols, kStages>;
  const auto kernel = stream_kernel<T, kGateUp, kN, kWarps, kCols, kStages>;
  // Over the 48 KB default: allowed per kernel, and not a stream operation (legal inside a capture).
  const cudaError_t attr =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(S::kSharedBytes));
  if (attr != cudaSuccess) return attr;
  const dim3 grid(unsigned(passes), unsigned((out_cols + S::kTileRows - 1) / S::kTileRows), unsigned(experts));
  return launch_chained(kernel, grid, dim3(kWarps * 32), S::kSharedBytes, stream, static_cast<const T*>(in),
                        static_cast<const T*>(weight), order, offsets, pair_weight, static_cast<T*>(out), out_cols,
                        K, k, ready, gate_up_tiles, evict_first);
}

// The dynamic shared memory a block may opt into on the current device.
size_t shared_limit() {
  int device = 0, bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess)
    return 0;
  return size_t(bytes);
}

// Warps a block (16 weight rows of each matrix each) at kN pairs a pass, so that down knows how many
// row tiles gate/up counts an expert's rows in.
constexpr int warps_for(int kN) { return kN == 64 ? 8 : 4; }

template <typename T, bool kGateUp, int kN>
cudaError_t launch_with(const void* in, const void* weight, const int64_t* order, const int64_t* offsets,
                        const float* pair_weight, void* out, int64_t experts, int passes, int64_t out_cols, int64_t K,
                        int64_t k, int* ready, int gate_up_tiles, bool evict_first, cudaStream_t stream) {
  const auto run = [&](auto cols, auto stages) {
    return launch_shaped<T, kGateUp, kN, warps_for(kN), decltype(cols)::value, decltype(stages)::value>(
        in, weight, order, offsets, pair_weight, out, experts, passes, out_cols, K, k, ready, gate_up_tiles,
        evict_first, stream);
  };
  using C64 = std::integral_constant<int, 64>;
  using S4 = std::integral_constant<int, 4>;
  // 64 pairs a pass: 128 rows a block, so that each input row brought in serves twice the weights
  // (H200, Qwen3 at 512 tokens: 0.41 ms against 0.42 with 64 rows).
  if constexpr (kN == 64) {
    return run(C64{}, S4{});
  } else {
    // Passes of up to 32 pairs (Qwen3 at 4-128 tokens on an H200) read 256 contiguous bytes of a
    // weight row a stage, three stages: 1.5-3.5% faster than 128 bytes x 4
    // (results/kernels/stream_shapes_ae52345/); 8 warps a block, 2 or 3 stages, or 512 bytes x 2
    // were no faster (results/kernels/stream_shapes_cc3aa69/), nor were 2 warps
    // (results/kernels/stream_counts_ab_f9a25c5/). Their 120 KB of stages do not fit where a block
    // may have only 99 KB (compute capability 8.6, 8.9).
    if (K % 128 != 0 || Stage<kGateUp ? 2 : 1, kN, 4, 128, 3>::kSharedBytes > shared_limit()) return run(C64{}, S4{});
    return run(std::integral_constant<int, 128>{}, std::integral_constant<int, 3>{});
  }
}

template <bool kGateUp>
cudaError_t launch(Dtype dtype, const void* in, const void* weight, const int64_t* order, const int64_t* offsets,
                   const float* pair_weight, void* out, int64_t experts, int64_t pairs, int64_t out_cols, int64_t K,
                   int64_t k, int* ready, cudaStream_t stream) {
  if (experts == 0 || out_cols == 0) return cudaSuccess;
  if (dtype == Dtype::F32 || K % kStageCols != 0 || experts > 65535) return cudaErrorInvalidValue;
  const double average = double(pairs) / double(experts);
  const int kn = pairs_per_pass(average), passes = passes_for(average, kn);
  // Down waits for as many row tiles' counts as gate/up's blocks have: both choose from the same
  // average.
  const int64_t inter = kGateUp ? out_cols : K, gate_up_rows = 16 * warps_for(kn);
  const int gate_up_tiles = int((inter + gate_up_rows - 1) / gate_up_rows);
  // Each weight is read once (or by a few blocks side by side): marked first to leave L2, so that
  // the inputs, act and y stay there. Where hidden is short (Qwen3 on an H200, three interleaved
  // rounds at 12f62b5): 64 / 128 tokens 0.2729-0.2739 / 0.2836-0.2848 ms against 0.2749-0.2766 /
  // 0.2883-0.2888; at DeepSeek-V3's long rows it was level or up to 0.8% slower (256 tokens
  // 5.068-5.092 against 5.047-5.060), so they keep the default (results/kernels/evict_first_ab_12f62b5/).
  const int64_t hidden = kGateUp ? K : out_cols;
  const bool evict_first = hidden < kEvictFirstMaxHidden;
  return with_element_type(dtype, [&](auto e) -> cudaError_t {
    using T = typename decltype(e)::type;
    if constexpr (sizeof(T) != 2) {
      return cudaErrorInvalidValue;
    } else {
      const auto run = [&](auto tile) {
        return launch_with<T, kGateUp, decltype(tile)::value>(in, weight, order, offsets, pair_weight, out, experts,
                                                              passes, out_cols, K, k, ready, gate_up_tiles,
                                                              evict_first, stream);
      };
      switch (kn) {
        case 8: return run(std::integral_constant<int, 8>{});
        case 16: return run(std::integral_constant<int, 16>{});
        case 32: return run(std::integral_constant<int, 32>{});
        default: return run(std::integral_constant<int, 64>{});
      }
    }
  });
}

}  // namespace

bool moe_stream_fits(Dtype dtype, int64_t hidden, int64_t inter) {
  return dtype != Dtype::F32 && hidden % kStageCols == 0 && inter % kStageCols == 0 && hidden > 0 && inter > 0;
}

cudaError_t moe_stream_gate_up(Dtype dtype, const void* x, const void* gate_up, const int64_t* order,
                               const int64_t* offsets, const float* pair_weight, void* act, int64_t experts,
                               int64_t pairs, int64_t inter, int64_t hidden, int64_t k, cudaStream_t stream,
                               int* ready) {
  return launch<true>(dtype, x, gate_up, order, offsets, pair_weight, act, experts, pairs, inter, hidden, k, ready,
                      stream);
}

cudaError_t moe_stream_down(Dtype dtype, const void* act, const void* down, const int64_t* offsets, void* y,
                            int64_t experts, int64_t pairs, int64_t hidden, int64_t inter, cudaStream_t stream,
                            int* ready) {
  return launch<false>(dtype, act, down, nullptr, offsets, nullptr, y, experts, pairs, hidden, inter, 1, ready,
                       stream);
}

}  // namespace lb::cuda
