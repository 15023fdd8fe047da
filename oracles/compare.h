#pragma once
// How close two tensors are, computed in float64: the numbers every verdict is made of.
#include <torch/torch.h>

namespace lb {

// A layout run in fp32 differs from the reference by summation order only: the relative L2 it must
// stay under.
constexpr double kFp32MaxRelL2 = 1e-5;

struct TensorDiff {
  double max_abs = 0;
  double rel_l2 = 0;  // ||a - b|| / ||b||  (b is the reference)
  double cosine = 0;
  bool finite = true;  // both tensors free of NaN and Inf
};

TensorDiff compare_tensors(const torch::Tensor& actual, const torch::Tensor& reference);

}  // namespace lb
