// The fused attention path (one scaled_dot_product_attention call per sequence, LibTorch 2)
// against the plain path in fp32, on the GPU in bf16: packed causal sequences with GQA, queries
// that see a gathered set of keys through a mask (context parallel, a KV cache), and MLA's value
// size differing from the key size. Skips without a GPU.
#include "kernels/attention.h"
#include "oracles/compare.h"

#include <gtest/gtest.h>

namespace lb {
namespace {

double rel_l2(const torch::Tensor& a, const torch::Tensor& b) {
  return compare_tensors(a.to(torch::kFloat32).cpu(), b.to(torch::kFloat32).cpu()).rel_l2;
}

void expect_fused_matches(int64_t heads, int64_t kv_heads, int64_t dk, int64_t dv, const std::vector<int64_t>& lens,
                          bool self, const char* what) {
  const torch::Device cuda("cuda");
  const auto o = torch::TensorOptions().device(cuda);
  const TokenPlacement all = packed_placement(lens, cuda);
  const int64_t T = all.seq.size(0);
  const torch::Tensor q = torch::randn({T, heads, dk}, o), k = torch::randn({T, kv_heads, dk}, o),
                      v = torch::randn({T, kv_heads, dv}, o);
  const double scale = 1.0 / std::sqrt(double(dk));
  if (self) {
    const torch::Tensor want = causal_attention(q, k, v, all, all, scale);
    const torch::Tensor got = causal_attention(q.to(torch::kBFloat16), k.to(torch::kBFloat16), v.to(torch::kBFloat16),
                                               all, all, scale, /*fused=*/true);
    EXPECT_FALSE(got.isnan().any().item<bool>()) << what;
    EXPECT_LT(rel_l2(got, want), 1e-2) << what;
    return;
  }
  // Every other token as the queries, against all keys: a round-robin CP rank's view.
  const torch::Tensor rows = torch::arange(0, T, 2, torch::TensorOptions().dtype(torch::kInt64).device(cuda));
  const TokenPlacement mine{all.seq.index_select(0, rows), all.pos.index_select(0, rows)};
  const torch::Tensor qs = q.index_select(0, rows);
  const torch::Tensor want = causal_attention(qs, k, v, mine, all, scale);
  const torch::Tensor got = causal_attention(qs.to(torch::kBFloat16), k.to(torch::kBFloat16), v.to(torch::kBFloat16),
                                             mine, all, scale, /*fused=*/true);
  EXPECT_FALSE(got.isnan().any().item<bool>()) << what;
  EXPECT_LT(rel_l2(got, want), 1e-2) << what;
}

TEST(GpuAttention, FusedMatchesPlain) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  torch::manual_seed(4);
  expect_fused_matches(32, 4, 128, 128, {3001, 17, 1024}, true, "Qwen GQA, causal");
  expect_fused_matches(32, 4, 128, 128, {301, 18, 64}, false, "Qwen GQA, masked");
  expect_fused_matches(16, 16, 192, 128, {700, 33}, true, "MLA, causal");
  expect_fused_matches(16, 16, 192, 128, {700, 33}, false, "MLA, masked");
}

}  // namespace
}  // namespace lb
