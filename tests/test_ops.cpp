// The LibTorch reference ops against naive float64 loops written here from the definitions
// (HF transformers' Qwen3-MoE and DeepSeek-V3 semantics): per token, per head, per expert.
// Every test also runs at least one deliberately wrong comparison that must fail, so a test
// that could never fail (e.g. comparing the op with itself) would show up.
#include "harness/model/model_config.h"
#include "kernels/attention.h"
#include "kernels/moe.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace lb {
namespace {

using Vec = std::vector<double>;

// The tensor's elements as float64, row-major.
Vec flat(const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kCPU).to(torch::kFloat64).contiguous();
  const double* p = c.data_ptr<double>();
  return Vec(p, p + c.numel());
}

std::vector<int64_t> flat_i64(const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kCPU).to(torch::kInt64).contiguous();
  const int64_t* p = c.data_ptr<int64_t>();
  return std::vector<int64_t>(p, p + c.numel());
}

torch::Tensor i64(const std::vector<int64_t>& v) { return torch::tensor(v, torch::kInt64); }

double max_abs_err(const Vec& got, const Vec& want) {
  EXPECT_EQ(got.size(), want.size());
  double m = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) m = std::max(m, std::abs(got[i] - want[i]));
  return m;
}

// Largest element-wise |got - want| / |want|.
double max_rel_err(const Vec& got, const Vec& want) {
  EXPECT_EQ(got.size(), want.size());
  double m = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    m = std::max(m, std::abs(got[i] - want[i]) / std::abs(want[i]));
  return m;
}

double max_abs(const Vec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

// x [T, H] (already in the values the op sees), w [H]: x / sqrt(mean(x^2) + eps) * w per row.
Vec naive_rmsnorm(const Vec& x, const Vec& w, int64_t T, int64_t H, double eps) {
  Vec out(size_t(T * H));
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int64_t h = 0; h < H; ++h) ss += x[t * H + h] * x[t * H + h];
    const double inv = 1.0 / std::sqrt(ss / double(H) + eps);
    for (int64_t h = 0; h < H; ++h) out[t * H + h] = x[t * H + h] * inv * w[h];
  }
  return out;
}

TEST(Ops, RmsNormMatchesNaiveFp32AndBf16) {
  torch::manual_seed(101);
  const int64_t T = 7, H = 64;
  const double eps = 1e-6;
  // The last row is tiny (rms ~1e-3), so eps changes its result by ~40%: eps is really used.
  torch::Tensor x = torch::randn({T, H});
  x[T - 1].mul_(1e-3);
  torch::Tensor w = 1.0 + 0.5 * torch::randn({H});

  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    SCOPED_TRACE(dtype == torch::kFloat32 ? "fp32" : "bf16");
    torch::Tensor xd = x.to(dtype), wd = w.to(dtype);
    torch::Tensor y = rmsnorm(xd, wd, eps);
    EXPECT_EQ(y.scalar_type(), dtype);
    ASSERT_EQ(y.sizes(), xd.sizes());
    // The naive reference sees exactly the (rounded) values the op sees.
    Vec ref = naive_rmsnorm(flat(xd), flat(wd), T, H, eps);
    const double tol = dtype == torch::kFloat32 ? 1e-6 : 1e-2;
    EXPECT_LT(max_rel_err(flat(y), ref), tol);
    // Negative checks: eps left out (the tiny row moves), or the weight reversed.
    EXPECT_GT(max_rel_err(flat(y), naive_rmsnorm(flat(xd), flat(wd), T, H, 0.0)), 0.1);
    Vec w_rev = flat(wd);
    std::reverse(w_rev.begin(), w_rev.end());
    EXPECT_GT(max_rel_err(flat(y), naive_rmsnorm(flat(xd), w_rev, T, H, eps)), 0.1);
  }
}

// ---------------------------------------------------------------------------------------------
// RoPE frequencies

Vec naive_default_inv_freq(double theta, int64_t d) {
  Vec inv;
  for (int64_t i = 0; i < d / 2; ++i) inv.push_back(std::pow(theta, -2.0 * double(i) / double(d)));
  return inv;
}

double naive_mscale(double scale, double m) { return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; }

struct NaiveYarn {
  Vec inv_freq;
  double attention_factor = 1.0;
};

// YaRN from its definition (as transformers' _compute_yarn_parameters), all in double.
NaiveYarn naive_yarn(const RopeConfig& r, int64_t d, bool truncate) {
  const double base = r.theta, factor = r.factor;
  auto correction_dim = [&](double rotations) {
    return double(d) * std::log(double(r.original_max_position) / (rotations * 2.0 * M_PI)) / (2.0 * std::log(base));
  };
  double low = correction_dim(r.beta_fast), high = correction_dim(r.beta_slow);
  if (truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, double(d - 1));
  if (low == high) high += 0.001;
  NaiveYarn y;
  for (int64_t i = 0; i < d / 2; ++i) {
    const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
    const double extra = 1.0 - ramp;
    const double pos_freq = std::pow(base, 2.0 * double(i) / double(d));
    const double interp = 1.0 / (factor * pos_freq), extra_freq = 1.0 / pos_freq;
    y.inv_freq.push_back(interp * (1.0 - extra) + extra_freq * extra);
  }
  if (r.attention_factor) y.attention_factor = *r.attention_factor;
  else if (r.mscale != 0.0 && r.mscale_all_dim != 0.0)
    y.attention_factor = naive_mscale(factor, r.mscale) / naive_mscale(factor, r.mscale_all_dim);
  else y.attention_factor = naive_mscale(factor, 1.0);
  return y;
}

TEST(Ops, DefaultRopeInvFreqIsThetaPowerMinus2iOverD) {
  for (const char* name : {"qwen3-30b-a3b", "tiny-qwen3-moe"}) {
    SCOPED_TRACE(name);
    ModelConfig c = *find_preset(name);
    Rope rope = make_rope(c);
    EXPECT_EQ(rope.dim, c.head_dim);
    EXPECT_FALSE(rope.interleaved);
    EXPECT_EQ(rope.attention_factor, 1.0);
    EXPECT_EQ(rope.inv_freq.scalar_type(), torch::kFloat32);
    ASSERT_EQ(rope.inv_freq.numel(), c.head_dim / 2);
    Vec got = flat(rope.inv_freq);
    EXPECT_LT(max_rel_err(got, naive_default_inv_freq(c.rope.theta, c.head_dim)), 1e-6);
    // Negative: theta^(-i/d) (the factor 2 missing) is far off.
    Vec wrong;
    for (int64_t i = 0; i < c.head_dim / 2; ++i) wrong.push_back(std::pow(c.rope.theta, -double(i) / double(c.head_dim)));
    EXPECT_GT(max_rel_err(got, wrong), 0.1);
  }
}

// The op blends in float32: an ulp (6e-8) of error in a ramp weight strictly inside (0, 1) moves
// inv_freq by 6e-8 * |extra - interp|, up to factor (40) times that relative to the interpolated
// value. Measured: 1.3e-7 (truncate) and 7.3e-7 (no truncate); the bound is ~2.4e-6.
constexpr double kYarnTol = 3e-6;

TEST(Ops, YarnInvFreqAndAttentionFactorForDeepseekPresets) {
  for (const char* name : {"deepseek-v3", "tiny-deepseek-v3"}) {
    SCOPED_TRACE(name);
    ModelConfig c = *find_preset(name);
    Rope rope = make_rope(c);
    EXPECT_EQ(rope.dim, c.qk_rope_head_dim);
    EXPECT_TRUE(rope.interleaved);
    ASSERT_EQ(rope.inv_freq.numel(), c.qk_rope_head_dim / 2);
    NaiveYarn ref = naive_yarn(c.rope, c.qk_rope_head_dim, /*truncate=*/true);
    Vec got = flat(rope.inv_freq);
    EXPECT_LT(max_rel_err(got, ref.inv_freq), kYarnTol);
    // mscale == mscale_all_dim == 1: the ratio is exactly 1.
    EXPECT_DOUBLE_EQ(ref.attention_factor, 1.0);
    EXPECT_DOUBLE_EQ(rope.attention_factor, 1.0);
    // The ends of the table: the fastest dimension is pure extrapolation, the slowest pure
    // interpolation (divided by the factor).
    Vec plain = naive_default_inv_freq(c.rope.theta, c.qk_rope_head_dim);
    EXPECT_NEAR(got.front() / plain.front(), 1.0, 1e-6);
    EXPECT_NEAR(got.back() / plain.back(), 1.0 / c.rope.factor, 1e-6);
    // Negative: without floor/ceil (truncate false) the ramp moves and the table differs.
    EXPECT_GT(max_rel_err(got, naive_yarn(c.rope, c.qk_rope_head_dim, /*truncate=*/false).inv_freq), 1e-3);
    // Negative: plain RoPE is not YaRN.
    EXPECT_GT(max_rel_err(got, plain), 0.5);
  }
}

TEST(Ops, YarnAttentionFactorVariantsAndTruncateFalse) {
  ModelConfig c = *find_preset("deepseek-v3");
  const double f = c.rope.factor;
  {  // mscale differs from mscale_all_dim: the ratio of the two mscales.
    ModelConfig m = c;
    m.rope.mscale = 0.707;
    m.rope.mscale_all_dim = 1.0;
    const double want = (0.1 * 0.707 * std::log(f) + 1.0) / (0.1 * std::log(f) + 1.0);
    EXPECT_NEAR(make_rope(m).attention_factor, want, 1e-12);
    EXPECT_NEAR(naive_yarn(m.rope, 64, true).attention_factor, want, 1e-12);
  }
  {  // No mscale: plain YaRN 0.1 ln(s) + 1.
    ModelConfig m = c;
    m.rope.mscale = 0.0;
    m.rope.mscale_all_dim = 0.0;
    EXPECT_NEAR(make_rope(m).attention_factor, 0.1 * std::log(f) + 1.0, 1e-12);
  }
  {  // An explicit attention_factor wins.
    ModelConfig m = c;
    m.rope.attention_factor = 0.5;
    EXPECT_EQ(make_rope(m).attention_factor, 0.5);
  }
  {  // truncate false: the unrounded correction range.
    ModelConfig m = c;
    m.rope.truncate = false;
    Vec got = flat(make_rope(m).inv_freq);
    EXPECT_LT(max_rel_err(got, naive_yarn(m.rope, 64, false).inv_freq), kYarnTol);
    EXPECT_GT(max_rel_err(got, naive_yarn(m.rope, 64, true).inv_freq), 1e-3);  // negative
  }
}

TEST(Ops, AttentionScaleFoldsYarnMscaleSquared) {
  ModelConfig c = *find_preset("deepseek-v3");
  EXPECT_EQ(c.qk_head_dim(), 192);
  const double m = 0.1 * std::log(40.0) + 1.0;
  const double want = (1.0 / std::sqrt(192.0)) * m * m;
  EXPECT_NEAR(c.attention_scale() / want, 1.0, 1e-12);
  EXPECT_GT(std::abs(c.attention_scale() - 1.0 / std::sqrt(192.0)), 0.1 * want);  // negative: mscale matters
  ModelConfig tiny = *find_preset("tiny-deepseek-v3");
  EXPECT_NEAR(tiny.attention_scale() / ((1.0 / std::sqrt(24.0)) * m * m), 1.0, 1e-12);
  ModelConfig qwen = *find_preset("qwen3-30b-a3b");
  EXPECT_NEAR(qwen.attention_scale(), 1.0 / std::sqrt(128.0), 1e-15);
}

// ---------------------------------------------------------------------------------------------
// RoPE application

// x [T, Hh, D] rotated by angle pos[t] * inv[i]; non-interleaved pairs (x[i], x[i + D/2]),
// interleaved pairs (x[2i], x[2i+1]); the output always holds the first components in [0, D/2)
// and the second ones in [D/2, D), scaled by `factor`.
Vec naive_rope(const Vec& x, const std::vector<int64_t>& pos, const Vec& inv, int64_t T, int64_t Hh, int64_t D,
               bool interleaved, double factor) {
  const int64_t half = D / 2;
  Vec out(x.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < Hh; ++h) {
      const double* in = &x[size_t((t * Hh + h) * D)];
      double* o = &out[size_t((t * Hh + h) * D)];
      for (int64_t i = 0; i < half; ++i) {
        std::complex<double> z = interleaved ? std::complex<double>(in[2 * i], in[2 * i + 1])
                                             : std::complex<double>(in[i], in[i + half]);
        z *= std::polar(factor, double(pos[size_t(t)]) * inv[size_t(i)]);
        o[i] = z.real();
        o[i + half] = z.imag();
      }
    }
  return out;
}

std::vector<int64_t> random_positions(int64_t T, int64_t hi) { return flat_i64(torch::randint(0, hi, {T}, torch::kInt64)); }

TEST(Ops, ApplyRopeRotateHalfMatchesComplexRotation) {
  torch::manual_seed(202);
  ModelConfig c = *find_preset("tiny-qwen3-moe");
  Rope rope = make_rope(c);
  const int64_t T = 9, Hh = 3, D = c.head_dim;
  torch::Tensor x = torch::randn({T, Hh, D});
  std::vector<int64_t> pos = random_positions(T, 60);
  CosSin cs = rope_cos_sin(rope, i64(pos), torch::kFloat32);
  torch::Tensor y = apply_rope(x, cs, /*interleaved=*/false);
  ASSERT_EQ(y.sizes(), x.sizes());
  Vec inv = naive_default_inv_freq(c.rope.theta, D);
  // Angles are float32 in the op (|angle| < 60): a few 1e-6 absolute.
  EXPECT_LT(max_abs_err(flat(y), naive_rope(flat(x), pos, inv, T, Hh, D, false, 1.0)), 5e-5);
  // Negative: positions reversed between tokens.
  std::vector<int64_t> swapped(pos.rbegin(), pos.rend());
  EXPECT_GT(max_abs_err(flat(y), naive_rope(flat(x), swapped, inv, T, Hh, D, false, 1.0)), 0.1);
  // Negative: the interleaved pairing is a different rotation.
  EXPECT_GT(max_abs_err(flat(y), naive_rope(flat(x), pos, inv, T, Hh, D, true, 1.0)), 0.1);

  // YaRN's attention factor scales cos and sin (mscale absent: 0.1 ln(40) + 1).
  ModelConfig ds = *find_preset("tiny-deepseek-v3");
  ds.rope.mscale = ds.rope.mscale_all_dim = 0.0;
  Rope yarn = make_rope(ds);
  NaiveYarn ny = naive_yarn(ds.rope, ds.qk_rope_head_dim, true);
  ASSERT_GT(ny.attention_factor, 1.3);
  torch::Tensor xr = torch::randn({T, Hh, yarn.dim});
  torch::Tensor yr = apply_rope(xr, rope_cos_sin(yarn, i64(pos), torch::kFloat32), false);
  EXPECT_LT(max_abs_err(flat(yr), naive_rope(flat(xr), pos, ny.inv_freq, T, Hh, yarn.dim, false, ny.attention_factor)),
            1e-4);
  EXPECT_GT(max_abs_err(flat(yr), naive_rope(flat(xr), pos, ny.inv_freq, T, Hh, yarn.dim, false, 1.0)), 0.1);
}

TEST(Ops, ApplyRopeInterleavedRotatesPairsAndDeinterleaves) {
  torch::manual_seed(303);
  ModelConfig c = *find_preset("deepseek-v3");
  Rope rope = make_rope(c);
  ASSERT_TRUE(rope.interleaved);
  const int64_t T = 8, Hh = 2, D = rope.dim;
  torch::Tensor x = torch::randn({T, Hh, D});
  std::vector<int64_t> pos = random_positions(T, 60);
  torch::Tensor y = apply_rope(x, rope_cos_sin(rope, i64(pos), torch::kFloat32), /*interleaved=*/true);
  ASSERT_EQ(y.sizes(), x.sizes());
  Vec inv = naive_yarn(c.rope, D, true).inv_freq;
  Vec want = naive_rope(flat(x), pos, inv, T, Hh, D, /*interleaved=*/true, 1.0);
  EXPECT_LT(max_abs_err(flat(y), want), 5e-5);
  // Negative: the rotated pairs written back in place (x'[2i], x'[2i+1]) is not the layout.
  Vec in_place(want.size());
  for (int64_t r = 0; r < T * Hh; ++r)
    for (int64_t i = 0; i < D / 2; ++i) {
      in_place[size_t(r * D + 2 * i)] = want[size_t(r * D + i)];
      in_place[size_t(r * D + 2 * i + 1)] = want[size_t(r * D + D / 2 + i)];
    }
  EXPECT_GT(max_abs_err(flat(y), in_place), 0.1);
  // Negative: rotate_half pairing.
  EXPECT_GT(max_abs_err(flat(y), naive_rope(flat(x), pos, inv, T, Hh, D, false, 1.0)), 0.1);
}

// Per (token, head): dot product of q[t, h] and k[t, h] after rotating q at pq[t] and k at pk[t].
Vec rotated_dots(const torch::Tensor& q, const torch::Tensor& k, const Rope& rope, const std::vector<int64_t>& pq,
                 const std::vector<int64_t>& pk, bool interleaved) {
  Vec a = flat(apply_rope(q, rope_cos_sin(rope, i64(pq), torch::kFloat32), interleaved));
  Vec b = flat(apply_rope(k, rope_cos_sin(rope, i64(pk), torch::kFloat32), interleaved));
  const int64_t rows = q.size(0) * q.size(1), D = q.size(2);
  Vec dots(size_t(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < D; ++d) dots[size_t(r)] += a[size_t(r * D + d)] * b[size_t(r * D + d)];
  return dots;
}

TEST(Ops, RopeDotProductsDependOnlyOnPositionDifferences) {
  torch::manual_seed(404);
  for (const char* name : {"tiny-qwen3-moe", "deepseek-v3"}) {
    SCOPED_TRACE(name);
    ModelConfig c = *find_preset(name);
    Rope rope = make_rope(c);
    const int64_t T = 10, Hh = 3;
    torch::Tensor q = torch::randn({T, Hh, rope.dim}), k = torch::randn({T, Hh, rope.dim});
    std::vector<int64_t> pq = random_positions(T, 40), pk = random_positions(T, 40);
    auto shift = [](std::vector<int64_t> p, int64_t by) {
      for (auto& v : p) v += by;
      return p;
    };
    Vec base = rotated_dots(q, k, rope, pq, pk, rope.interleaved);
    Vec shifted = rotated_dots(q, k, rope, shift(pq, 5), shift(pk, 5), rope.interleaved);
    EXPECT_LT(max_abs_err(base, shifted), 1e-4 * std::max(1.0, max_abs(base)));
    // Negative: moving only the keys changes the dot products.
    Vec k_only = rotated_dots(q, k, rope, pq, shift(pk, 5), rope.interleaved);
    EXPECT_GT(max_abs_err(base, k_only), 0.1);
  }
}

// ---------------------------------------------------------------------------------------------
// Causal attention

struct Placement {
  std::vector<int64_t> seq, pos;
};

// q [Tq, Hq, D], k [Tk, Hkv, D], v [Tk, Hkv, Dv]: per query and head, softmax over the keys of
// the same sequence at positions <= the query's. `gqa_modulo` is a deliberately wrong head map.
Vec naive_attention(const Vec& q, const Vec& k, const Vec& v, const Placement& qp, const Placement& kp, int64_t Hq,
                    int64_t Hkv, int64_t D, int64_t Dv, double scale, bool gqa_modulo = false,
                    bool ignore_sequences = false) {
  const int64_t Tq = int64_t(qp.seq.size()), Tk = int64_t(kp.seq.size()), group = Hq / Hkv;
  Vec out(size_t(Tq * Hq * Dv), 0.0);
  for (int64_t t = 0; t < Tq; ++t)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t g = gqa_modulo ? h % Hkv : h / group;
      std::vector<std::pair<int64_t, double>> scores;  // key, score
      for (int64_t u = 0; u < Tk; ++u) {
        if (!ignore_sequences && kp.seq[size_t(u)] != qp.seq[size_t(t)]) continue;
        if (kp.pos[size_t(u)] > qp.pos[size_t(t)]) continue;
        double s = 0;
        for (int64_t d = 0; d < D; ++d) s += q[size_t((t * Hq + h) * D + d)] * k[size_t((u * Hkv + g) * D + d)];
        scores.emplace_back(u, s * scale);
      }
      double mx = -INFINITY, z = 0;
      for (auto& [u, s] : scores) mx = std::max(mx, s);
      for (auto& [u, s] : scores) z += std::exp(s - mx);
      for (auto& [u, s] : scores) {
        const double p = std::exp(s - mx) / z;
        for (int64_t e = 0; e < Dv; ++e) out[size_t((t * Hq + h) * Dv + e)] += p * v[size_t((u * Hkv + g) * Dv + e)];
      }
    }
  return out;
}

// The plain path's query blocks (forced small here) give the rows the unblocked call gives.
TEST(Ops, CausalAttentionInQueryBlocksMatchesOneBlock) {
  torch::manual_seed(506);
  const std::vector<int64_t> lens = {37, 3, 21};
  const int64_t T = 61, Hq = 4, Hkv = 2, D = 8;
  torch::Tensor q = torch::randn({T, Hq, D}), k = torch::randn({T, Hkv, D}), v = torch::randn({T, Hkv, D});
  const TokenPlacement tp = packed_placement(lens, torch::kCPU);
  const torch::Tensor whole = causal_attention(q, k, v, tp, tp, 0.3);
  for (int64_t max_scores : {int64_t(1), int64_t(4 * 37 * 5), int64_t(4 * 37 * 36)}) {
    const torch::Tensor blocked = causal_attention(q, k, v, tp, tp, 0.3, false, max_scores);
    EXPECT_LT((blocked - whole).abs().max().item<double>(), 1e-6) << max_scores;
  }
  // The bound is tight enough to see other rows: other queries give other outputs.
  EXPECT_GT((causal_attention(q.roll(1, 0), k, v, tp, tp, 0.3, false, 1) - whole).abs().max().item<double>(), 1e-2);
}

TEST(Ops, CausalAttentionPackedGqaMatchesNaive) {
  torch::manual_seed(505);
  const std::vector<int64_t> lens = {5, 1, 9};
  const int64_t T = 15, Hq = 6, Hkv = 2, D = 8, Dv = 5;
  const double scale = 1.0 / std::sqrt(double(D));
  torch::Tensor q = torch::randn({T, Hq, D}), k = torch::randn({T, Hkv, D}), v = torch::randn({T, Hkv, Dv});
  TokenPlacement tp = packed_placement(lens, torch::kCPU);
  Placement p{flat_i64(tp.seq), flat_i64(tp.pos)};
  ASSERT_EQ(p.seq, (std::vector<int64_t>{0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2}));
  ASSERT_EQ(p.pos, (std::vector<int64_t>{0, 1, 2, 3, 4, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}));
  torch::Tensor out = causal_attention(q, k, v, tp, tp, scale);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{T, Hq, Dv}));
  Vec got = flat(out);
  EXPECT_LT(max_abs_err(got, naive_attention(flat(q), flat(k), flat(v), p, p, Hq, Hkv, D, Dv, scale)), 1e-5);
  // Negatives: the wrong GQA head map, attention across sequence boundaries, a wrong scale.
  EXPECT_GT(max_abs_err(got, naive_attention(flat(q), flat(k), flat(v), p, p, Hq, Hkv, D, Dv, scale, true)), 1e-2);
  EXPECT_GT(max_abs_err(got, naive_attention(flat(q), flat(k), flat(v), p, p, Hq, Hkv, D, Dv, scale, false, true)),
            1e-2);
  EXPECT_GT(max_abs_err(got, naive_attention(flat(q), flat(k), flat(v), p, p, Hq, Hkv, D, Dv, 2 * scale)), 1e-2);
}

void expect_context_parallel_subset_equals_full_rows(const std::vector<int64_t>& lens) {
  torch::manual_seed(606);
  int64_t T = 0;
  for (int64_t l : lens) T += l;
  const int64_t Hq = 6, Hkv = 2, D = 8, Dv = 5;
  const double scale = 0.3;
  torch::Tensor q = torch::randn({T, Hq, D}), k = torch::randn({T, Hkv, D}), v = torch::randn({T, Hkv, Dv});
  TokenPlacement full = packed_placement(lens, torch::kCPU);
  torch::Tensor full_out = causal_attention(q, k, v, full, full, scale);

  // This "rank" owns every second token, in a shuffled order; the keys arrive all-gathered in
  // another shuffled order, each with its own placement.
  std::vector<int64_t> mine;
  for (int64_t t = 0; t < T; t += 2) mine.push_back(t);
  torch::Tensor qi = i64(mine).index_select(0, torch::randperm(int64_t(mine.size()), torch::kInt64));
  torch::Tensor ki = torch::randperm(T, torch::kInt64);
  ASSERT_FALSE(torch::equal(ki, torch::arange(T, torch::kInt64)));
  TokenPlacement qt{full.seq.index_select(0, qi), full.pos.index_select(0, qi)};
  TokenPlacement kt{full.seq.index_select(0, ki), full.pos.index_select(0, ki)};
  torch::Tensor part = causal_attention(q.index_select(0, qi), k.index_select(0, ki), v.index_select(0, ki), qt, kt, scale);
  Vec want_rows = flat(full_out.index_select(0, qi));
  EXPECT_LT(max_abs_err(flat(part), want_rows), 1e-6);
  // And the naive loop agrees on the subset directly.
  Placement qp{flat_i64(qt.seq), flat_i64(qt.pos)}, kp{flat_i64(kt.seq), flat_i64(kt.pos)};
  EXPECT_LT(max_abs_err(flat(part), naive_attention(flat(q.index_select(0, qi)), flat(k.index_select(0, ki)),
                                                    flat(v.index_select(0, ki)), qp, kp, Hq, Hkv, D, Dv, scale)),
            1e-5);
  // Negative: keys shuffled but described by the unshuffled placement.
  torch::Tensor wrong =
      causal_attention(q.index_select(0, qi), k.index_select(0, ki), v.index_select(0, ki), qt, full, scale);
  EXPECT_GT(max_abs_err(flat(wrong), want_rows), 1e-2);
}

// {5, 1, 9}: few queries per sequence, the batched path; {40, 1, 2}: 20 queries in one sequence,
// the per-sequence loop.
TEST(Ops, CausalAttentionContextParallelSubsetEqualsFullRows) {
  for (const std::vector<int64_t>& lens : {std::vector<int64_t>{5, 1, 9}, std::vector<int64_t>{40, 1, 2}}) {
    SCOPED_TRACE(lens[0]);
    expect_context_parallel_subset_equals_full_rows(lens);
  }
}

// A decode step: the new tokens of several sequences (one each, two for one of them, and one
// sequence with nothing in the cache) against a KV cache whose rows interleave the sequences step
// after step, as appending makes them. The batched path: its padding must change nothing.
TEST(Ops, CausalAttentionDecodeStepOnInterleavedCacheMatchesNaive) {
  torch::manual_seed(707);
  const int64_t Hq = 6, Hkv = 2, D = 8, Dv = 5;
  const double scale = 0.4;
  const std::vector<int64_t> lens = {7, 3, 5, 6, 4};  // prefilled; then two decode steps appended
  Placement kp, qp;
  for (int64_t s = 0; s < 5; ++s)
    for (int64_t p = 0; p < lens[size_t(s)]; ++p) kp.seq.push_back(s), kp.pos.push_back(p);
  for (int64_t step = 0; step < 2; ++step)
    for (int64_t s = 0; s < 5; ++s) kp.seq.push_back(s), kp.pos.push_back(lens[size_t(s)] + step);
  for (int64_t s : {3, 0, 2, 5, 1, 4}) qp.seq.push_back(s), qp.pos.push_back(s == 5 ? 0 : lens[size_t(s)] + 1);
  qp.seq.push_back(2), qp.pos.push_back(lens[2]);  // sequence 2 runs two new tokens
  const int64_t Tq = int64_t(qp.seq.size()), Tk = int64_t(kp.seq.size());
  torch::Tensor q = torch::randn({Tq, Hq, D}), k = torch::randn({Tk, Hkv, D}), v = torch::randn({Tk, Hkv, Dv});
  const TokenPlacement qt{i64(qp.seq), i64(qp.pos)}, kt{i64(kp.seq), i64(kp.pos)};
  torch::Tensor out = causal_attention(q, k, v, qt, kt, scale);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{Tq, Hq, Dv}));
  EXPECT_FALSE(out.isnan().any().item<bool>());
  EXPECT_TRUE(torch::equal(out[3], torch::zeros({Hq, Dv})));  // sequence 5 has no keys
  EXPECT_LT(max_abs_err(flat(out), naive_attention(flat(q), flat(k), flat(v), qp, kp, Hq, Hkv, D, Dv, scale)), 1e-5);
  // Negatives: keys one position later (each query loses its own key), the wrong GQA head map.
  Placement later = kp;
  for (auto& p : later.pos) ++p;
  EXPECT_GT(max_abs_err(flat(out), naive_attention(flat(q), flat(k), flat(v), qp, later, Hq, Hkv, D, Dv, scale)), 1e-2);
  EXPECT_GT(max_abs_err(flat(out), naive_attention(flat(q), flat(k), flat(v), qp, kp, Hq, Hkv, D, Dv, scale, true)),
            1e-2);
}

// ---------------------------------------------------------------------------------------------
// Routing

struct NaiveRoute {
  std::vector<std::vector<int64_t>> experts;
  std::vector<Vec> weights;
};

NaiveRoute naive_softmax_topk(const Vec& logits, int64_t T, int64_t E, int64_t k, bool renormalize) {
  NaiveRoute r;
  for (int64_t t = 0; t < T; ++t) {
    const double* l = &logits[size_t(t * E)];
    const double mx = *std::max_element(l, l + E);
    Vec p(static_cast<size_t>(E));
    double z = 0;
    for (int64_t e = 0; e < E; ++e) z += (p[size_t(e)] = std::exp(l[e] - mx));
    for (auto& x : p) x /= z;
    std::vector<int64_t> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[size_t(a)] > p[size_t(b)]; });
    order.resize(size_t(k));
    Vec w;
    for (int64_t e : order) w.push_back(p[size_t(e)]);
    if (renormalize) {
      const double s = std::accumulate(w.begin(), w.end(), 0.0);
      for (auto& x : w) x /= s;
    }
    r.experts.push_back(order);
    r.weights.push_back(w);
  }
  return r;
}

// Rows of the op's routing as (expert, weight) pairs sorted by expert id.
std::vector<std::vector<std::pair<int64_t, double>>> by_expert(const std::vector<int64_t>& experts, const Vec& weights,
                                                               int64_t T, int64_t k) {
  std::vector<std::vector<std::pair<int64_t, double>>> rows(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < k; ++j) rows[size_t(t)].emplace_back(experts[size_t(t * k + j)], weights[size_t(t * k + j)]);
    std::sort(rows[size_t(t)].begin(), rows[size_t(t)].end());
  }
  return rows;
}

std::vector<std::vector<std::pair<int64_t, double>>> by_expert(const NaiveRoute& r) {
  std::vector<std::vector<std::pair<int64_t, double>>> rows;
  for (size_t t = 0; t < r.experts.size(); ++t) {
    rows.emplace_back();
    for (size_t j = 0; j < r.experts[t].size(); ++j) rows.back().emplace_back(r.experts[t][j], r.weights[t][j]);
    std::sort(rows.back().begin(), rows.back().end());
  }
  return rows;
}

// How far apart two routings are: infinity when any token's expert set differs, else the largest
// relative weight difference.
double routing_distance(const std::vector<std::vector<std::pair<int64_t, double>>>& a,
                        const std::vector<std::vector<std::pair<int64_t, double>>>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t t = 0; t < a.size(); ++t) {
    if (a[t].size() != b[t].size()) return INFINITY;
    for (size_t j = 0; j < a[t].size(); ++j) {
      if (a[t][j].first != b[t][j].first) return INFINITY;
      m = std::max(m, std::abs(a[t][j].second - b[t][j].second) / std::abs(b[t][j].second));
    }
  }
  return m;
}

TEST(Ops, RouteSoftmaxTopkMatchesNaiveSort) {
  torch::manual_seed(707);
  const int64_t T = 11, E = 16, k = 4;
  torch::Tensor logits = torch::randn({T, E});
  for (bool renorm : {true, false}) {
    SCOPED_TRACE(renorm ? "renormalize" : "raw");
    Routing r = route_softmax_topk(logits, k, renorm);
    ASSERT_EQ(r.experts.sizes(), (std::vector<int64_t>{T, k}));
    ASSERT_EQ(r.weights.sizes(), (std::vector<int64_t>{T, k}));
    EXPECT_EQ(r.weights.scalar_type(), torch::kFloat32);
    std::vector<int64_t> ge = flat_i64(r.experts);
    Vec gw = flat(r.weights);
    NaiveRoute want = naive_softmax_topk(flat(logits), T, E, k, renorm);
    // topk is sorted: same experts in the same (descending-weight) order.
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < k; ++j) {
        EXPECT_EQ(ge[size_t(t * k + j)], want.experts[size_t(t)][size_t(j)]) << "token " << t << " slot " << j;
        EXPECT_NEAR(gw[size_t(t * k + j)], want.weights[size_t(t)][size_t(j)], 1e-6 * want.weights[size_t(t)][size_t(j)]);
      }
    for (int64_t t = 0; t < T; ++t) {
      const double s = std::accumulate(gw.begin() + t * k, gw.begin() + (t + 1) * k, 0.0);
      if (renorm) EXPECT_NEAR(s, 1.0, 1e-6);
      else EXPECT_LT(s, 1.0 - 1e-3);
    }
    // Negatives: a wrong k (renormalized over 3) and the other renormalization setting.
    EXPECT_EQ(routing_distance(by_expert(ge, gw, T, k), by_expert(naive_softmax_topk(flat(logits), T, E, 3, renorm))),
              INFINITY);
    EXPECT_GT(routing_distance(by_expert(ge, gw, T, k), by_expert(naive_softmax_topk(flat(logits), T, E, k, !renorm))),
              1e-2);
  }
}

struct GroupedOptions {
  bool use_bias_for_selection = true;  // false: a wrong variant
  bool group_top2_sum = true;          // false: group score = max (wrong for DeepSeek-V3)
};

// DeepSeek-V3's router per token, plus the smallest score gap at a selection boundary (to show
// the inputs have no near-ties).
NaiveRoute naive_sigmoid_grouped(const Vec& logits, const Vec& bias, int64_t T, int64_t E, int64_t n_group,
                                 int64_t topk_group, int64_t k, bool renormalize, double scale, double* min_gap,
                                 GroupedOptions opt = {}) {
  NaiveRoute r;
  const int64_t per_group = E / n_group;
  if (min_gap) *min_gap = INFINITY;
  for (int64_t t = 0; t < T; ++t) {
    Vec s(static_cast<size_t>(E)), b(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      s[size_t(e)] = 1.0 / (1.0 + std::exp(-logits[size_t(t * E + e)]));
      b[size_t(e)] = s[size_t(e)] + (opt.use_bias_for_selection ? bias[size_t(e)] : 0.0);
    }
    std::vector<std::pair<double, int64_t>> groups;  // score, group
    for (int64_t g = 0; g < n_group; ++g) {
      Vec members(b.begin() + g * per_group, b.begin() + (g + 1) * per_group);
      std::sort(members.rbegin(), members.rend());
      groups.emplace_back(opt.group_top2_sum ? members[0] + members[1] : members[0], g);
    }
    std::sort(groups.rbegin(), groups.rend());
    if (min_gap && topk_group < n_group)
      *min_gap = std::min(*min_gap, groups[size_t(topk_group - 1)].first - groups[size_t(topk_group)].first);
    std::vector<std::pair<double, int64_t>> candidates;  // biased score, expert
    for (int64_t gi = 0; gi < topk_group; ++gi) {
      const int64_t g = groups[size_t(gi)].second;
      for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) candidates.emplace_back(b[size_t(e)], e);
    }
    std::sort(candidates.rbegin(), candidates.rend());
    if (min_gap && int64_t(candidates.size()) > k)
      *min_gap = std::min(*min_gap, candidates[size_t(k - 1)].first - candidates[size_t(k)].first);
    std::vector<int64_t> chosen;
    Vec w;
    for (int64_t j = 0; j < k; ++j) {
      chosen.push_back(candidates[size_t(j)].second);
      w.push_back(s[size_t(candidates[size_t(j)].second)]);  // unbiased score
    }
    if (renormalize) {
      const double sum = std::accumulate(w.begin(), w.end(), 0.0) + 1e-20;
      for (auto& x : w) x /= sum;
    }
    for (auto& x : w) x *= scale;
    r.experts.push_back(chosen);
    r.weights.push_back(w);
  }
  return r;
}

TEST(Ops, RouteSigmoidGroupedMatchesNaiveDeepseekRule) {
  torch::manual_seed(808);
  for (const char* name : {"tiny-deepseek-v3", "deepseek-v3"}) {
    ModelConfig c = *find_preset(name);
    const int64_t T = 12, E = c.num_experts, k = c.experts_per_token;
    // Biases comparable to the spread of the scores, so they change selections.
    torch::Tensor logits = torch::randn({T, E}), bias = 0.3 * torch::randn({E});
    for (bool renorm : {true, false}) {
      SCOPED_TRACE(std::string(name) + (renorm ? " renormalize" : " raw"));
      Routing r = route_sigmoid_grouped(logits, bias, c.n_group, c.topk_group, k, renorm, c.routed_scaling_factor);
      ASSERT_EQ(r.experts.sizes(), (std::vector<int64_t>{T, k}));
      ASSERT_EQ(r.weights.sizes(), (std::vector<int64_t>{T, k}));
      auto got = by_expert(flat_i64(r.experts), flat(r.weights), T, k);
      double gap = 0;
      NaiveRoute want = naive_sigmoid_grouped(flat(logits), flat(bias), T, E, c.n_group, c.topk_group, k, renorm,
                                              c.routed_scaling_factor, &gap);
      ASSERT_GT(gap, 1e-4) << "near-tie in the inputs; pick another seed";
      EXPECT_LT(routing_distance(got, by_expert(want)), 1e-5);
      if (renorm) {
        Vec w = flat(r.weights);
        for (int64_t t = 0; t < T; ++t)
          EXPECT_NEAR(std::accumulate(w.begin() + t * k, w.begin() + (t + 1) * k, 0.0), c.routed_scaling_factor, 1e-5);
      }
      // Negatives: the bias ignored in selection; group score = max instead of a top-2 sum;
      // a wrong scale; a wrong k.
      auto variant = [&](GroupedOptions o, double scale, int64_t kk) {
        return by_expert(naive_sigmoid_grouped(flat(logits), flat(bias), T, E, c.n_group, c.topk_group, kk, renorm,
                                               scale, nullptr, o));
      };
      EXPECT_EQ(routing_distance(got, variant({false, true}, c.routed_scaling_factor, k)), INFINITY);
      EXPECT_EQ(routing_distance(got, variant({true, false}, c.routed_scaling_factor, k)), INFINITY);
      EXPECT_GT(routing_distance(got, variant({}, 1.0, k)), 0.5);
      EXPECT_EQ(routing_distance(got, variant({}, c.routed_scaling_factor, k - 1)), INFINITY);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Experts

double silu(double g) { return g / (1.0 + std::exp(-g)); }

// One expert's SwiGLU on one token: gate, up [I, H], down [H, I] (row-major slices).
void naive_swiglu_add(const double* x, const double* gate, const double* up, const double* down, int64_t H, int64_t I,
                      double w, double* out) {
  Vec a(static_cast<size_t>(I));
  for (int64_t i = 0; i < I; ++i) {
    double g = 0, u = 0;
    for (int64_t h = 0; h < H; ++h) {
      g += gate[i * H + h] * x[h];
      u += up[i * H + h] * x[h];
    }
    a[size_t(i)] = silu(g) * u;
  }
  for (int64_t h = 0; h < H; ++h) {
    double y = 0;
    for (int64_t i = 0; i < I; ++i) y += down[h * I + i] * a[size_t(i)];
    out[h] += w * y;
  }
}

// Sum over each token's chosen experts e in [lo, hi) of weight * swiglu_e(x).
Vec naive_moe(const Vec& x, const std::vector<int64_t>& experts, const Vec& weights, const Vec& gate, const Vec& up,
              const Vec& down, int64_t T, int64_t H, int64_t I, int64_t k, int64_t lo, int64_t hi) {
  Vec out(size_t(T * H), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = experts[size_t(t * k + j)];
      if (e < lo || e >= hi) continue;
      naive_swiglu_add(&x[size_t(t * H)], &gate[size_t(e * I * H)], &up[size_t(e * I * H)], &down[size_t(e * H * I)], H,
                       I, weights[size_t(t * k + j)], &out[size_t(t * H)]);
    }
  return out;
}

struct MoeCase {
  int64_t T = 10, H = 12, I = 10, E = 8, k = 3;
  torch::Tensor x, gate, up, down, experts, weights;
  MoeCase() {
    x = torch::randn({T, H});
    gate = 0.3 * torch::randn({E, I, H});
    up = 0.3 * torch::randn({E, I, H});
    down = 0.3 * torch::randn({E, H, I});
    // Distinct random experts per token; token 0 uses only experts 0..2 and token 1 only 3..5,
    // so an expert-parallel shard holding 3..5 has a token with nothing and one with everything.
    std::vector<torch::Tensor> rows;
    for (int64_t t = 0; t < T; ++t) rows.push_back(torch::randperm(E, torch::kInt64).narrow(0, 0, k));
    experts = torch::stack(rows);
    experts[0] = i64({2, 0, 1});
    experts[1] = i64({4, 5, 3});
    weights = torch::rand({T, k}) + 0.1;
  }
  Vec naive(int64_t lo, int64_t hi) const {
    return naive_moe(flat(x), flat_i64(experts), flat(weights), flat(gate), flat(up), flat(down), T, H, I, k, lo, hi);
  }
};

TEST(Ops, MoeExpertsMatchesNaiveLoop) {
  torch::manual_seed(909);
  MoeCase m;
  torch::Tensor out = moe_experts(m.x, Routing{m.experts, m.weights}, ExpertWeights{m.gate, m.up, m.down, 0});
  ASSERT_EQ(out.sizes(), m.x.sizes());
  EXPECT_EQ(out.scalar_type(), torch::kFloat32);
  Vec want = m.naive(0, m.E);
  const double tol = 1e-5 * max_abs(want);
  EXPECT_LT(max_abs_err(flat(out), want), tol);
  // Negative: one token's weights permuted across its slots.
  torch::Tensor w2 = m.weights.clone();
  w2[3] = w2[3].flip(0);
  Vec wrong = naive_moe(flat(m.x), flat_i64(m.experts), flat(w2), flat(m.gate), flat(m.up), flat(m.down), m.T, m.H, m.I,
                        m.k, 0, m.E);
  EXPECT_GT(max_abs_err(flat(out), wrong), 100 * tol);
}

TEST(Ops, MoeExpertsExpertParallelShard) {
  torch::manual_seed(910);
  MoeCase m;
  const int64_t first = 3, held = 3;
  ExpertWeights shard{m.gate.narrow(0, first, held).clone(), m.up.narrow(0, first, held).clone(),
                      m.down.narrow(0, first, held).clone(), first};
  Vec got = flat(moe_experts(m.x, Routing{m.experts, m.weights}, shard));
  Vec want = m.naive(first, first + held);
  const double tol = 1e-5 * max_abs(want);
  EXPECT_LT(max_abs_err(got, want), tol);
  // Token 0 routes only outside the shard: exactly zero.
  for (int64_t h = 0; h < m.H; ++h) EXPECT_EQ(got[size_t(h)], 0.0);
  // Token 1 routes only inside: its full output.
  Vec all = m.naive(0, m.E);
  for (int64_t h = 0; h < m.H; ++h) EXPECT_NEAR(got[size_t(m.H + h)], all[size_t(m.H + h)], tol);
  // Negatives: the shard read as experts 0..2, and the full sum.
  ExpertWeights misplaced = shard;
  misplaced.first_expert = 0;
  EXPECT_GT(max_abs_err(flat(moe_experts(m.x, Routing{m.experts, m.weights}, misplaced)), want), 100 * tol);
  EXPECT_GT(max_abs_err(got, all), 100 * tol);
}

TEST(Ops, MoeExpertsTensorParallelHalvesSumToFull) {
  torch::manual_seed(911);
  MoeCase m;
  Routing r{m.experts, m.weights};
  const int64_t half = m.I / 2;
  auto shard = [&](int64_t gate_up_start, int64_t down_start) {
    return ExpertWeights{m.gate.narrow(1, gate_up_start, half).clone(), m.up.narrow(1, gate_up_start, half).clone(),
                         m.down.narrow(2, down_start, half).clone(), 0};
  };
  torch::Tensor sum = moe_experts(m.x, r, shard(0, 0)) + moe_experts(m.x, r, shard(half, half));
  Vec want = m.naive(0, m.E);
  const double tol = 1e-5 * max_abs(want);
  EXPECT_LT(max_abs_err(flat(sum), flat(moe_experts(m.x, r, ExpertWeights{m.gate, m.up, m.down, 0}))), tol);
  EXPECT_LT(max_abs_err(flat(sum), want), tol);
  // Negative: halves of down paired with the wrong halves of gate/up.
  torch::Tensor crossed = moe_experts(m.x, r, shard(0, half)) + moe_experts(m.x, r, shard(half, 0));
  EXPECT_GT(max_abs_err(flat(crossed), want), 100 * tol);
}

TEST(Ops, SwigluMlpMatchesNaive) {
  torch::manual_seed(1010);
  const int64_t T = 6, H = 16, I = 24;
  torch::Tensor x = torch::randn({T, H}), gate = 0.3 * torch::randn({I, H}), up = 0.3 * torch::randn({I, H}),
                down = 0.3 * torch::randn({H, I});
  torch::Tensor y = swiglu_mlp(x, gate, up, down);
  ASSERT_EQ(y.sizes(), x.sizes());
  auto naive = [&](const torch::Tensor& g, const torch::Tensor& u) {
    Vec xs = flat(x), gs = flat(g), us = flat(u), ds = flat(down), out(size_t(T * H), 0.0);
    for (int64_t t = 0; t < T; ++t)
      naive_swiglu_add(&xs[size_t(t * H)], gs.data(), us.data(), ds.data(), H, I, 1.0, &out[size_t(t * H)]);
    return out;
  };
  Vec want = naive(gate, up);
  EXPECT_LT(max_abs_err(flat(y), want), 1e-5 * max_abs(want));
  // Negative: gate and up swapped (silu applied to the wrong projection).
  EXPECT_GT(max_abs_err(flat(y), naive(up, gate)), 1e-2 * max_abs(want));
}

}  // namespace
}  // namespace lb
