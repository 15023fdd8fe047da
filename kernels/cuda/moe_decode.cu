#include "kernels/cuda/moe_decode.h"

#include "kernels/cuda/convert.cuh"

namespace lb::cuda {

namespace {

constexpr int kWarps = 4;  // output rows per block, one per warp
constexpr int kChunk = 8;  // pairs accumulated against one pass over the weight row

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Block (row tile, expert). With kGateUp the warp reads gate row `row` and up row `inter + row`
// and writes act; otherwise down row `row` and writes y. Inputs are token rows of x (kGateUp,
// pair id / k) or rows of act (the sorted position).
template <typename T, bool kGateUp>
__global__ void decode_kernel(const T* in, const T* weight, const int64_t* order, const int64_t* offsets,
                              const float* pair_weight, T* out, int64_t out_cols, int64_t K, int64_t k) {
  constexpr int V = 16 / sizeof(T);
  const int64_t e = blockIdx.y, begin = offsets[e], end = offsets[e + 1];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kWarps + warp;
  if (begin == end || row >= out_cols) return;
  const int64_t rows_per_expert = kGateUp ? 2 * out_cols : out_cols;
  const T* w0 = weight + (e * rows_per_expert + row) * K;
  const T* w1 = w0 + out_cols * K;  // the up row (kGateUp only)
  for (int64_t first = begin; first < end; first += kChunk) {
    const int n = int(end - first < kChunk ? end - first : kChunk);
    const T* x[kChunk];
#pragma unroll
    for (int p = 0; p < kChunk; ++p) {
      const int64_t i = first + (p < n ? p : 0);
      x[p] = in + (kGateUp ? order[i] / k : i) * K;
    }
    float a0[kChunk] = {}, a1[kChunk] = {};
#pragma unroll 2
    for (int64_t c = int64_t(lane) * V; c < K; c += 32 * V) {
      const Pack<T, V> g = load_pack<T, V>(w0 + c);
      Pack<T, V> u;
      if (kGateUp) u = load_pack<T, V>(w1 + c);
#pragma unroll
      for (int p = 0; p < kChunk; ++p) {
        if (p >= n) break;
        const Pack<T, V> xv = load_pack<T, V>(x[p] + c);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const float xf = to_f(xv.v[j]);
          a0[p] += to_f(g.v[j]) * xf;
          if (kGateUp) a1[p] += to_f(u.v[j]) * xf;
        }
      }
    }
#pragma unroll
    for (int p = 0; p < kChunk; ++p) {
      if (p >= n) break;  // n is the same across the warp: the shuffles stay converged
      const float gate = warp_sum(a0[p]);
      const float up = kGateUp ? warp_sum(a1[p]) : 0.0f;
      if (lane != p) continue;
      if (kGateUp)
        out[(first + p) * out_cols + row] = from_f<T>(gate / (1.0f + __expf(-gate)) * up * pair_weight[order[first + p]]);
      else
        out[(first + p) * out_cols + row] = from_f<T>(gate);
    }
  }
}

template <typename T, bool kGateUp>
cudaError_t launch(const void* in, const void* weight, const int64_t* order, const int64_t* offsets,
                   const float* pair_weight, void* out, int64_t experts, int64_t out_cols, int64_t K, int64_t k,
                   cudaStream_t s) {
  if (experts == 0 || out_cols == 0) return cudaSuccess;
  if (K % (16 / sizeof(T)) != 0 || experts > 65535) return cudaErrorInvalidValue;
  const dim3 grid(unsigned((out_cols + kWarps - 1) / kWarps), unsigned(experts));
  decode_kernel<T, kGateUp><<<grid, kWarps * 32, 0, s>>>(static_cast<const T*>(in), static_cast<const T*>(weight),
                                                         order, offsets, pair_weight, static_cast<T*>(out), out_cols,
                                                         K, k);
  return cudaGetLastError();
}

}  // namespace

cudaError_t moe_decode_gate_up(Dtype dtype, const void* x, const void* gate_up, const int64_t* order,
                               const int64_t* offsets, const float* pair_weight, void* act, int64_t experts,
                               int64_t inter, int64_t hidden, int64_t k, cudaStream_t stream) {
  switch (dtype) {
    case Dtype::F32:
      return launch<float, true>(x, gate_up, order, offsets, pair_weight, act, experts, inter, hidden, k, stream);
    case Dtype::BF16:
      return launch<__nv_bfloat16, true>(x, gate_up, order, offsets, pair_weight, act, experts, inter, hidden, k, stream);
    case Dtype::F16:
      return launch<__half, true>(x, gate_up, order, offsets, pair_weight, act, experts, inter, hidden, k, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t moe_decode_down(Dtype dtype, const void* act, const void* down, const int64_t* offsets, void* y,
                            int64_t experts, int64_t hidden, int64_t inter, cudaStream_t stream) {
  switch (dtype) {
    case Dtype::F32: return launch<float, false>(act, down, nullptr, offsets, nullptr, y, experts, hidden, inter, 1, stream);
    case Dtype::BF16:
      return launch<__nv_bfloat16, false>(act, down, nullptr, offsets, nullptr, y, experts, hidden, inter, 1, stream);
    case Dtype::F16: return launch<__half, false>(act, down, nullptr, offsets, nullptr, y, experts, hidden, inter, 1, stream);
  }
  return cudaErrorInvalidValue;
}

int moe_decode_alignment(Dtype dtype) { return dtype == Dtype::F32 ? 4 : 8; }

}  // namespace lb::cuda
