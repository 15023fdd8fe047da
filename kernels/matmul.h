#pragma once
// Products of 16-bit tensors accumulated in fp32 on every device, as GPU GEMMs do. LibTorch 1.13's
// CPU kernels accumulate a product whose second operand is not transposed in the 16-bit type on
// CPUs without AVX-512 BF16 (an AMD EPYC with AVX2: bf16 relative error 0.036 at an inner size of
// 1024 against 0.0017 for the transposed case), which made bf16 checks on CPU ranks depend on the
// machine: a layout that splits the keys differently from the reference failed by 2x.
#include <torch/torch.h>

namespace lb {

// torch::matmul(a, b), in fp32 and rounded back to a's dtype where a is a 16-bit CPU tensor.
torch::Tensor matmul_acc32(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace lb
