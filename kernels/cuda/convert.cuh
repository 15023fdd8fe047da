#pragma once
// Device-side conversions shared by the kernels: every kernel computes in fp32 and rounds to the
// tensor's dtype where the LibTorch op it replaces would.
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

}  // namespace lb::cuda
