#pragma once
// The MoE routers of the `--kernels fused` path: one CUDA kernel each (kernels/cuda/moe_routing.cu)
// on a GPU within its limits, else the plain LibTorch routers of kernels/moe.h, which are also the
// oracle they are tested against. The experts come in descending order of the score that chose
// them (for sigmoid grouped, the biased score).
#include "kernels/moe.h"

namespace lb {

Routing fused_route_softmax_topk(const torch::Tensor& logits, int64_t k, bool renormalize);

// Qwen3-MoE's router whole: logits = linear_fused(x, gate) (kernels/small_linear.h) and
// fused_route_softmax_topk of them, the logits returned in Routing::logits. For 1-4 rows on a GPU in
// bf16/f16 with at most 128 experts, one launch (kernels/cuda/moe_routing.h) with the same bits.
Routing fused_router_softmax_topk(const torch::Tensor& x, const torch::Tensor& gate, int64_t k, bool renormalize);

Routing fused_route_sigmoid_grouped(const torch::Tensor& logits, const torch::Tensor& correction_bias, int64_t n_group,
                                    int64_t topk_group, int64_t k, bool renormalize, double scale);

}  // namespace lb
