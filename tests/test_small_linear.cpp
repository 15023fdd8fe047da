// linear_fused (kernels/small_linear.h) against torch::linear on fresh random inputs. On the CPU it
// is torch::linear itself. On the GPU, the matrix-vector kernel (asserted to run) for 1-4 rows in
// bf16 and f16 against torch::linear in fp32 on the same rounded inputs, at Qwen3-30B-A3B's and
// DeepSeek-V3's decode shapes and at widths that are not a multiple of a warp's pass.
#include "kernels/small_linear.h"
#include "oracles/compare.h"

#include <gtest/gtest.h>

#include <string>

namespace lb {
namespace {

double rel_l2(const torch::Tensor& a, const torch::Tensor& b) {
  return compare_tensors(a.to(torch::kFloat32).cpu(), b.to(torch::kFloat32).cpu()).rel_l2;
}

TEST(SmallLinear, IsTorchLinearOnTheCpu) {
  torch::manual_seed(41);
  const torch::Tensor x = torch::randn({3, 64}), w = torch::randn({40, 64});
  EXPECT_FALSE(linear_fused_uses_kernel(x, w));
  EXPECT_TRUE(torch::equal(linear_fused(x, w), torch::linear(x, w)));
  EXPECT_TRUE(torch::equal(linear(x, w, true), torch::linear(x, w)));
  EXPECT_TRUE(torch::equal(linear(x, w, false), torch::linear(x, w)));
  for (const bool fused : {true, false}) {
    const torch::Tensor logits = linear_to_f32(x.to(torch::kBFloat16), w.to(torch::kBFloat16), fused);
    EXPECT_EQ(logits.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(torch::equal(logits, torch::linear(x.to(torch::kBFloat16), w.to(torch::kBFloat16)).to(torch::kFloat32)));
  }
}

// A vocabulary head's logits in fp32 from one kernel: the same values as the kernel's dtype output
// widened (bit for bit) where the weight is small enough for linear_fused, and close to torch::linear
// past that size (Qwen3's head: 151936 x 2048, 622 MB in bf16), for 1-4 rows.
TEST(GpuSmallLinear, LogitsInFp32AreTheDtypeOutputWidened) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  torch::manual_seed(43);
  const auto cuda = torch::TensorOptions().device(torch::kCUDA);
  const torch::Tensor small = torch::randn({3000, 2048}, cuda).to(torch::kBFloat16);
  const torch::Tensor large = torch::randn({151936, 2048}, cuda).to(torch::kBFloat16);
  for (int64_t rows = 1; rows <= 4; ++rows) {
    const torch::Tensor x = torch::randn({rows, 2048}, cuda).to(torch::kBFloat16);
    EXPECT_TRUE(torch::equal(linear_to_f32(x, small, true), linear_fused(x, small).to(torch::kFloat32))) << rows;
    const torch::Tensor got = linear_to_f32(x, large, true);
    EXPECT_EQ(got.scalar_type(), torch::kFloat32);
    EXPECT_LT(rel_l2(got, torch::linear(x.to(torch::kFloat32), large.to(torch::kFloat32))), 5e-3) << rows;
    EXPECT_TRUE(torch::equal(got, got.to(torch::kBFloat16).to(torch::kFloat32))) << "values rounded to bf16, " << rows;
  }
}

TEST(GpuSmallLinear, MatchesTorchLinear) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  torch::manual_seed(42);
  const auto cuda = torch::TensorOptions().device(torch::kCUDA);
  struct Shape {
    int64_t n, k;
  };
  // Qwen3 q/k/v (5120 x 2048), o (2048 x 4096), router (128 x 2048); DeepSeek-V3 q_a (1536 x 7168),
  // kv_a (576 x 7168); odd widths: a partial pass, a partial block of columns.
  for (const Shape s : {Shape{5120, 2048}, Shape{2048, 4096}, Shape{128, 2048}, Shape{1536, 7168}, Shape{576, 7168},
                        Shape{7, 1032}, Shape{33, 8}})
    for (int64_t rows = 1; rows <= 4; ++rows)
      for (const auto dtype : {torch::kBFloat16, torch::kHalf}) {
        const std::string what = std::to_string(rows) + " x " + std::to_string(s.k) + " by " + std::to_string(s.n) +
                                 "^T, " + std::string(c10::toString(dtype));
        const torch::Tensor x = torch::randn({rows, s.k}, cuda).to(dtype), w = torch::randn({s.n, s.k}, cuda).to(dtype);
        ASSERT_TRUE(linear_fused_uses_kernel(x, w)) << what;
        const torch::Tensor got = linear_fused(x, w);
        const torch::Tensor want = torch::linear(x.to(torch::kFloat32), w.to(torch::kFloat32));
        EXPECT_EQ(got.scalar_type(), dtype) << what;
        EXPECT_EQ(got.sizes(), want.sizes()) << what;
        EXPECT_LT(rel_l2(got, want), 5e-3) << what;
        // Every column of every row written (a column left at the allocator's contents would differ).
        EXPECT_LT((got.to(torch::kFloat32) - want).abs().max().item<double>(),
                  0.02 * want.abs().max().item<double>() + 1e-3)
            << what;
      }
  // Five rows, f32, or a transposed weight: torch::linear.
  const torch::Tensor x = torch::randn({5, 64}, cuda).to(torch::kBFloat16), w = torch::randn({40, 64}, cuda).to(torch::kBFloat16);
  EXPECT_FALSE(linear_fused_uses_kernel(x, w));
  EXPECT_FALSE(linear_fused_uses_kernel(x.narrow(0, 0, 2).to(torch::kFloat32), w.to(torch::kFloat32)));
  EXPECT_FALSE(linear_fused_uses_kernel(x.narrow(0, 0, 2), w.t().contiguous().t()));
}

}  // namespace
}  // namespace lb
