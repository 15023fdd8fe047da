#include "kernels/cuda/moe_rows.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

#include <climits>

namespace lb::cuda {

namespace {

constexpr int kThreads = 256;

// One thread per V consecutive outputs of a row.
template <typename T, int V>
__global__ void silu_mul_weight_kernel(const T* h, const float* w, T* out, int64_t rows, int64_t inter) {
  allow_next_kernel();
  wait_for_previous_kernel();
  const int64_t chunks = inter / V;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * chunks) return;
  const int64_t row = i / chunks, col = (i % chunks) * V;
  const T* gate = h + row * 2 * inter + col;
  const Pack<T, V> g = load_pack<T, V>(gate), u = load_pack<T, V>(gate + inter);
  const float scale = w ? w[row] : 1.0f;
  Pack<T, V> o;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const float gv = to_f(g.v[j]);
    o.v[j] = from_f<T>(silu(gv) * to_f(u.v[j]) * scale);
  }
  store_pack<T, V>(out + row * inter + col, o);
}

// Slots a thread loads before it adds any: a token's k rows are read at once, not one round trip
// of the memory after another (the serial loop took ~4.8 us of a Qwen3 batch-1 layer on an H200,
// results/decode/trace_decode_qwen3-30b-a3b_1gpu_b1_763349c.summary.txt; at once, the 4-layer step
// 0.3937-0.3948 ms against 0.3984-0.4006, results/decode/*_combine-serial{0,1}_run*_955b624.json).
// The sum's order is the same, so are its bits.
constexpr int kCombineBatch = 8;

// bf16 widened by its bits: the same value as __bfloat162float, which here left ptxas short of
// registers under the three-blocks-an-SM cap (it spilled).
template <typename T> __device__ inline float widen(T v) { return to_f(v); }
template <> __device__ inline float widen(__nv_bfloat16 v) {
  return __uint_as_float(uint32_t(__bfloat16_as_ushort(v)) << 16);
}

// Rows held as int in one buffer (y holds fewer than 2^31 rows; the launcher checks tokens * k,
// the rows read without row_of_pair), the settled ones being the first batch's, and a block row
// per token so that no thread divides: 80 registers a thread where the int64 rows and divisions
// took 128 (bf16), three blocks an SM instead of two. Each launch alone under Nsight Compute on an
// H200 (Qwen3 4096 tokens, 134 MB read): 41.3-41.4 us at 82% of the DRAM peak against 48.2-48.6 us
// at 70% (results/kernels/combine_occupancy_ab_869f534/).
template <typename T, int V>
__global__ void __launch_bounds__(kThreads, 3)
    combine_kernel(const T* y, const int64_t* row_of_pair, T* out, int64_t k, int64_t hidden, bool rows_settled) {
  allow_next_kernel();
  const int64_t token = blockIdx.x, col = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * V;
  const bool in_range = col < hidden;
  int row[kCombineBatch];
  const auto load_rows = [&](int64_t s0, bool settled) {
#pragma unroll
    for (int u = 0; u < kCombineBatch; ++u) {
      const int64_t s = s0 + u;
      row[u] = s >= k                   ? -1
               : row_of_pair == nullptr ? int(token * k + s)
               : settled                ? int(__ldcg(row_of_pair + token * k + s))
                                        : int(row_of_pair[token * k + s]);
    }
  };
  // Settled rows (written before the kernel before this one launched) are read before the wait,
  // from L2 (.cg), so their round trip overlaps the end of the kernel before.
  const bool early = rows_settled && row_of_pair != nullptr && in_range;
  if (early) load_rows(0, true);
  wait_for_previous_kernel();
  if (!in_range) return;
  float acc[V] = {};
  for (int64_t s0 = 0; s0 < k; s0 += kCombineBatch) {
    if (!(early && s0 == 0)) load_rows(s0, false);
    Pack<T, V> p[kCombineBatch];
#pragma unroll
    for (int u = 0; u < kCombineBatch; ++u)
      if (row[u] >= 0) p[u] = load_pack<T, V>(y + int64_t(row[u]) * hidden + col);
#pragma unroll
    for (int u = 0; u < kCombineBatch; ++u)
      if (row[u] >= 0)
#pragma unroll
        for (int j = 0; j < V; ++j) acc[j] += widen(p[u].v[j]);
  }
  Pack<T, V> o;
#pragma unroll
  for (int j = 0; j < V; ++j) o.v[j] = from_f<T>(acc[j]);
  store_pack<T, V>(out + token * hidden + col, o);
}

unsigned blocks_for(int64_t threads) { return unsigned((threads + kThreads - 1) / kThreads); }

// 16-byte packs when every row holds whole packs, else one element at a time.
template <typename T> constexpr int kWide = 16 / sizeof(T);

template <typename T>
cudaError_t launch_silu(const void* h, const float* w, void* out, int64_t rows, int64_t inter, cudaStream_t s) {
  if (rows * inter == 0) return cudaSuccess;
  const T* hp = static_cast<const T*>(h);
  T* op = static_cast<T*>(out);
  if (inter % kWide<T> == 0)
    return launch_chained(silu_mul_weight_kernel<T, kWide<T>>, dim3(blocks_for(rows * inter / kWide<T>)), dim3(kThreads),
                          0, s, hp, w, op, rows, inter);
  return launch_chained(silu_mul_weight_kernel<T, 1>, dim3(blocks_for(rows * inter)), dim3(kThreads), 0, s, hp, w, op,
                        rows, inter);
}

template <typename T>
cudaError_t launch_combine(const void* y, const int64_t* row_of_pair, void* out, int64_t tokens, int64_t k,
                           int64_t hidden, bool rows_settled, cudaStream_t s) {
  if (tokens * hidden == 0) return cudaSuccess;
  const T* yp = static_cast<const T*>(y);
  T* op = static_cast<T*>(out);
  if (tokens * k > INT32_MAX) return cudaErrorInvalidValue;  // the kernel holds pair rows as int
  if (hidden % kWide<T> == 0)
    return launch_chained(combine_kernel<T, kWide<T>>, dim3(unsigned(tokens), blocks_for(hidden / kWide<T>)),
                          dim3(kThreads), 0, s, yp, row_of_pair, op, k, hidden, rows_settled);
  return launch_chained(combine_kernel<T, 1>, dim3(unsigned(tokens), blocks_for(hidden)), dim3(kThreads), 0, s, yp,
                        row_of_pair, op, k, hidden, rows_settled);
}

}  // namespace

cudaError_t silu_mul_weight(Dtype dtype, const void* h, const float* w, void* out, int64_t rows, int64_t inter,
                            cudaStream_t stream) {
  return with_element_type(dtype, [&](auto e) { return launch_silu<typename decltype(e)::type>(h, w, out, rows, inter, stream); });
}

cudaError_t combine_pairs(Dtype dtype, const void* y, const int64_t* row_of_pair, void* out, int64_t tokens, int64_t k,
                          int64_t hidden, cudaStream_t stream, bool rows_settled) {
  return with_element_type(dtype, [&](auto e) {
    return launch_combine<typename decltype(e)::type>(y, row_of_pair, out, tokens, k, hidden, rows_settled, stream);
  });
}

}  // namespace lb::cuda
