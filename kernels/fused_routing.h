#pragma once
// The MoE routers of the `--kernels fused` path: one CUDA kernel each (kernels/cuda/moe_routing.cu)
// on a GPU within its limits, else the plain LibTorch routers of kernels/moe.h, which are also the
// oracle they are tested against. The experts come in descending order of the score that chose
// them (for sigmoid grouped, the biased score).
#include "kernels/moe.h"

namespace lb {

Routing fused_route_softmax_topk(const torch::Tensor& logits, int64_t k, bool renormalize);

Routing fused_route_sigmoid_grouped(const torch::Tensor& logits, const torch::Tensor& correction_bias, int64_t n_group,
                                    int64_t topk_group, int64_t k, bool renormalize, double scale);

}  // namespace lb
