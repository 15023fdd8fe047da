// 16-bit products on CPU ranks accumulate in fp32, as GPU GEMMs do (kernels/matmul.h).
#include "kernels/matmul.h"

#include <gtest/gtest.h>

namespace lb {
namespace {

// A product whose second operand is not transposed (attention's probabilities times values) at an
// inner size where bf16 accumulation would be off by ~4% (LibTorch 1.13 on an AVX2 CPU): within a
// few roundings of the fp32 product of the same bf16 inputs, whatever the machine.
TEST(Matmul, Bf16OnCpuIsAccumulatedInFp32) {
  torch::manual_seed(61);
  for (int64_t inner : {64, 1024, 4096}) {
    const torch::Tensor a = torch::randn({3, 40, inner}).to(torch::kBFloat16);
    const torch::Tensor b = torch::randn({3, inner, 24}).to(torch::kBFloat16);  // contiguous: not transposed
    const torch::Tensor exact = torch::matmul(a.to(torch::kFloat32), b.to(torch::kFloat32));
    const torch::Tensor got = matmul_acc32(a, b);
    EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
    const double rel = ((got.to(torch::kFloat32) - exact).norm() / exact.norm()).item<double>();
    EXPECT_LT(rel, 0.003) << inner;  // one bf16 rounding of the result: ~0.0017
    EXPECT_GT(rel, 1e-4) << inner;   // and it was rounded to bf16
  }
  // fp32 is left as it is.
  const torch::Tensor x = torch::randn({5, 7}), y = torch::randn({7, 3});
  EXPECT_TRUE(torch::equal(matmul_acc32(x, y), torch::matmul(x, y)));
}

}  // namespace
}  // namespace lb
