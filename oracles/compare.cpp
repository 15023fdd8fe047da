#include "oracles/compare.h"

#include <limits>
#include <stdexcept>

namespace lb {

TensorDiff compare_tensors(const torch::Tensor& actual, const torch::Tensor& reference) {
  if (actual.sizes() != reference.sizes())
    throw std::invalid_argument("compare_tensors: shapes differ");
  torch::Tensor a = actual.to(torch::kCPU, torch::kFloat64).flatten();
  torch::Tensor b = reference.to(torch::kCPU, torch::kFloat64).flatten();
  TensorDiff d;
  d.finite = torch::isfinite(a).all().item<bool>() && torch::isfinite(b).all().item<bool>();
  torch::Tensor diff = a - b;
  d.max_abs = diff.numel() ? diff.abs().max().item<double>() : 0.0;
  const double ref_norm = b.norm().item<double>();
  const double diff_norm = diff.norm().item<double>();
  d.rel_l2 = ref_norm > 0 ? diff_norm / ref_norm : diff_norm;
  const double denom = a.norm().item<double>() * ref_norm;
  d.cosine = denom > 0 ? a.dot(b).item<double>() / denom : (diff_norm == 0 ? 1.0 : 0.0);
  if (!d.finite) {
    d.rel_l2 = d.max_abs = std::numeric_limits<double>::infinity();
    d.cosine = 0;
  }
  return d;
}

}  // namespace lb
