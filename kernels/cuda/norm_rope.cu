#include "kernels/cuda/norm_rope.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

namespace lb::cuda {

namespace {

// The sum of `v` over the block (blockDim.x a multiple of 32, at most 1024).
__device__ float block_sum(float v) {
  __shared__ float warp_sums[32];
  v = warp_sum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  v = lane < warps ? warp_sums[lane] : 0.0f;
  if (warp == 0) v = warp_sum(v);
  __shared__ float total;
  if (threadIdx.x == 0) total = v;
  __syncthreads();
  return total;
}

template <typename T>
__global__ void rmsnorm_kernel(const T* x, const T* residual, const T* w, T* h_out, T* y, int64_t cols, float eps) {
  allow_next_kernel();
  wait_for_previous_kernel();
  const int64_t row = blockIdx.x;
  const T* xr = x + row * cols;
  float sq = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = to_f(xr[c]);
    if (residual) {
      v = round_to<T>(v + to_f(residual[row * cols + c]));
      h_out[row * cols + c] = from_f<T>(v);
    }
    sq += v * v;
  }
  const float rstd = rsqrtf(block_sum(sq) / float(cols) + eps);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = residual ? to_f(h_out[row * cols + c]) : to_f(xr[c]);
    y[row * cols + c] = from_f<T>(to_f(w[c]) * round_to<T>(v * rstd));
  }
}

// The same, for rows whose 16-byte packs fit kNormPacks per thread: every load of the row is issued
// before the first use and the row stays in registers between the two passes. The loop above waits
// on memory once per element per pass, ~6 us for one row of 2048 (H200), where a decode step holds
// two such norms per layer.
constexpr int kNormPacks = 4;
constexpr int kNormThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kNormThreads)
    rmsnorm_packed_kernel(const T* x, const T* residual, const T* w, T* h_out, T* y, int64_t cols, float eps) {
  constexpr int V = 16 / int(sizeof(T));
  const int64_t row = blockIdx.x, packs = cols / V;
  // The norm weight is no earlier kernel's output: it loads while that kernel finishes.
  Pack<T, V> wp[kNormPacks];
#pragma unroll
  for (int k = 0; k < kNormPacks; ++k) {
    const int64_t p = threadIdx.x + int64_t(k) * blockDim.x;
    if (p < packs) wp[k] = load_pack<T, V>(w + p * V);
  }
  allow_next_kernel();
  wait_for_previous_kernel();
  float v[kNormPacks][V];
  float sq = 0.0f;
#pragma unroll
  for (int k = 0; k < kNormPacks; ++k) {
    const int64_t p = threadIdx.x + int64_t(k) * blockDim.x;
    if (p >= packs) break;
    const Pack<T, V> xp = load_pack<T, V>(x + row * cols + p * V);
    Pack<T, V> rp;
    if (residual) rp = load_pack<T, V>(residual + row * cols + p * V);
#pragma unroll
    for (int e = 0; e < V; ++e) {
      v[k][e] = residual ? round_to<T>(to_f(xp.v[e]) + to_f(rp.v[e])) : to_f(xp.v[e]);
      sq += v[k][e] * v[k][e];
    }
    if (residual) {
      Pack<T, V> hp;
#pragma unroll
      for (int e = 0; e < V; ++e) hp.v[e] = from_f<T>(v[k][e]);
      store_pack<T, V>(h_out + row * cols + p * V, hp);
    }
  }
  const float rstd = rsqrtf(block_sum(sq) / float(cols) + eps);
#pragma unroll
  for (int k = 0; k < kNormPacks; ++k) {
    const int64_t p = threadIdx.x + int64_t(k) * blockDim.x;
    if (p >= packs) break;
    Pack<T, V> out;
#pragma unroll
    for (int e = 0; e < V; ++e) out.v[e] = from_f<T>(to_f(wp[k].v[e]) * round_to<T>(v[k][e] * rstd));
    store_pack<T, V>(y + row * cols + p * V, out);
  }
}

// One block per (token, head) row (head sizes other than 64, 128 and 256); blockDim.x == dim
// rounded up to a warp multiple. Blocks
// 0 .. tokens * a.heads - 1 take head set a, the rest set b: Qwen3's q and k heads in one launch
// (the two sets share the token's cos and sin), each row with the same math as a launch of its own.
template <typename T> struct HeadSet {
  const T* x;
  int64_t x_stride;
  const T* w;
  T* y;
  int64_t heads;
};

template <typename T>
__global__ void qk_norm_rope_kernel(HeadSet<T> a, HeadSet<T> b, const T* cos, const T* sin, int64_t tokens,
                                    int64_t dim, float eps) {
  extern __shared__ float normed[];
  const bool in_a = blockIdx.x < tokens * a.heads;
  const HeadSet<T> set = in_a ? a : b;
  const int64_t row = in_a ? blockIdx.x : blockIdx.x - tokens * a.heads, token = row / set.heads;
  const int c = threadIdx.x;
  const float weight = c < dim ? to_f(set.w[c]) : 0.0f;  // a model weight: loaded before the wait
  allow_next_kernel();
  wait_for_previous_kernel();
  const float v = c < dim ? to_f(set.x[token * set.x_stride + (row % set.heads) * dim + c]) : 0.0f;
  const float rstd = rsqrtf(block_sum(v * v) / float(dim) + eps);
  if (c < dim) normed[c] = weight * round_to<T>(v * rstd);
  __syncthreads();
  if (c >= dim) return;
  const int64_t half = dim / 2;
  const float n = round_to<T>(normed[c]);
  const float rotated = c < half ? -round_to<T>(normed[c + half]) : round_to<T>(normed[c - half]);
  const float a_part = round_to<T>(n * to_f(cos[token * dim + c]));
  const float b_part = round_to<T>(rotated * to_f(sin[token * dim + c]));
  set.y[row * dim + c] = from_f<T>(a_part + b_part);
}

// The same rows, a warp each and kQkWarpRows a block: a prefill has tokens x heads rows (295
// thousand a layer for Qwen3 at 8192 tokens), and with a block a row (two barriers each) the GPU
// spent its time scheduling blocks, not moving bytes (1.43 ms of an 8192-token 4-layer prefill of
// 11.3 on an H200 at 7ff8315, for ~150 MB). Lane l holds elements l * E .. l * E + E - 1 (E = dim /
// 32), so an element's RoPE partner, half a row away, sits in lane l ^ 16. The rounding is the
// block kernel's; only the order of the sum of squares differs.
constexpr int kQkWarpRows = 8;

template <typename T, int E>
__global__ void __launch_bounds__(kQkWarpRows * 32)
    qk_norm_rope_warp_kernel(HeadSet<T> a, HeadSet<T> b, const T* cos, const T* sin, int64_t tokens, float eps,
                             QkCacheRows cache) {  // cache.k == nullptr: no cache
  constexpr int kDim = 32 * E;
  const int lane = threadIdx.x % 32;
  const int64_t rows_a = tokens * a.heads, rows = rows_a + tokens * b.heads;
  const int64_t any_row = int64_t(blockIdx.x) * kQkWarpRows + threadIdx.x / 32;  // the same on a warp's lanes
  if (any_row >= rows) {  // with a cache: the warps past the q and k rows copy one value row each
    const int64_t value_row = any_row - rows;
    allow_next_kernel();
    wait_for_previous_kernel();
    if (cache.k == nullptr || value_row >= tokens * b.heads) return;
    const int64_t token = value_row / b.heads, head = value_row % b.heads, to = cache.at[token];
    if (to < 0 || to >= cache.rows) return;
    const T* from = static_cast<const T*>(cache.v_src) + token * cache.v_stride + head * kDim + lane * E;
    T* into = static_cast<T*>(cache.v) + (to * b.heads + head) * kDim + lane * E;
#pragma unroll
    for (int e = 0; e < E; ++e) into[e] = from[e];
    return;
  }
  const bool in_a = any_row < rows_a;
  const HeadSet<T> set = in_a ? a : b;
  const int64_t row = in_a ? any_row : any_row - rows_a;
  float weight[E];
#pragma unroll
  for (int e = 0; e < E; ++e) weight[e] = to_f(set.w[lane * E + e]);  // a model weight: before the wait
  allow_next_kernel();
  wait_for_previous_kernel();
  const int64_t token = row / set.heads;
  // A key row also goes to its cache row (none without a cache, or outside it).
  const int64_t to = !in_a && cache.k != nullptr ? cache.at[token] : -1;
  T* cached =
      to >= 0 && to < cache.rows ? static_cast<T*>(cache.k) + (to * b.heads + row % b.heads) * kDim + lane * E : nullptr;
  const T* x = set.x + token * set.x_stride + (row % set.heads) * kDim + lane * E;
  float v[E];
  float squares = 0.0f;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    v[e] = to_f(x[e]);
    squares += v[e] * v[e];
  }
  const float rstd = rsqrtf(warp_sum(squares) / float(kDim) + eps);
  T* y = set.y + row * kDim + lane * E;
  const T* cos_row = cos + token * kDim + lane * E;
  const T* sin_row = sin + token * kDim + lane * E;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const float normed = weight[e] * round_to<T>(v[e] * rstd);
    const float partner = __shfl_xor_sync(0xffffffffu, normed, 16);
    const float rotated = lane < 16 ? -round_to<T>(partner) : round_to<T>(partner);
    const float a_part = round_to<T>(round_to<T>(normed) * to_f(cos_row[e]));
    const float b_part = round_to<T>(rotated * to_f(sin_row[e]));
    y[e] = from_f<T>(a_part + b_part);
    if (cached) cached[e] = y[e];
  }
}

int threads_for(int64_t cols) {
  const int64_t t = cols < 1024 ? ((cols + 31) / 32) * 32 : 1024;
  return int(t < 32 ? 32 : t);
}

template <typename T>
cudaError_t launch_rmsnorm(const void* x, const void* r, const void* w, void* h, void* y, int64_t rows, int64_t cols,
                           float eps, cudaStream_t s) {
  if (rows == 0) return cudaSuccess;
  constexpr int V = 16 / int(sizeof(T));
  const auto aligned = [](const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const int64_t packs = cols / V;
  if (cols % V == 0 && packs <= int64_t(kNormThreads) * kNormPacks && aligned(x) && aligned(r) && aligned(w) &&
      aligned(h) && aligned(y)) {
    const int threads = threads_for((packs + kNormPacks - 1) / kNormPacks);
    return launch_chained(rmsnorm_packed_kernel<T>, dim3(unsigned(rows)), dim3(unsigned(threads)), 0, s,
                          static_cast<const T*>(x), static_cast<const T*>(r), static_cast<const T*>(w),
                          static_cast<T*>(h), static_cast<T*>(y), cols, eps);
  }
  const int threads = threads_for(cols < 256 ? cols : 256);
  return launch_chained(rmsnorm_kernel<T>, dim3(unsigned(rows)), dim3(unsigned(threads)), 0, s, static_cast<const T*>(x),
                        static_cast<const T*>(r), static_cast<const T*>(w), static_cast<T*>(h), static_cast<T*>(y),
                        cols, eps);
}

template <typename T> HeadSet<T> typed(const QkHeads& h) {
  return {static_cast<const T*>(h.x), h.x_stride, static_cast<const T*>(h.w), static_cast<T*>(h.y), h.heads};
}

template <typename T>
cudaError_t launch_qk(const QkHeads& a, const QkHeads& b, const void* c, const void* sn, int64_t tokens, int64_t dim,
                      float eps, cudaStream_t s, const QkCacheRows* cache = nullptr) {
  if (dim > 1024 || dim % 2 || a.heads < 0 || b.heads < 0) return cudaErrorInvalidValue;
  // With a cache, one more warp per value row copies it.
  const int64_t rows = tokens * (a.heads + b.heads) + (cache ? tokens * b.heads : 0);
  if (rows == 0) return cudaSuccess;
  if (rows > int64_t(INT32_MAX)) return cudaErrorInvalidValue;
  const QkCacheRows to_cache = cache ? *cache : QkCacheRows{nullptr, nullptr, nullptr, 0, nullptr, 0};
  const auto warps = [&](auto kernel) {
    return launch_chained(kernel, dim3(unsigned((rows + kQkWarpRows - 1) / kQkWarpRows)), dim3(kQkWarpRows * 32), 0,
                          s, typed<T>(a), typed<T>(b), static_cast<const T*>(c), static_cast<const T*>(sn), tokens, eps,
                          to_cache);
  };
  if (cache && !qk_norm_rope_to_cache_fits(dim)) return cudaErrorInvalidValue;
  switch (dim) {  // Qwen3's heads are 128 wide
    case 64: return warps(qk_norm_rope_warp_kernel<T, 2>);
    case 128: return warps(qk_norm_rope_warp_kernel<T, 4>);
    case 256: return warps(qk_norm_rope_warp_kernel<T, 8>);
    default: break;
  }
  return launch_chained(qk_norm_rope_kernel<T>, dim3(unsigned(rows)), dim3(unsigned(threads_for(dim))),
                        dim * sizeof(float), s, typed<T>(a), typed<T>(b), static_cast<const T*>(c),
                        static_cast<const T*>(sn), tokens, dim, eps);
}

}  // namespace

cudaError_t rmsnorm(Dtype dtype, const void* x, const void* residual, const void* w, void* h_out, void* y, int64_t rows,
                    int64_t cols, float eps, cudaStream_t stream) {
  return with_element_type(
      dtype, [&](auto e) { return launch_rmsnorm<typename decltype(e)::type>(x, residual, w, h_out, y, rows, cols, eps, stream); });
}

cudaError_t qk_norm_rope(Dtype dtype, const void* x, int64_t x_stride, const void* w, const void* cos, const void* sin,
                         void* y, int64_t tokens, int64_t heads, int64_t dim, float eps, cudaStream_t stream) {
  return qk_norm_rope_pair(dtype, {x, x_stride, w, y, heads}, {nullptr, 0, nullptr, nullptr, 0}, cos, sin, tokens, dim,
                           eps, stream);
}

cudaError_t qk_norm_rope_pair(Dtype dtype, const QkHeads& a, const QkHeads& b, const void* cos, const void* sin,
                              int64_t tokens, int64_t dim, float eps, cudaStream_t stream) {
  return with_element_type(dtype, [&](auto e) {
    return launch_qk<typename decltype(e)::type>(a, b, cos, sin, tokens, dim, eps, stream);
  });
}

bool qk_norm_rope_to_cache_fits(int64_t dim) { return dim == 64 || dim == 128 || dim == 256; }

cudaError_t qk_norm_rope_pair_to_cache(Dtype dtype, const QkHeads& a, const QkHeads& b, const void* cos,
                                       const void* sin, const QkCacheRows& cache, int64_t tokens, int64_t dim,
                                       float eps, cudaStream_t stream) {
  if (cache.k == nullptr || cache.v == nullptr || cache.v_src == nullptr || cache.at == nullptr) return cudaErrorInvalidValue;
  return with_element_type(dtype, [&](auto e) {
    return launch_qk<typename decltype(e)::type>(a, b, cos, sin, tokens, dim, eps, stream, &cache);
  });
}

}  // namespace lb::cuda
