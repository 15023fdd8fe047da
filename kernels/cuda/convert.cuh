#pragma once
// Device-side helpers shared by the kernels: conversions (every kernel computes in fp32 and rounds
// to the tensor's dtype where the LibTorch op it replaces would), packed loads and warp sums.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace lb::cuda {

template <typename T> __device__ inline float to_f(T v);
template <> __device__ inline float to_f(float v) { return v; }
template <> __device__ inline float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ inline float to_f(__half v) { return __half2float(v); }
template <typename T> __device__ inline T from_f(float v);
template <> __device__ inline float from_f(float v) { return v; }
template <> __device__ inline __nv_bfloat16 from_f(float v) { return __float2bfloat16(v); }
template <> __device__ inline __half from_f(float v) { return __float2half(v); }
// A value rounded to T and read back, as a LibTorch op in dtype T leaves it.
template <typename T> __device__ inline float round_to(float v) { return to_f<T>(from_f<T>(v)); }

// SiLU(g) = g / (1 + e^-g), every fused kernel's: the division approximate (2 ulp in fp32; the
// result is rounded to 16 bits after its products), which drops the IEEE division's check and
// slow path from each unrolled epilogue element: the wide gate/up kernel's code 91 KB against
// 126, its launch at Qwen3 1024 / 2048 tokens 220.5-225.9 / 288.4-293.8 us against 226.5-230.8 /
// 293.4-299.7 (H200, results/kernels/silu_fast_ab_68feb58/).
__device__ inline float silu(float g) { return __fdividef(g, 1.0f + __expf(-g)); }

// V consecutive elements moved as one aligned load or store (16 bytes when V * sizeof(T) == 16).
template <typename T, int V> struct alignas(sizeof(T) * V) Pack {
  T v[V];
};
template <typename T, int V> __device__ inline Pack<T, V> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}
template <typename T, int V> __device__ inline void store_pack(T* p, const Pack<T, V>& x) {
  *reinterpret_cast<Pack<T, V>*>(p) = x;
}

// 16 bytes of weights, which a kernel reads once: kept out of L1, where reused data stays.
__device__ inline uint4 load_streaming(const uint4* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// The sum (max) of v over the 32 lanes of a warp, on every lane, in one fixed order.
__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// acc[m][r] += w[m][r] . x over the V elements of one pack, in fp32: M x R weight packs applied to
// one input pack, so that each input value loaded serves every row.
template <typename T, int V, int M, int R>
__device__ inline void dot_packs(float (&acc)[M][R], const Pack<T, V> (&w)[M][R], const Pack<T, V>& x) {
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const float xf = to_f(x.v[j]);
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
      for (int r = 0; r < R; ++r) acc[m][r] += to_f(w[m][r].v[j]) * xf;
  }
}

}  // namespace lb::cuda
