#include "kernels/cuda/moe_routing.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

#include <cooperative_groups.h>

namespace lb::cuda {

namespace {

constexpr int kWarps = 4;  // tokens per block

// Each lane's (best, at) becomes the warp's largest best, with the lowest `at` among equals.
__device__ inline void warp_argmax_reduce(float& best, int& at) {
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, best, o);
    const int other_at = __shfl_xor_sync(0xffffffffu, at, o);
    if (other > best || (other == best && other_at < at)) best = other, at = other_at;
  }
}

// The largest of row[0 .. n) over the warp, and the lowest index holding it; every lane gets both.
// `at` stays n when every entry is -inf.
__device__ inline void warp_argmax(const float* row, int n, float& best, int& at) {
  best = -INFINITY;
  at = n;
  for (int i = threadIdx.x % 32; i < n; i += 32)
    if (row[i] > best) best = row[i], at = i;
  warp_argmax_reduce(best, at);
}

// Takes the k largest entries of row[0 .. n) in descending order (setting each to -inf),
// writes their ids to experts[0 .. k) and returns on lane j the weight_of(score, id) of pick j;
// `sum` gets the sum of the k weights on every lane.
template <typename WeightOf>
__device__ inline float take_top_k(float* row, int n, int k, int64_t* experts, WeightOf weight_of, float& sum) {
  const int lane = threadIdx.x % 32;
  float mine = 0;
  sum = 0;
  for (int j = 0; j < k; ++j) {
    float best;
    int at;
    warp_argmax(row, n, best, at);
    const float w = weight_of(best, at);
    sum += w;
    if (lane == j) {
      mine = w;
      experts[j] = at;
    }
    if (lane == at % 32) row[at] = -INFINITY;
    __syncwarp();
  }
  return mine;
}

// Qwen3's routing of one row held in shared memory, on one warp: the softmax over row[0 .. E) in
// fp32, the k most probable experts (the row is overwritten), their probabilities, renormalized to
// sum 1 when asked.
__device__ inline void softmax_topk_row(float* row, int E, int k, bool renormalize, int64_t* experts, float* weights) {
  const int lane = threadIdx.x % 32;
  float top = -INFINITY;
  for (int i = lane; i < E; i += 32) top = fmaxf(top, row[i]);
  top = warp_max(top);
  float total = 0;
  for (int i = lane; i < E; i += 32) total += expf(row[i] - top);
  total = warp_sum(total);
  __syncwarp();
  float picked;  // lane j keeps slot j's probability
  const float mine = take_top_k(row, E, k, experts, [&](float logit, int) { return expf(logit - top) / total; }, picked);
  if (lane < k) weights[lane] = renormalize ? mine / picked : mine;
}

template <typename T>
__global__ void softmax_topk_kernel(const T* logits, int64_t tokens, int E, int k, bool renormalize, int64_t* experts,
                                    float* weights) {
  allow_next_kernel();
  wait_for_previous_kernel();
  __shared__ float rows[kWarps][kMaxRoutingExperts];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = int64_t(blockIdx.x) * kWarps + warp;
  if (t >= tokens) return;  // a whole warp: no block-wide barrier follows
  float* row = rows[warp];
  for (int i = lane; i < E; i += 32) row[i] = to_f(logits[t * E + i]);
  __syncwarp();
  softmax_topk_row(row, E, k, renormalize, experts + t * k, weights + t * k);
}

template <typename T>
__global__ void sigmoid_grouped_kernel(const T* logits, const float* bias, int64_t tokens, int E, int n_group,
                                       int topk_group, int k, bool renormalize, float scale, int64_t* experts,
                                       float* weights) {
  allow_next_kernel();
  wait_for_previous_kernel();
  __shared__ float rows[kWarps][kMaxRoutingExperts];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = int64_t(blockIdx.x) * kWarps + warp;
  if (t >= tokens) return;
  float* row = rows[warp];  // biased scores; the unchosen become -inf
  for (int i = lane; i < E; i += 32) row[i] = 1.0f / (1.0f + expf(-to_f(logits[t * E + i]))) + bias[i];
  __syncwarp();
  // Lane g scores group g by its two best; the topk_group best lanes are the chosen groups.
  const int size = E / n_group;
  float group = -INFINITY;
  if (lane < n_group) {
    float first = -INFINITY, second = -INFINITY;
    for (int i = lane * size; i < (lane + 1) * size; ++i) {
      if (row[i] > first) second = first, first = row[i];
      else if (row[i] > second) second = row[i];
    }
    group = first + second;
  }
  bool chosen = false;
  for (int j = 0; j < topk_group; ++j) {
    float best = group;
    int at = lane < n_group ? lane : 32;
    warp_argmax_reduce(best, at);
    if (lane == at) chosen = true, group = -INFINITY;
  }
  const unsigned groups = __ballot_sync(0xffffffffu, chosen);
  for (int i = lane; i < E; i += 32)
    if (!(groups >> (i / size) & 1u)) row[i] = -INFINITY;
  __syncwarp();
  // Chosen by the biased score, weighted by the unbiased one.
  float picked;
  const float mine = take_top_k(
      row, E, k, experts + t * k, [&](float, int at) { return 1.0f / (1.0f + expf(-to_f(logits[t * E + at]))); }, picked);
  if (lane < k) weights[t * k + lane] = (renormalize ? mine / (picked + 1e-20f) : mine) * scale;
}

// The router and its top-k: one cluster of kRouterBlocks blocks, a warp per expert (each of the
// kRouterWarps warps of block b takes expert b * kRouterWarps + warp), every lane holding kRouterUnroll
// 16-byte packs of the expert's weight row in flight, summed in the matrix-vector kernel's order. Each
// block keeps its experts' logits in shared memory; after a cluster barrier block 0 reads them all
// through distributed shared memory and warp m routes row m as softmax_topk_kernel does.
constexpr int kRouterBlocks = 8, kRouterWarps = 16, kRouterUnroll = 8;
static_assert(kRouterBlocks * kRouterWarps == kRouterMaxExperts, "an expert per warp of the cluster");

template <typename T, int M>
__global__ void __launch_bounds__(kRouterWarps * 32)
    router_topk_kernel(const T* x, const T* w, int64_t K, int E, int k, bool renormalize, T* logits, int64_t* experts,
                       float* weights) {
  namespace cg = cooperative_groups;
  __shared__ float own[kRouterWarps][M];      // this block's experts, each row's logit
  __shared__ float rows[M][kRouterMaxExperts];  // block 0: every expert's logit, per row
  const cg::cluster_group cluster = cg::this_cluster();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, block = int(cluster.block_rank());
  const int expert = block * kRouterWarps + warp;
  const int64_t packs = K / 8;
  const uint4* row = reinterpret_cast<const uint4*>(w + int64_t(expert < E ? expert : 0) * K);
  allow_next_kernel();
  float acc[M] = {};
  for (int64_t first = 0; first < packs; first += 32 * kRouterUnroll) {
    uint4 loaded[kRouterUnroll];
#pragma unroll
    for (int u = 0; u < kRouterUnroll; ++u) {
      const int64_t p = first + u * 32 + lane;
      loaded[u] = p < packs && expert < E ? load_streaming(row + p) : make_uint4(0, 0, 0, 0);
    }
    if (first == 0) wait_for_previous_kernel();  // the weights are no earlier kernel's output; x is
#pragma unroll
    for (int u = 0; u < kRouterUnroll; ++u) {
      const int64_t p = first + u * 32 + lane;
      if (p >= packs) continue;
      const Pack<T, 8> wp = *reinterpret_cast<const Pack<T, 8>*>(&loaded[u]);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const Pack<T, 8> xs = load_pack<T, 8>(x + m * K + p * 8);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[m] += to_f(wp.v[e]) * to_f(xs.v[e]);
      }
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const T rounded = from_f<T>(warp_sum(acc[m]));
    if (lane == 0) {
      own[warp][m] = to_f(rounded);
      if (expert < E) logits[m * E + expert] = rounded;
    }
  }
  cluster.sync();  // every block's logits are in its shared memory
  if (block == 0)
    for (int i = threadIdx.x; i < M * kRouterMaxExperts; i += blockDim.x) {
      const int m = i / kRouterMaxExperts, e = i % kRouterMaxExperts;
      const float* remote = cluster.map_shared_rank(&own[0][0], e / kRouterWarps);
      rows[m][e] = remote[(e % kRouterWarps) * M + m];
    }
  cluster.sync();  // block 0 has read them: the other blocks may end
  if (block != 0 || warp >= M) return;
  softmax_topk_row(rows[warp], E, k, renormalize, experts + int64_t(warp) * k, weights + int64_t(warp) * k);
}

template <typename T, int M>
cudaError_t launch_router(const void* x, const void* w, int64_t E, int64_t K, int64_t k, bool renormalize, void* logits,
                          int64_t* experts, float* weights, cudaStream_t stream) {
  cudaLaunchAttribute attributes[2] = {};
  attributes[0].id = cudaLaunchAttributeClusterDimension;
  attributes[0].val.clusterDim.x = kRouterBlocks;
  attributes[0].val.clusterDim.y = 1;
  attributes[0].val.clusterDim.z = 1;
  attributes[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attributes[1].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(kRouterBlocks);
  config.blockDim = dim3(kRouterWarps * 32);
  config.stream = stream;
  config.attrs = attributes;
  config.numAttrs = chained_launch_enabled() ? 2 : 1;
  return cudaLaunchKernelEx(&config, router_topk_kernel<T, M>, static_cast<const T*>(x), static_cast<const T*>(w), K,
                            int(E), int(k), renormalize, static_cast<T*>(logits), experts, weights);
}

unsigned blocks(int64_t tokens) { return unsigned((tokens + kWarps - 1) / kWarps); }

}  // namespace

bool softmax_topk_fits(int64_t num_experts, int64_t k) {
  return num_experts >= 1 && num_experts <= kMaxRoutingExperts && k >= 1 && k <= kMaxRoutingSlots && k <= num_experts;
}

bool sigmoid_grouped_fits(int64_t num_experts, int64_t n_group, int64_t topk_group, int64_t k) {
  return softmax_topk_fits(num_experts, k) && n_group >= 1 && n_group <= kMaxRoutingGroups &&
         num_experts % n_group == 0 && num_experts / n_group >= 2 && topk_group >= 1 && topk_group <= n_group &&
         k <= topk_group * (num_experts / n_group);
}

bool router_topk_fits(Dtype dtype, int64_t rows, int64_t num_experts, int64_t K, int64_t k) {
  return dtype != Dtype::F32 && rows >= 1 && rows <= kRouterMaxRows && num_experts >= 1 &&
         num_experts <= kRouterMaxExperts && K > 0 && K % 8 == 0 && softmax_topk_fits(num_experts, k);
}

cudaError_t router_softmax_topk(Dtype dtype, const void* x, const void* w, int64_t rows, int64_t num_experts,
                                int64_t K, int64_t k, bool renormalize, void* logits, int64_t* experts,
                                float* weights, cudaStream_t stream) {
  if (!router_topk_fits(dtype, rows, num_experts, K, k)) return cudaErrorInvalidValue;
  return with_element_type(dtype, [&](auto e) -> cudaError_t {
    using T = typename decltype(e)::type;
    if constexpr (sizeof(T) != 2) {
      return cudaErrorInvalidValue;
    } else {
      switch (rows) {
        case 1: return launch_router<T, 1>(x, w, num_experts, K, k, renormalize, logits, experts, weights, stream);
        case 2: return launch_router<T, 2>(x, w, num_experts, K, k, renormalize, logits, experts, weights, stream);
        case 3: return launch_router<T, 3>(x, w, num_experts, K, k, renormalize, logits, experts, weights, stream);
        default: return launch_router<T, 4>(x, w, num_experts, K, k, renormalize, logits, experts, weights, stream);
      }
    }
  });
}

cudaError_t route_softmax_topk(Dtype dtype, const void* logits, int64_t tokens, int64_t num_experts, int64_t k,
                               bool renormalize, int64_t* experts, float* weights, cudaStream_t stream) {
  if (!softmax_topk_fits(num_experts, k)) return cudaErrorInvalidValue;
  if (tokens == 0) return cudaSuccess;
  const int E = int(num_experts), K = int(k);
  return with_element_type(dtype, [&](auto e) {
    using T = typename decltype(e)::type;
    return launch_chained(softmax_topk_kernel<T>, dim3(blocks(tokens)), dim3(kWarps * 32), 0, stream,
                          static_cast<const T*>(logits), tokens, E, K, renormalize, experts, weights);
  });
}

cudaError_t route_sigmoid_grouped(Dtype dtype, const void* logits, const float* bias, int64_t tokens,
                                  int64_t num_experts, int64_t n_group, int64_t topk_group, int64_t k, bool renormalize,
                                  float scale, int64_t* experts, float* weights, cudaStream_t stream) {
  if (!sigmoid_grouped_fits(num_experts, n_group, topk_group, k)) return cudaErrorInvalidValue;
  if (tokens == 0) return cudaSuccess;
  const int E = int(num_experts), G = int(n_group), TG = int(topk_group), K = int(k);
  return with_element_type(dtype, [&](auto e) {
    using T = typename decltype(e)::type;
    return launch_chained(sigmoid_grouped_kernel<T>, dim3(blocks(tokens)), dim3(kWarps * 32), 0, stream,
                          static_cast<const T*>(logits), bias, tokens, E, G, TG, K, renormalize, scale, experts,
                          weights);
  });
}

}  // namespace lb::cuda
