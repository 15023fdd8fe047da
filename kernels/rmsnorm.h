#pragma once
#include <torch/torch.h>

namespace lb {

// RMSNorm as transformers computes it: normalize in fp32, cast back to the input dtype, then
// multiply by the weight (so the product happens in the activation dtype).
torch::Tensor rmsnorm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

}  // namespace lb
