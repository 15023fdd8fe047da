#pragma once
// torch::linear for the few rows of a decode step: on a GPU, in bf16 or f16, with at most
// cuda::kGemvMaxRows (4) rows and a weight of at most 32 MB, one matrix-vector kernel
// (kernels/cuda/gemv.cu); otherwise, and on the CPU, torch::linear itself. fp32
// accumulation either way, so the two differ only in rounding order.
#include <torch/torch.h>

namespace lb {

// x [rows, k], weight [n, k] (no bias) -> [rows, n]. The kernel reads `weight` before the kernel
// before it on the stream has ended: pass weights, not a tensor computed just before.
torch::Tensor linear_fused(const torch::Tensor& x, const torch::Tensor& weight);

// linear_fused with `fused`, else torch::linear: the model code's one call for both paths.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, bool fused);

// torch::linear(x, weight) copied to fp32 (a model's logits). With `fused` and x's few rows on a
// GPU, one kernel writes the fp32 rows, with no size limit on weights whose rows stream
// (cuda::gemv_streams): a vocabulary head read once per decode step.
torch::Tensor linear_to_f32(const torch::Tensor& x, const torch::Tensor& weight, bool fused);

// Whether linear_fused runs the kernel for these inputs.
bool linear_fused_uses_kernel(const torch::Tensor& x, const torch::Tensor& weight);

}  // namespace lb
