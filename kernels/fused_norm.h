#pragma once
// RMSNorm, residual-add + RMSNorm, and Qwen3's per-head q/k RMSNorm + RoPE, each one CUDA kernel
// on a GPU (kernels/cuda/norm_rope.cu) for `--kernels fused`; on the CPU, and in builds without
// CUDA, the plain ops they replace. Same results as rmsnorm() and apply_rope() up to rounding.
#include "kernels/rope.h"

#include <torch/torch.h>

#include <utility>

namespace lb {

torch::Tensor rmsnorm_fused(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// h = x + residual and rmsnorm(h): returns {h, normed}.
std::pair<torch::Tensor, torch::Tensor> add_rmsnorm_fused(const torch::Tensor& x, const torch::Tensor& residual,
                                                          const torch::Tensor& weight, double eps);

// add_rmsnorm_fused with `fused`, else the plain x + residual and rmsnorm(): the model code's one
// call for both paths.
std::pair<torch::Tensor, torch::Tensor> add_rmsnorm(const torch::Tensor& x, const torch::Tensor& residual,
                                                    const torch::Tensor& weight, double eps, bool fused);

// x [T, heads, dim]: apply_rope(rmsnorm(x, weight, eps), cs, /*interleaved=*/false).
torch::Tensor qk_norm_rope_fused(const torch::Tensor& x, const torch::Tensor& weight, const CosSin& cs, double eps);

// {qk_norm_rope_fused(q, q_weight, ...), qk_norm_rope_fused(k, k_weight, ...)}: on a GPU one kernel
// launch for both (q [T, Hq, dim] and k [T, Hk, dim], the same values as two calls).
std::pair<torch::Tensor, torch::Tensor> qk_norm_rope_pair_fused(const torch::Tensor& q, const torch::Tensor& q_weight,
                                                                const torch::Tensor& k, const torch::Tensor& k_weight,
                                                                const CosSin& cs, double eps);

}  // namespace lb
