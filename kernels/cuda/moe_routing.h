#pragma once
// Launchers of the MoE routers as CUDA kernels (kernels/cuda/moe_routing.cu), one warp per token:
// the same choices and weights as route_softmax_topk and route_sigmoid_grouped (kernels/moe.h)
// without their chain of LibTorch launches. kernels/fused_routing.h wraps them.
#include "kernels/cuda/dtype.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// Limits of one warp per token: the row lives in shared memory, a lane holds a slot or a group.
constexpr int64_t kMaxRoutingExperts = 1024, kMaxRoutingSlots = 32, kMaxRoutingGroups = 32;

// Whether the kernels below take these sizes (the launchers return cudaErrorInvalidValue otherwise).
bool softmax_topk_fits(int64_t num_experts, int64_t k);
bool sigmoid_grouped_fits(int64_t num_experts, int64_t n_group, int64_t topk_group, int64_t k);

// Qwen3-MoE: softmax of logits [tokens, E] in fp32, the k largest (descending; the lower expert id
// first among equals), weights the probabilities, renormalized to sum 1 when asked.
cudaError_t route_softmax_topk(Dtype dtype, const void* logits, int64_t tokens, int64_t num_experts, int64_t k,
                               bool renormalize, int64_t* experts, float* weights, cudaStream_t stream);

// The router's product and route_softmax_topk in one launch, for 1 to kRouterMaxRows rows: logits
// [rows, E] = x [rows, K] . w [E, K]^T rounded to the dtype (the same bits as the matrix-vector
// kernel, gemv.h), then the experts and weights of each row (the same as route_softmax_topk on those
// logits). 16-bit dtypes, E <= kRouterMaxExperts, K a multiple of 8, pointers 16-byte aligned. A
// decode step at batch 1 spent two launches on this (about 3 + 5 us, H200).
constexpr int64_t kRouterMaxRows = 4, kRouterMaxExperts = 128;
bool router_topk_fits(Dtype dtype, int64_t rows, int64_t num_experts, int64_t K, int64_t k);
cudaError_t router_softmax_topk(Dtype dtype, const void* x, const void* w, int64_t rows, int64_t num_experts,
                                int64_t K, int64_t k, bool renormalize, void* logits, int64_t* experts,
                                float* weights, cudaStream_t stream);

// DeepSeek-V3: sigmoid scores plus bias [E] (fp32) choose: groups ranked by the sum of their two
// best biased scores, the best topk_group kept, then the k best biased experts among them
// (descending). Weights are the unbiased scores, renormalized (plus 1e-20) when asked, times scale.
cudaError_t route_sigmoid_grouped(Dtype dtype, const void* logits, const float* bias, int64_t tokens,
                                  int64_t num_experts, int64_t n_group, int64_t topk_group, int64_t k, bool renormalize,
                                  float scale, int64_t* experts, float* weights, cudaStream_t stream);

}  // namespace lb::cuda
