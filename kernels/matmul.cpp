#include "kernels/matmul.h"

namespace lb {

torch::Tensor matmul_acc32(const torch::Tensor& a, const torch::Tensor& b) {
  const bool half = a.scalar_type() == torch::kBFloat16 || a.scalar_type() == torch::kHalf;
  if (a.is_cuda() || !half) return torch::matmul(a, b);
  return torch::matmul(a.to(torch::kFloat32), b.to(torch::kFloat32)).to(a.scalar_type());
}

}  // namespace lb
