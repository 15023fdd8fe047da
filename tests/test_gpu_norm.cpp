// The fused norm kernels against the plain ops they replace, on fresh random inputs: on the CPU
// they are the plain ops (a check of the fallback); on the GPU the CUDA kernels, in bf16 against
// the plain ops computed in fp32 (relative L2 < 1e-2, no NaN, every row written) and against the
// plain bf16 ops (rounding in the same places: nearly bitwise).
#include "harness/model/model_config.h"
#include "kernels/cache_write.h"
#include "kernels/fused_norm.h"
#include "kernels/rmsnorm.h"
#include "oracles/compare.h"

#include <gtest/gtest.h>

#include <string>
#include <tuple>

namespace lb {
namespace {

double rel_l2(const torch::Tensor& a, const torch::Tensor& b) {
  return compare_tensors(a.to(torch::kFloat32).cpu(), b.to(torch::kFloat32).cpu()).rel_l2;
}

void expect_norms_match(torch::Device device, torch::ScalarType dtype, double tol, double tol_same_dtype) {
  torch::manual_seed(6);
  const auto o = torch::TensorOptions().device(device);
  for (int64_t cols : {2048, 7168, 48, 100}) {
    const torch::Tensor x = torch::randn({37, cols}, o) * 3, r = torch::randn({37, cols}, o), w = torch::rand({cols}, o) + 0.5;
    const torch::Tensor want = rmsnorm(x, w, 1e-6);
    const torch::Tensor got = rmsnorm_fused(x.to(dtype), w.to(dtype), 1e-6);
    EXPECT_FALSE(got.isnan().any().item<bool>());
    EXPECT_LT(rel_l2(got, want), tol) << cols;
    EXPECT_LT(rel_l2(got, rmsnorm(x.to(dtype), w.to(dtype), 1e-6)), tol_same_dtype) << cols;
    EXPECT_EQ((got.abs().sum(1) == 0).sum().item<int64_t>(), 0);
    auto [h, y] = add_rmsnorm_fused(x.to(dtype), r.to(dtype), w.to(dtype), 1e-6);
    EXPECT_LT(rel_l2(h, x + r), tol) << cols;
    EXPECT_LT(rel_l2(y, rmsnorm(x + r, w, 1e-6)), tol) << cols;
  }
  // Qwen3's per-head norm and RoPE: 4096 positions, 32 heads of 128.
  ModelConfig c = load_model_config("qwen3-30b-a3b");
  const Rope rope = make_rope(c);
  const torch::Tensor pos = torch::arange(300, torch::TensorOptions().dtype(torch::kInt64).device(device)) * 13;
  const torch::Tensor q = torch::randn({300, 32, 128}, o), w = torch::rand({128}, o) + 0.5;
  const torch::Tensor want = apply_rope(rmsnorm(q, w, 1e-6), rope_cos_sin(rope, pos, torch::kFloat32), false);
  const CosSin cs = rope_cos_sin(rope, pos, dtype);
  const torch::Tensor got = qk_norm_rope_fused(q.to(dtype), w.to(dtype), cs, 1e-6);
  EXPECT_FALSE(got.isnan().any().item<bool>());
  EXPECT_LT(rel_l2(got, want), tol);
  EXPECT_LT(rel_l2(got, apply_rope(rmsnorm(q.to(dtype), w.to(dtype), 1e-6), cs, false)), tol_same_dtype);
  // The same heads as a column block of a wider product (the fused qkv), read in place: the same values.
  const torch::Tensor wide = torch::randn({300, 40 * 128}, o).to(dtype);
  wide.narrow(1, 128, 32 * 128).copy_(q.reshape({300, -1}).to(dtype));
  const torch::Tensor strided = wide.narrow(1, 128, 32 * 128).view({300, 32, 128});
  ASSERT_FALSE(strided.is_contiguous());
  const torch::Tensor from_strided = qk_norm_rope_fused(strided, w.to(dtype), cs, 1e-6);
  EXPECT_TRUE(from_strided.is_contiguous());
  EXPECT_TRUE(torch::equal(from_strided, got));
  // q (32 heads) and k (4 heads, their own weight) as column blocks of one qkv product, in one
  // launch: each the same values as a call of its own, and k near the plain ops in fp32.
  const torch::Tensor qkv = (torch::randn({300, 40 * 128}, o) * 2).to(dtype);
  const torch::Tensor q_cols = qkv.narrow(1, 0, 32 * 128).view({300, 32, 128});
  const torch::Tensor k_cols = qkv.narrow(1, 32 * 128, 4 * 128).view({300, 4, 128});
  const torch::Tensor wq = w.to(dtype), wk = (torch::rand({128}, o) + 0.5).to(dtype);
  const auto [q_pair, k_pair] = qk_norm_rope_pair_fused(q_cols, wq, k_cols, wk, cs, 1e-6);
  EXPECT_TRUE(torch::equal(q_pair, qk_norm_rope_fused(q_cols, wq, cs, 1e-6)));
  EXPECT_TRUE(torch::equal(k_pair, qk_norm_rope_fused(k_cols, wk, cs, 1e-6)));
  const torch::Tensor k_want = apply_rope(rmsnorm(k_cols.to(torch::kFloat32), wk.to(torch::kFloat32), 1e-6),
                                          rope_cos_sin(rope, pos, torch::kFloat32), false);
  EXPECT_LT(rel_l2(k_pair, k_want), tol);
  EXPECT_GT(rel_l2(k_pair, apply_rope(rmsnorm(k_cols, wq, 1e-6), cs, false)), 10 * tol) << "k with q's weight";
  // Heads of 64 and 256 (a warp a row, as 128) and of 80 (a block a row), and a prefill's worth of
  // rows at 128 (4100 tokens of 36 heads: 147600 rows).
  for (const auto& [tokens, heads, dim] : {std::tuple<int64_t, int64_t, int64_t>{50, 6, 64}, {50, 6, 256}, {50, 6, 80},
                                           {4100, 36, 128}}) {
    ModelConfig cd = c;
    cd.head_dim = dim;
    const Rope rd = make_rope(cd);
    const torch::Tensor pd = torch::arange(tokens, torch::TensorOptions().dtype(torch::kInt64).device(device)) * 7;
    const torch::Tensor xd = torch::randn({tokens, heads, dim}, o), wd = torch::rand({dim}, o) + 0.5;
    const torch::Tensor wantd = apply_rope(rmsnorm(xd, wd, 1e-6), rope_cos_sin(rd, pd, torch::kFloat32), false);
    const CosSin csd = rope_cos_sin(rd, pd, dtype);
    const torch::Tensor gotd = qk_norm_rope_fused(xd.to(dtype), wd.to(dtype), csd, 1e-6);
    const std::string what = std::to_string(tokens) + " tokens of " + std::to_string(heads) + " heads of " + std::to_string(dim);
    EXPECT_FALSE(gotd.isnan().any().item<bool>()) << what;
    EXPECT_LT(rel_l2(gotd, wantd), tol) << what;
    EXPECT_LT(rel_l2(gotd, apply_rope(rmsnorm(xd.to(dtype), wd.to(dtype), 1e-6), csd, false)), tol_same_dtype) << what;
    EXPECT_EQ((gotd.abs().sum(2) == 0).sum().item<int64_t>(), 0) << what << ": rows left unwritten";
  }
}

// The q/k norm + RoPE launch that also writes the KV cache rows: the same q and k as without the
// cache, and the same cache as write_cache_rows_fused of the rotated keys and the values (a column
// block of one qkv product, read in place), a row outside the cache left alone.
TEST(GpuFusedNorm, QkNormRopeWritesTheCacheRowsTheCacheWriteWrites) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  torch::manual_seed(8);
  const auto o = torch::TensorOptions().device(torch::Device("cuda"));
  ModelConfig c = load_model_config("qwen3-30b-a3b");
  const Rope rope = make_rope(c);
  for (const int64_t tokens : {1, 3, 70}) {
    const torch::Tensor pos = torch::arange(tokens, o.dtype(torch::kInt64)) * 5 + 2;
    const CosSin cs = rope_cos_sin(rope, pos, torch::kBFloat16);
    const torch::Tensor qkv = (torch::randn({tokens, 40 * 128}, o) * 2).to(torch::kBFloat16);
    const torch::Tensor q = qkv.narrow(1, 0, 32 * 128).view({tokens, 32, 128});
    const torch::Tensor k = qkv.narrow(1, 32 * 128, 4 * 128).view({tokens, 4, 128});
    const torch::Tensor v = qkv.narrow(1, 36 * 128, 4 * 128).view({tokens, 4, 128});
    const torch::Tensor wq = (torch::rand({128}, o) + 0.5).to(torch::kBFloat16);
    const torch::Tensor wk = (torch::rand({128}, o) + 0.5).to(torch::kBFloat16);
    const int64_t rows = 4 * tokens + 16;
    // Distinct rows in the cache; past one token, the last token's outside it.
    torch::Tensor at = torch::randperm(rows, o.dtype(torch::kInt64)).narrow(0, 0, tokens).clone();
    if (tokens > 1) at[tokens - 1] = rows + 3;
    const torch::Tensor before = torch::randn({rows, 4 * 128}, o).to(torch::kBFloat16);
    torch::Tensor keys = before.clone(), values = before.clone() * 2;
    bool written = false;
    const auto [q_got, k_got] = qk_norm_rope_pair_fused(q, wq, k, wk, cs, 1e-6, KvRowsOut{keys, values, v, at}, &written);
    ASSERT_TRUE(written) << tokens;
    const auto [q_want, k_want] = qk_norm_rope_pair_fused(q, wq, k, wk, cs, 1e-6);
    EXPECT_TRUE(torch::equal(q_got, q_want)) << tokens;
    EXPECT_TRUE(torch::equal(k_got, k_want)) << tokens;
    torch::Tensor keys_want = before.clone(), values_want = before.clone() * 2;
    ASSERT_TRUE(write_cache_rows_fused({keys_want, values_want}, {k_want, v}, at));
    EXPECT_TRUE(torch::equal(keys, keys_want)) << tokens;
    EXPECT_TRUE(torch::equal(values, values_want)) << tokens;
    EXPECT_FALSE(torch::equal(keys, before)) << "nothing written";
  }
}

TEST(FusedNorm, CpuFallbackIsThePlainOps) { expect_norms_match(torch::kCPU, torch::kFloat32, 1e-6, 1e-7); }

TEST(GpuFusedNorm, KernelsMatchPlainOps) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  expect_norms_match(torch::Device("cuda"), torch::kBFloat16, 1e-2, 2e-3);
  expect_norms_match(torch::Device("cuda"), torch::kFloat32, 1e-5, 1e-5);
}

// The rotary table kernel makes the bits of the LibTorch ops it replaces, for the default table
// (Qwen3) and YaRN's scaled one (DeepSeek-V3: attention factor != 1), at positions up to 160k.
TEST(GpuFusedNorm, RotaryTableKernelMakesThePlainOpsBits) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  torch::manual_seed(8);
  const auto ids = torch::TensorOptions().dtype(torch::kInt64).device(torch::kCUDA);
  const torch::Tensor pos = torch::cat({torch::randint(0, 163840, {61}, ids), torch::arange(3, ids)});
  for (const char* model : {"qwen3-30b-a3b", "deepseek-v3"}) {
    Rope rope = make_rope(load_model_config(model));
    rope.inv_freq = rope.inv_freq.to(torch::kCUDA);
    for (torch::ScalarType dtype : {torch::kBFloat16, torch::kFloat32}) {
      const CosSin want = rope_cos_sin(rope, pos, dtype), got = rope_cos_sin(rope, pos, dtype, /*fused=*/true);
      ASSERT_EQ(got.cos.sizes(), want.cos.sizes()) << model;
      EXPECT_EQ(got.cos.scalar_type(), dtype);
      EXPECT_TRUE(torch::equal(got.cos, want.cos)) << model << " " << dtype;
      EXPECT_TRUE(torch::equal(got.sin, want.sin)) << model << " " << dtype;
      EXPECT_FALSE(torch::equal(got.cos, got.sin));
    }
  }
}

}  // namespace
}  // namespace lb
