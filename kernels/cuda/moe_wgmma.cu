#include "kernels/cuda/moe_wgmma.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/expert_tile.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/tensor_map.h"
#include "kernels/cuda/tma.cuh"
#include "kernels/cuda/wgmma.cuh"

#include <algorithm>
#include <cmath>
#include <type_traits>

namespace lb::cuda {

namespace {

constexpr int kStageCols = 64;                // K columns a stage: one 128-byte swizzled row
constexpr int kRowBytes = kStageCols * 2;
constexpr int kRowChunks = kRowBytes / 16;    // 16-byte cp.async pieces of a row

// The 128-byte swizzle wgmma reads (kernels/cuda/wgmma.cuh): chunk c of row r.
__device__ inline int swizzled_byte(int r, int c) { return r * kRowBytes + (c ^ (r % 8)) * 16; }

// Weight tiles a block: rows row0.. of gate and of up, or 2 x kRows rows of down, two tiles one
// after the other. Down's two tiles read each pair's row half as often as one (SGLang's tuned H200
// configs at 1024+ tokens also take 256 rows a block): Qwen3 2048 tokens 0.511-0.519 ms against
// 0.541-0.543, 512 tokens 0.3276-0.3277 against 0.3301-0.3308, DeepSeek-V3 level (H200 at
// 4944f8d, results/kernels/down_tiles_4944f8d/).
constexpr int kMats = 2;
constexpr int kMaxStages = 8;
// Pairs a pass multiplies: the smallest multiple of this that holds them.
constexpr int kChunk = 32;
// The most pairs a pass takes (the tall block's): the routing weights held for the epilogue.
constexpr int kMaxPassPairs = 192;

// How a block is laid out: kRows weight rows a tile, kBudget bytes of stages, kInFlight product
// groups left running while the next stage is awaited (one costs a stage of loads ahead), kPerSm
// blocks an SM, kGroups warpgroups (one for each 64 weight rows, or, where the pairs are always
// the products' rows, one for each 64 pairs).
template <int kRows_, int kBudget_, int kInFlight_, int kPerSm_, int kGroups_ = kRows_ / 64> struct BlockShape {
  static constexpr int kRows = kRows_, kBudget = kBudget_, kInFlight = kInFlight_, kPerSm = kPerSm_;
  static constexpr int kGroups = kGroups_;
  static constexpr int kThreads = 128 * kGroups;
  static constexpr int kWeightBytes = kMats * kRows * kRowBytes;  // a stage's weight tiles
  // The stages, a barrier a stage, the pass's routing weights, the 1024-byte alignment.
  static constexpr size_t kSharedBytes =
      size_t(kBudget) + kMaxStages * sizeof(uint64_t) + kMaxPassPairs * sizeof(float) + 1024;
  // Output rows a block writes for each pair.
  __host__ __device__ static constexpr int out_rows(bool gate_up) { return gate_up ? kRows : kMats * kRows; }
};
// 128 rows of each tile on two warpgroups, one block an SM (224 of the 227 KB an H200 block may have).
using WideBlock = BlockShape<128, 224 * 1024, 1, 1>;
// 64 rows on one warpgroup, three blocks an SM (SGLang's tuned shape at Qwen3 512 tokens: 64 pairs
// by 128 weight rows, 3 stages of 24 KB), so one block's pipeline fill and epilogue hide behind the
// others' loads; no product group left in flight, so two of its three stages load ahead.
using NarrowBlock = BlockShape<64, 72 * 1024, 0, 3>;
// The wide block's tiles with a third warpgroup: passes of up to 192 pairs, the pairs as the
// products' rows, so an expert with a few more pairs than 128 takes one pass, not a second that
// reads the whole weight tile again for those few.
using TallBlock = BlockShape<128, 224 * 1024, 1, 1, 3>;

// A pass of kN pairs, writing kOutRows rows a pair: the stages that fit the budget.
template <typename B, int kN, int kOutRows> struct Shape {
  static constexpr int kStageBytes = B::kWeightBytes + kN * kRowBytes;
  static constexpr int kStages = std::min<int>(kMaxStages, B::kBudget / kStageBytes);
  static constexpr int kInputPerThread = (kN * kRowChunks + B::kThreads - 1) / B::kThreads;
  // The output tile staged as [pair][row], rows padded so the fragment stores spread over banks.
  static constexpr int kOutStride = kOutRows + 8;
  static_assert(kStageBytes % 1024 == 0 && B::kWeightBytes % 1024 == 0, "tiles on 1024-byte boundaries");
  static_assert(kStages >= 2 + B::kInFlight, "a stage loading, one multiplied, those still read by products in flight");
  static_assert(kN * kOutStride * 2 <= kStages * kStageBytes, "the output tile is staged in the stages");
};

// Which operand of the products the pairs are. kWeightRows: warpgroup g multiplies rows
// 64g..64g+63 of each weight tile (A) by all kN pairs (B, N = kN), any kN a multiple of 32.
// kPairRows, for passes of 128 pairs: warpgroup g multiplies pairs 64g..64g+63 (A) by all 256
// weight rows of the stage (B, one m64n256 product; the two tiles lie one after the other), so
// every 16 columns a warpgroup reads 2 + 8 KB of operands from shared memory instead of
// 2 x (2 + 4), as SGLang's Triton kernel does with its 128 x 256 tiles on an H200. Against
// kWeightRows at 61e5710 (H200, LB_WGMMA_BY_PAIRS, results/kernels/by_pairs_ab_61e5710/): Qwen3
// 2048 tokens 0.464-0.470 ms against 0.510-0.516, gate/up 289 us against 328 (DRAM 72% of peak
// against 59%, Nsight Compute), down level.
enum class Operands { kWeightRows, kPairRows };
template <int kN> constexpr Operands operands_for = kN == 128 ? Operands::kPairRows : Operands::kWeightRows;
// Accumulators a thread holds for each tile: 64 rows by kN pairs, or 64 pairs by the tile's rows.
template <typename B, int kN, Operands kOperands>
constexpr int kAccumulators = kOperands == Operands::kPairRows ? B::kRows / 2 : kN / 2;

// acc[m][4j + i] of thread (warpgroup group, warp, lane), with q = lane % 4: for kWeightRows row
// 64 group + 16 warp + lane / 4 + 8 (i / 2) of tile m by pair 8j + 2q + i % 2; for kPairRows pair
// 64 group + 16 warp + lane / 4 + 8 (i / 2) by row 8j + 2q + i % 2 of tile m (the lo and hi halves
// of the m64n256 product are the two tiles). `pair` and `row` name them.
template <Operands kOperands> struct Fragment {
  int pair, row;
  __device__ Fragment(int j, int i) {
    const int group = threadIdx.x / 128, warp = threadIdx.x % 128 / 32, lane = threadIdx.x % 32;
    const int across = 64 * group + 16 * warp + lane / 4 + 8 * (i / 2), along = 8 * j + 2 * (lane % 4) + i % 2;
    pair = kOperands == Operands::kPairRows ? across : along;
    row = kOperands == Operands::kPairRows ? along : across;
  }
};

// A pass's products out of the accumulators, through the free stages (the output tile staged as
// [pair][row]) to global memory in 16-byte pieces. Gate/up writes SiLU(gate) * up * the pair's
// routing weight, from pass_weights (0 past n).
template <typename B, typename T, bool kGateUp, int kN, Operands kOperands, int kAcc>
__device__ inline void store_outputs(const float (&acc)[kMats][kAcc], const float* pass_weights, T* out,
                                     int64_t out_cols, int64_t row0, int64_t first, int n, uint8_t* shared) {
  constexpr int kOutRows = B::out_rows(kGateUp), kOutStride = kOutRows + 8;
  T* staged = reinterpret_cast<T*>(shared);
  // With kPairRows a thread's products are of two pairs: their weights read once.
  float own_weights[2] = {};
  if constexpr (kGateUp && kOperands == Operands::kPairRows)
    for (int h = 0; h < 2; ++h) own_weights[h] = pass_weights[Fragment<kOperands>(0, 2 * h).pair];
#pragma unroll
  for (int j = 0; j < kAcc / 4; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const Fragment<kOperands> f(j, i);
      if constexpr (kGateUp) {
        const float w = kOperands == Operands::kPairRows ? own_weights[i / 2] : pass_weights[f.pair];
        const float g = acc[0][4 * j + i];
        staged[f.pair * kOutStride + f.row] = from_f<T>(silu(g) * acc[1][4 * j + i] * w);
      } else {
#pragma unroll
        for (int m = 0; m < kMats; ++m)
          staged[f.pair * kOutStride + m * B::kRows + f.row] = from_f<T>(acc[m][4 * j + i]);
      }
    }
  __syncthreads();
  constexpr int kRowPieces = kOutRows / 8;  // 16-byte pieces of a pair's output row
  for (int c = threadIdx.x; c < n * kRowPieces; c += B::kThreads) {
    const int p = c / kRowPieces, piece = c % kRowPieces;
    const int64_t row = row0 + 8 * piece;
    if (row < out_cols)
      *reinterpret_cast<uint4*>(out + (first + p) * out_cols + row) =
          *reinterpret_cast<const uint4*>(staged + p * kOutStride + 8 * piece);
  }
}

template <int kAcc> __device__ inline void keep_accumulators(float (&acc)[kMats][kAcc]) {
#pragma unroll
  for (int m = 0; m < kMats; ++m) keep_accumulator(acc[m]);
}

// The products of one stage (its weight tiles, then its kN pairs' rows) by warpgroup `group`, one
// product group committed, at most B::kInFlight left running after.
template <typename B, typename T, int kN, Operands kOperands, int kAcc>
__device__ inline void multiply_stage(float (&acc)[kMats][kAcc], const uint8_t* stage, int group) {
  keep_accumulators(acc);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kStageCols / 16; ++kk) {
    const uint8_t* pairs = stage + B::kWeightBytes + kk * 32;
    if constexpr (kOperands == Operands::kPairRows) {
      static_assert(kN == 64 * B::kGroups && kMats * B::kRows == 256, "warpgroups of 64 pairs by 256 weight rows");
      Wgmma256<T>::run(acc[0], acc[1], wgmma_tile(pairs + group * 64 * kRowBytes), wgmma_tile(stage + kk * 32));
    } else {
      static_assert(B::kGroups * 64 == B::kRows, "a warpgroup for each 64 weight rows");
#pragma unroll
      for (int m = 0; m < kMats; ++m)
        Wgmma<T, kN>::run(acc[m], wgmma_tile(stage + (m * B::kRows + group * 64) * kRowBytes + kk * 32),
                          wgmma_tile(pairs));
    }
  }
  wgmma_commit();
  wgmma_wait<B::kInFlight>();
  keep_accumulators(acc);
}

// One pass of a block (expert e, weight rows row0..) over pairs first .. first + n (n <= kN).
// Stages: [tile][B::kRows weight rows][128 bytes], then [kN pairs][128 bytes]. Gate/up's two
// tiles are rows row0.. of gate and of up; down's are its rows row0.., B::kRows each, one after
// the other. A stage's weight tiles come by TMA (one box a tile, landing on the stage's mbarrier;
// faster than every thread's 16-byte copies on an H200 at 4dc57c2: DeepSeek-V3 4096 tokens 8.70 ms
// against 9.45), its pairs' rows by every thread's cp.async: gate/up's pairs gather their token's
// row of x, down's read their own row of act. The pipeline keeps kStages - 1 - B::kInFlight stages
// loading ahead and B::kInFlight product groups in flight, so the stage refilled at step s is no
// longer read. `phases` holds each barrier's next parity. wait_inputs() runs (in
// every thread) after the first stages' weights are issued and before any input row is read.
// Gate/up reads its pairs' routing weights into pass_weights before the products
// (load_pass_weights): Qwen3 1024 tokens gate/up 237-240 us against 264-268 with them read in the
// epilogue (Nsight Compute, H200; results/kernels/pass_weights_ab_0c1a422/).
template <typename B, typename T, bool kGateUp, int kN, Operands kOperands, typename WaitInputs>
__device__ inline void expert_pass(const CUtensorMap* weights, const T* in, const int64_t* order,
                                   const float* pair_weight, T* out, int64_t out_cols, int64_t K, int64_t k, int64_t e,
                                   int64_t row0, int64_t first, int n, uint8_t* shared, uint64_t* landed,
                                   float* pass_weights, unsigned& phases, const WaitInputs& wait_inputs) {
  using S = Shape<B, kN, B::out_rows(kGateUp)>;
  // Stages loading ahead: all but the one multiplied and those read by the product groups in flight.
  constexpr int kAhead = S::kStages - 1 - B::kInFlight;
  const int group = threadIdx.x / 128;
  const int stages = int(K / kStageCols);
  const T* x_src[S::kInputPerThread];
  int x_dst[S::kInputPerThread];
#pragma unroll
  for (int i = 0; i < S::kInputPerThread; ++i) {
    const int t = threadIdx.x + i * B::kThreads;
    const int p = t / kRowChunks, c = t % kRowChunks;
    // Pairs past n are not loaded: their products are garbage and never stored.
    x_src[i] = p < n ? in + (kGateUp ? order[first + p] / k : first + p) * K + c * 8 : nullptr;
    x_dst[i] = B::kWeightBytes + swizzled_byte(p, c);
  }
  const auto issue_weights = [&](int s) {
    const int slot = s % S::kStages;
    uint8_t* stage = shared + slot * S::kStageBytes;
    if (threadIdx.x == 0) {
      barrier_expect(&landed[slot], B::kWeightBytes);
      // Rows past out_cols read the next matrix's (or, past the tensor, zeros): never stored.
      for (int m = 0; m < kMats; ++m)
        tensor_copy(stage + m * B::kRows * kRowBytes, weights, s * kStageCols,
                    int(kGateUp ? (e * 2 + m) * out_cols + row0 : e * out_cols + row0 + m * B::kRows),
                    &landed[slot]);
    }
  };
  const auto issue_inputs = [&](int s) {
    uint8_t* stage = shared + (s % S::kStages) * S::kStageBytes;
#pragma unroll
    for (int i = 0; i < S::kInputPerThread; ++i)
      if (x_src[i]) cp_async_16(stage + x_dst[i], x_src[i] + s * kStageCols);
  };

  constexpr int kAcc = kAccumulators<B, kN, kOperands>;
  float acc[kMats][kAcc];
#pragma unroll
  for (int m = 0; m < kMats; ++m)
#pragma unroll
    for (int i = 0; i < kAcc; ++i) acc[m][i] = 0.0f;
  // With the pairs as rows, a warpgroup whose 64 pairs are all past n has no products to make.
  const bool multiplies = kOperands == Operands::kWeightRows || 64 * group < n;
  // The first stages' weights (no kernel writes them) load while the inputs may still be coming.
#pragma unroll
  for (int s = 0; s < kAhead; ++s)
    if (s < stages) issue_weights(s);
  wait_inputs();
  // Read after the main loop's barriers; the last pass's epilogue ended with one.
  if constexpr (kGateUp) load_pass_weights<B::kThreads>(pass_weights, pair_weight, order, first, n, kN);
#pragma unroll
  for (int s = 0; s < kAhead; ++s) {
    if (s < stages) issue_inputs(s);
    cp_async_commit();  // empty groups too: the wait below counts groups
  }
#pragma unroll 1
  for (int s = 0; s < stages; ++s) {
    cp_async_wait<kAhead - 1>();
    fence_async_shared();  // this thread's copies of stage s, visible to the tensor cores
    __syncthreads();       // everyone's copies landed; the products of the stage refilled next are done
    if (s + kAhead < stages) {
      issue_weights(s + kAhead);
      issue_inputs(s + kAhead);
    }
    cp_async_commit();
    const int slot = s % S::kStages;
    barrier_wait(&landed[slot], (phases >> slot) & 1u);
    phases ^= 1u << slot;
    if (multiplies) multiply_stage<B, T, kN, kOperands>(acc, shared + slot * S::kStageBytes, group);
  }
  wgmma_wait<0>();
  keep_accumulators(acc);
  cp_async_wait<0>();
  __syncthreads();  // the stages are free: they hold the output tile now
  store_outputs<B, T, kGateUp, kN, kOperands>(acc, pass_weights, out, out_cols, row0, first, n, shared);
  fence_async_shared();  // the staged tile's reads and writes, before the next pass's copies overwrite it
  __syncthreads();       // the next pass refills the stages
}

// f(integral_constant<kChunk * c>) for the smallest c >= chunks, c <= kCount.
template <int kChunk, int kCount, typename F> __device__ inline void with_pairs_tile(int chunks, const F& f) {
  if constexpr (kCount > 1) {
    if (chunks < kCount) return with_pairs_tile<kChunk, kCount - 1>(chunks, f);
  }
  f(std::integral_constant<int, kChunk * kCount>{});
}

// Block (pass, row tile, expert): the expert's pairs from blockIdx.x * kCap on, kCap at a time,
// every gridDim.x-th group; each pass multiplies the smallest multiple of kChunk pairs that holds
// its own, so an expert with a few more pairs than a tile does not pay for a second full one.
// Against passes of kCap pairs each (584c785, LB_WGMMA_FIXED=1; Nsight Compute, H200): Qwen3 512
// tokens gate/up 210-216 us against 225-240, down 109-110 against 114; 1024 tokens gate/up 243
// against 263-267, down 119 against 131-133.
template <typename B, typename T, bool kGateUp, int kCap>
__global__ void __launch_bounds__(B::kThreads, B::kPerSm)
    wgmma_kernel(const __grid_constant__ CUtensorMap weights, const T* in, const int64_t* order, const int64_t* offsets,
                 const float* pair_weight, T* out, int64_t out_cols, int64_t K, int64_t k, int* ready,
                 int gate_up_tiles) {
  static_assert(kCap <= kMaxPassPairs, "a pass's routing weights fit pass_weights");
// Device code for sm_90a only (the host pass still parses it); elsewhere the body is empty and
// moe_wgmma_fits says no.
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ uint8_t raw_shared[];
  const unsigned misalign = static_cast<unsigned>(__cvta_generic_to_shared(raw_shared)) % 1024;
  uint8_t* shared = raw_shared + (misalign ? 1024 - misalign : 0);
  // Gate/up lets the down kernel launch only once it has read the offsets: by then the sort has
  // ended, and down reads them without waiting; none of its blocks reads anything after it counts
  // its pairs done, so down's blocks, which wait on those counts, end after all of its reads.
  if constexpr (kGateUp) wait_for_previous_kernel();
  // From L2 (.cg): down reads them with no wait, so no earlier line of them may come from L1.
  const int64_t e = blockIdx.z, begin = __ldcg(offsets + e), end = __ldcg(offsets + e + 1);
  const int64_t row0 = int64_t(blockIdx.y) * B::out_rows(kGateUp);
  if (begin == end) return;
  allow_next_kernel();
  uint64_t* landed = reinterpret_cast<uint64_t*>(shared + B::kBudget);
  float* pass_weights = reinterpret_cast<float*>(landed + kMaxStages);
  if (threadIdx.x == 0) {
    for (int i = 0; i < kMaxStages; ++i) barrier_init(&landed[i], 1);
    barrier_init_fence();
  }
  __syncthreads();
  // Down reads the gate/up rows of its expert's pairs once every gate/up block has counted them
  // (gate_up_tiles row tiles, each pair once a tile), not once the whole gate/up kernel has ended:
  // the blocks of the experts done first start while its last ones still run.
  bool inputs_ready = kGateUp;
  const auto wait_inputs = [&] {
    if (inputs_ready) return;
    inputs_ready = true;
    wait_for_expert_rows(ready + e, int((end - begin) * gate_up_tiles));
  };
  unsigned phases = 0;
  int done = 0;
  for (int64_t first = begin + int64_t(blockIdx.x) * kCap; first < end; first += int64_t(gridDim.x) * kCap) {
    const int n = int(end - first < kCap ? end - first : kCap);
    if constexpr (B::kGroups > B::kRows / 64) {
      // More warpgroups than 64-row weight tiles (the tall block): one pass layout, the pairs as
      // the products' rows, the warpgroups past n's pairs sitting out.
      expert_pass<B, T, kGateUp, kCap, Operands::kPairRows>(&weights, in, order, pair_weight, out, out_cols, K, k, e,
                                                           row0, first, n, shared, landed, pass_weights, phases,
                                                           wait_inputs);
    } else {
      with_pairs_tile<kChunk, kCap / kChunk>((n + kChunk - 1) / kChunk, [&](auto tile) {
        constexpr int kN = decltype(tile)::value;
        expert_pass<B, T, kGateUp, kN, operands_for<kN>>(&weights, in, order, pair_weight, out, out_cols, K, k, e,
                                                         row0, first, n, shared, landed, pass_weights, phases,
                                                         wait_inputs);
      });
    }
    done += n;
  }
  if (kGateUp && done > 0) count_expert_rows(ready + e, done);
#endif
}

// Pairs a block takes per pass at most: 64 up to 40 an expert on average, else 128 (Qwen3 on an
// H200, bench-moe: 512 tokens, 32 an expert, 0.346 ms against 0.353 with 128 at f99fb72; 1024
// tokens 0.395 against 0.435 with 64 at 584c785).
int pairs_per_pass(double average) { return average <= 40 ? 64 : 128; }

template <typename B, typename T, bool kGateUp, int kCap>
cudaError_t launch_with(const void* in, const void* weight, const int64_t* order, const int64_t* offsets,
                        const float* pair_weight, void* out, int64_t experts, int passes, int64_t out_cols, int64_t K,
                        int64_t k, int* ready, int gate_up_tiles, cudaStream_t stream) {
  const auto kernel = wgmma_kernel<B, T, kGateUp, kCap>;
  // Over the 48 KB default: allowed per kernel, and not a stream operation (legal inside a capture).
  const cudaError_t attr =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(B::kSharedBytes));
  if (attr != cudaSuccess) return attr;
  CUtensorMap map;
  const cudaError_t mapped = weight_tensor_map(&map, std::is_same_v<T, __nv_bfloat16> ? Dtype::BF16 : Dtype::F16,
                                               weight, experts * (kGateUp ? 2 : 1) * out_cols, K, B::kRows);
  if (mapped != cudaSuccess) return mapped;
  constexpr int kOutRows = B::out_rows(kGateUp);
  const dim3 grid(unsigned(passes), unsigned((out_cols + kOutRows - 1) / kOutRows), unsigned(experts));
  return launch_chained(kernel, grid, dim3(B::kThreads), B::kSharedBytes, stream, map, static_cast<const T*>(in),
                        order, offsets, pair_weight, static_cast<T*>(out), out_cols, K, k, ready, gate_up_tiles);
}

template <bool kGateUp>
cudaError_t launch(Dtype dtype, const void* in, const void* weight, const int64_t* order, const int64_t* offsets,
                   const float* pair_weight, void* out, int64_t experts, int64_t pairs, int64_t out_cols, int64_t K,
                   int64_t k, int* ready, cudaStream_t stream) {
  if (experts == 0 || out_cols == 0) return cudaSuccess;
  if (ready == nullptr || dtype == Dtype::F32 || K % kStageCols != 0 || out_cols % 8 != 0 || experts > 65535)
    return cudaErrorInvalidValue;
  // Both launches choose from the same average, so down waits for the row tiles gate/up counts.
  const double average = double(pairs) / double(experts);
  const int kn = pairs_per_pass(average);
  // The tall block where the wide one would take an expert in more than one pass: Qwen3 2048 /
  // 4096 tokens 0.415-0.426 / 0.674-0.723 ms against 0.451-0.464 / 0.750-0.758, DeepSeek-V3 4096
  // 6.51-6.89 against 7.88-7.96 (H200 at daec93a, three rounds, results/kernels/tall_block_ab_daec93a/).
  const bool tall = kn == 128 && passes_for(average, kn) > 1;
  using TallPairs = std::integral_constant<int, TallBlock::kGroups * 64>;  // a tall pass's most pairs
  const int passes = passes_for(average, tall ? TallPairs::value : kn);
  // Gate/up takes the narrow block where passes take up to 64 pairs, the wide one (two warpgroups,
  // 128-pair passes with the pairs as the products' rows) beyond. Against the wide block on an H200
  // at fe5bfa4, two calls of two rounds (results/kernels/gate_up_shape_ab_fe5bfa4/): Qwen3 256
  // tokens 0.3054-0.3093 ms against 0.3117-0.3151, 512 level, DeepSeek-V3 16-1024 tokens within 1%;
  // with 64-pair passes at 2048 tokens it lost (0.536-0.549 against 0.449-0.466). One choice, read
  // by both launches: down waits for as many row tiles as the block gate/up took has.
  const bool narrow_gate_up = kn == 64;
  const int64_t inter = kGateUp ? out_cols : K;
  const int64_t gate_up_rows = narrow_gate_up ? NarrowBlock::kRows : WideBlock::kRows;
  const int gate_up_tiles = int((inter + gate_up_rows - 1) / gate_up_rows);
  const auto run = [&](auto block, auto cap) {
    using B = decltype(block);
    constexpr int kCap = decltype(cap)::value;
    // F32 is refused above: the element type is one of the two 16-bit ones.
    return dtype == Dtype::BF16
               ? launch_with<B, __nv_bfloat16, kGateUp, kCap>(in, weight, order, offsets, pair_weight, out, experts,
                                                              passes, out_cols, K, k, ready, gate_up_tiles, stream)
               : launch_with<B, __half, kGateUp, kCap>(in, weight, order, offsets, pair_weight, out, experts, passes,
                                                       out_cols, K, k, ready, gate_up_tiles, stream);
  };
  using Pairs64 = std::integral_constant<int, 64>;
  using Pairs128 = std::integral_constant<int, 128>;
  if (tall) return run(TallBlock{}, TallPairs{});
  if constexpr (kGateUp)
    return narrow_gate_up ? run(NarrowBlock{}, Pairs64{}) : run(WideBlock{}, Pairs128{});
  else
    return kn == 64 ? run(WideBlock{}, Pairs64{}) : run(WideBlock{}, Pairs128{});
}

}  // namespace

bool moe_wgmma_fits(Dtype dtype, int64_t hidden, int64_t inter) {
  if (dtype == Dtype::F32 || hidden <= 0 || inter <= 0 || hidden % kStageCols != 0 || inter % kStageCols != 0)
    return false;
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess)
    return false;
  // sm_90a code runs on compute capability 9.0 alone; the weights' tensor maps need the driver's encoder.
  return major == 9 && minor == 0 && tensor_maps_available();
}

cudaError_t moe_wgmma_gate_up(Dtype dtype, const void* x, const void* gate_up, const int64_t* order,
                              const int64_t* offsets, const float* pair_weight, void* act, int64_t experts,
                              int64_t pairs, int64_t inter, int64_t hidden, int64_t k, int* ready,
                              cudaStream_t stream) {
  return launch<true>(dtype, x, gate_up, order, offsets, pair_weight, act, experts, pairs, inter, hidden, k, ready,
                      stream);
}

cudaError_t moe_wgmma_down(Dtype dtype, const void* act, const void* down, const int64_t* offsets, void* y,
                           int64_t experts, int64_t pairs, int64_t hidden, int64_t inter, int* ready,
                           cudaStream_t stream) {
  return launch<false>(dtype, act, down, nullptr, offsets, nullptr, y, experts, pairs, hidden, inter, 1, ready,
                       stream);
}

}  // namespace lb::cuda
