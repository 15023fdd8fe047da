// The fused attention path (one scaled_dot_product_attention call per sequence, or per run of
// sequences of one length in self-attention, LibTorch 2)
// against the plain path in fp32, on the GPU in bf16: packed causal sequences with GQA, queries
// that see a gathered set of keys through a mask (context parallel, a KV cache), and MLA's value
// size differing from the key size; a decode step's padded batch against one sequence at a time.
// Skips without a GPU.
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

// A decode step at Qwen's shape: one new token in each of 32 sequences against a KV cache of
// 400-700 rows each whose rows interleave the sequences, in one batched call against one call per
// sequence (no padding, no other sequence's keys to mask).
void expect_decode_batch_matches_per_sequence() {
  const torch::Device cuda("cuda");
  const auto o = torch::TensorOptions().device(cuda);
  const int64_t sequences = 32, heads = 32, kv_heads = 4, d = 128;
  std::vector<int64_t> kseq, kpos, qseq, qpos;
  const torch::Tensor lens = torch::randint(400, 700, {sequences}, torch::kInt64);
  for (int64_t s = 0; s < sequences; ++s)  // prefilled, all but the newest token
    for (int64_t p = 0; p + 1 < lens[s].item<int64_t>(); ++p) kseq.push_back(s), kpos.push_back(p);
  for (int64_t s = sequences - 1; s >= 0; --s) {  // the step's token, appended after all prefills
    kseq.push_back(s), kpos.push_back(lens[s].item<int64_t>() - 1);
    qseq.push_back(s), qpos.push_back(lens[s].item<int64_t>() - 1);
  }
  auto on_gpu = [&](const std::vector<int64_t>& v) { return torch::tensor(v, torch::kInt64).to(cuda); };
  const TokenPlacement qt{on_gpu(qseq), on_gpu(qpos)}, kt{on_gpu(kseq), on_gpu(kpos)};
  const int64_t Tk = int64_t(kseq.size());
  const torch::Tensor q = torch::randn({sequences, heads, d}, o), k = torch::randn({Tk, kv_heads, d}, o),
                      v = torch::randn({Tk, kv_heads, d}, o);
  const double scale = 1.0 / std::sqrt(double(d));
  const auto bf = [](const torch::Tensor& t) { return t.to(torch::kBFloat16); };
  const torch::Tensor want = causal_attention(q, k, v, qt, kt, scale);
  const torch::Tensor got = causal_attention(bf(q), bf(k), bf(v), qt, kt, scale, /*fused=*/true);
  EXPECT_FALSE(got.isnan().any().item<bool>());
  EXPECT_LT(rel_l2(got, want), 1e-2) << "decode batch, bf16 against fp32";
  std::vector<torch::Tensor> one_by_one;
  for (int64_t i = 0; i < sequences; ++i) {
    const torch::Tensor qi = torch::tensor({i}, torch::kInt64).to(cuda);
    const torch::Tensor ki = (kt.seq == qt.seq[i]).nonzero().flatten();
    const TokenPlacement q1{qt.seq.index_select(0, qi), qt.pos.index_select(0, qi)};
    const TokenPlacement k1{kt.seq.index_select(0, ki), kt.pos.index_select(0, ki)};
    one_by_one.push_back(causal_attention(q.index_select(0, qi), k.index_select(0, ki), v.index_select(0, ki), q1, k1,
                                          scale, /*fused=*/true));
  }
  EXPECT_LT(rel_l2(torch::cat(one_by_one), want), 1e-4) << "decode batch against one sequence at a time, fp32";
}

TEST(GpuAttention, FusedMatchesPlain) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  torch::manual_seed(4);
  expect_fused_matches(32, 4, 128, 128, {3001, 17, 1024}, true, "Qwen GQA, causal");
  // Runs of equal lengths share one call as its batch: runs of 3 and 2 between other lengths.
  expect_fused_matches(32, 4, 128, 128, {96, 512, 512, 512, 40, 256, 256}, true, "Qwen GQA, causal, equal runs");
  expect_fused_matches(32, 4, 128, 128, {301, 18, 64}, false, "Qwen GQA, masked");
  expect_fused_matches(16, 16, 192, 128, {700, 33}, true, "MLA, causal");
  expect_fused_matches(16, 16, 192, 128, {700, 33}, false, "MLA, masked");
  expect_decode_batch_matches_per_sequence();
}

}  // namespace
}  // namespace lb
