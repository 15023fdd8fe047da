// Decode attention over a preallocated KV cache (kernels/decode_attention.h), on fresh random
// inputs with lengths 1..cap, rows of length 0, repeated slots and slots in any order. On the CPU:
// the plain path against a float64 loop over (row, head, key), which a wrong length or KV head
// fails, and against causal_attention on the same keys. On the GPU (skipped without one): the
// split-K kernels in bf16 and f32 against the plain path in f32 at Qwen3-30B-A3B's and
// DeepSeek-V3's shapes, and a CUDA graph replayed after the lengths and the cache change in place,
// bit for bit against an eager call.
#include "harness/runtime/errors.h"
#include "kernels/attention.h"
#include "kernels/decode_attention.h"
#include "oracles/compare.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#if defined(LB_HAVE_CUDA) && TORCH_VERSION_MAJOR >= 2
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define LB_TEST_CUDA_GRAPHS 1
#endif

namespace lb {
namespace {

double rel_l2(const torch::Tensor& a, const torch::Tensor& b) {
  return compare_tensors(a.to(torch::kFloat32).cpu(), b.to(torch::kFloat32).cpu()).rel_l2;
}

// The largest relative L2 error of one row [n, ...] among rows with keys: a whole-tensor norm
// could hide one wrong row (a length-1 row, a last chunk).
double worst_row_rel_l2(const torch::Tensor& got, const torch::Tensor& want, const torch::Tensor& len) {
  const torch::Tensor g = got.to(torch::kFloat64).cpu().flatten(1), w = want.to(torch::kFloat64).cpu().flatten(1);
  const torch::Tensor per_row = (g - w).norm(2, 1) / w.norm(2, 1).clamp_min(1e-30);
  const torch::Tensor with_keys = len.cpu() > 0;
  return with_keys.any().item<bool>() ? per_row.masked_select(with_keys).max().item<double>() : 0.0;
}

// The rows of length 0 hold zeros only.
bool empty_rows_are_zero(const torch::Tensor& out, const torch::Tensor& len) {
  const torch::Tensor empty = (len.cpu() == 0).nonzero().flatten();
  return out.cpu().index_select(0, empty).abs().sum().item<double>() == 0.0;
}

// Which cache slot each query row reads and how many of its positions are valid (int64, CPU).
struct Rows {
  torch::Tensor slot, len;
  Rows to(torch::Device d) const { return {slot.to(d), len.to(d)}; }
};

// Slots at random (repeats, any order; the last row repeats the first's slot), lengths at random
// in 1..cap, and the first rows at the edges: cap, 1, 0.
Rows draw_rows(int64_t n, int64_t slots, int64_t cap) {
  Rows r{torch::randint(0, slots, {n}, torch::kInt64), torch::randint(1, cap + 1, {n}, torch::kInt64)};
  const std::vector<int64_t> edges = {cap, 1, 0};
  for (size_t e = 0; e < edges.size() && int64_t(e) < n; ++e) r.len[int64_t(e)] = edges[e];
  if (n > 1) r.slot[n - 1] = r.slot[0].item<int64_t>();
  return r;
}

// What a float64 reference can be made to get wrong, to show the comparison catches it.
struct Mistake {
  int64_t len_offset = 0;       // each row's length off by this much
  bool kv_head_modulo = false;  // query head h uses KV head h % kv_heads instead of h / group
  bool drop_rope = false;       // MLA scores without the rotary part
};

// Softmax over `scores` of the valid positions, applied to the value rows value(j) of width `dim`.
template <typename Value>
void softmax_weighted_sum(const std::vector<double>& scores, int64_t dim, Value value, double* out) {
  if (scores.empty()) return;  // no keys: zeros
  const double top = *std::max_element(scores.begin(), scores.end());
  double total = 0;
  std::vector<double> acc(size_t(dim), 0.0);
  for (size_t j = 0; j < scores.size(); ++j) {
    const double p = std::exp(scores[j] - top);
    total += p;
    for (int64_t x = 0; x < dim; ++x) acc[size_t(x)] += p * value(int64_t(j), x);
  }
  for (int64_t x = 0; x < dim; ++x) out[x] = acc[size_t(x)] / total;
}

int64_t valid_length(const Rows& rows, int64_t i, int64_t cap, const Mistake& m) {
  return std::clamp<int64_t>(rows.len[i].item<int64_t>() + m.len_offset, 0, cap);
}

// GQA decode in float64, one (row, head, key) at a time.
torch::Tensor reference_gqa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const Rows& rows,
                            double scale, const Mistake& m = {}) {
  const int64_t n = q.size(0), heads = q.size(1), d = q.size(2), cap = k.size(1), kv_heads = k.size(2);
  const torch::Tensor q64 = q.to(torch::kFloat64).contiguous(), k64 = k.to(torch::kFloat64).contiguous(),
                      v64 = v.to(torch::kFloat64).contiguous();
  const auto qa = q64.accessor<double, 3>();
  const auto ka = k64.accessor<double, 4>(), va = v64.accessor<double, 4>();
  torch::Tensor out = torch::zeros({n, heads, d}, torch::kFloat64);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = rows.slot[i].item<int64_t>(), length = valid_length(rows, i, cap, m);
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kvh = m.kv_head_modulo ? h % kv_heads : h / (heads / kv_heads);
      std::vector<double> scores;
      for (int64_t j = 0; j < length; ++j) {
        double dot = 0;
        for (int64_t x = 0; x < d; ++x) dot += qa[i][h][x] * ka[s][j][kvh][x];
        scores.push_back(dot * scale);
      }
      softmax_weighted_sum(scores, d, [&](int64_t j, int64_t x) { return va[s][j][kvh][x]; },
                           out[i][h].data_ptr<double>());
    }
  }
  return out;
}

// MLA decode (absorbed) in float64.
torch::Tensor reference_mla(const torch::Tensor& q_latent, const torch::Tensor& q_pe, const torch::Tensor& latent,
                            const torch::Tensor& pe, const Rows& rows, double scale, const Mistake& m = {}) {
  const int64_t n = q_latent.size(0), heads = q_latent.size(1), rank = q_latent.size(2), rope = q_pe.size(2);
  const int64_t cap = latent.size(1);
  const torch::Tensor ql64 = q_latent.to(torch::kFloat64).contiguous(), qp64 = q_pe.to(torch::kFloat64).contiguous();
  const torch::Tensor l64 = latent.to(torch::kFloat64).contiguous(), p64 = pe.to(torch::kFloat64).contiguous();
  const auto qla = ql64.accessor<double, 3>(), qpa = qp64.accessor<double, 3>();
  const auto la = l64.accessor<double, 3>(), pa = p64.accessor<double, 3>();
  torch::Tensor out = torch::zeros({n, heads, rank}, torch::kFloat64);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = rows.slot[i].item<int64_t>(), length = valid_length(rows, i, cap, m);
    for (int64_t h = 0; h < heads; ++h) {
      std::vector<double> scores;
      for (int64_t j = 0; j < length; ++j) {
        double dot = 0;
        for (int64_t x = 0; x < rank; ++x) dot += qla[i][h][x] * la[s][j][x];
        if (!m.drop_rope)
          for (int64_t x = 0; x < rope; ++x) dot += qpa[i][h][x] * pa[s][j][x];
        scores.push_back(dot * scale);
      }
      softmax_weighted_sum(scores, rank, [&](int64_t j, int64_t x) { return la[s][j][x]; },
                           out[i][h].data_ptr<double>());
    }
  }
  return out;
}

struct GqaCase {
  int64_t heads, kv_heads, head_dim, cap;
  std::string label() const {
    return std::to_string(heads) + "/" + std::to_string(kv_heads) + " heads, D " + std::to_string(head_dim) +
           ", cap " + std::to_string(cap);
  }
};

struct GqaInputs {
  torch::Tensor q, k, v;
  Rows rows;
  double scale;
};

GqaInputs draw_gqa(const GqaCase& c, int64_t n, int64_t slots, torch::Device device = torch::kCPU) {
  const auto o = torch::TensorOptions().device(device);
  return {torch::randn({n, c.heads, c.head_dim}, o) * 2, torch::randn({slots, c.cap, c.kv_heads, c.head_dim}, o),
          torch::randn({slots, c.cap, c.kv_heads, c.head_dim}, o), draw_rows(n, slots, c.cap).to(device),
          1.0 / std::sqrt(double(c.head_dim))};
}

struct MlaCase {
  int64_t heads, rank, rope_dim, cap;
  std::string label() const {
    return std::to_string(heads) + " heads, R " + std::to_string(rank) + ", P " + std::to_string(rope_dim) + ", cap " +
           std::to_string(cap);
  }
};

struct MlaInputs {
  torch::Tensor q_latent, q_pe, latent, pe;
  Rows rows;
  double scale;
};

MlaInputs draw_mla(const MlaCase& c, int64_t n, int64_t slots, torch::Device device = torch::kCPU) {
  const auto o = torch::TensorOptions().device(device);
  return {torch::randn({n, c.heads, c.rank}, o) * 2, torch::randn({n, c.heads, c.rope_dim}, o) * 2,
          torch::randn({slots, c.cap, c.rank}, o), torch::randn({slots, c.cap, c.rope_dim}, o),
          draw_rows(n, slots, c.cap).to(device), 1.0 / std::sqrt(double(c.rank + c.rope_dim))};
}

torch::Tensor run_gqa(const GqaInputs& in, bool fused) {
  return decode_attention(in.q, in.k, in.v, in.rows.slot, in.rows.len, in.scale, fused);
}

torch::Tensor run_mla(const MlaInputs& in, bool fused) {
  return decode_attention_mla(in.q_latent, in.q_pe, in.latent, in.pe, in.rows.slot, in.rows.len, in.scale, fused);
}

TEST(DecodeAttention, PlainGqaMatchesFloat64Loop) {
  torch::manual_seed(11);
  for (const GqaCase& c : {GqaCase{4, 4, 16, 23}, GqaCase{8, 2, 16, 23}, GqaCase{6, 3, 16, 9}, GqaCase{32, 4, 128, 40},
                           GqaCase{16, 2, 128, 40}, GqaCase{2, 1, 128, 17}}) {
    const GqaInputs in = draw_gqa(c, /*n=*/7, /*slots=*/4);
    const torch::Tensor got = run_gqa(in, /*fused=*/false);
    EXPECT_EQ(got.sizes(), in.q.sizes()) << c.label();
    EXPECT_LT(rel_l2(got, reference_gqa(in.q, in.k, in.v, in.rows, in.scale)), kFp32MaxRelL2) << c.label();
    EXPECT_TRUE(empty_rows_are_zero(got, in.rows.len)) << c.label();
    EXPECT_TRUE(torch::equal(run_gqa(in, /*fused=*/true), got)) << c.label() << ": on the CPU fused is the plain path";
  }
}

TEST(DecodeAttention, PlainMlaMatchesFloat64Loop) {
  torch::manual_seed(12);
  for (const auto& [c, n] : {std::pair{MlaCase{4, 32, 8, 30}, 6}, std::pair{MlaCase{3, 512, 64, 20}, 3}}) {
    const MlaInputs in = draw_mla(c, n, /*slots=*/3);
    const torch::Tensor got = run_mla(in, /*fused=*/false);
    EXPECT_EQ(got.sizes(), in.q_latent.sizes()) << c.label();
    EXPECT_LT(rel_l2(got, reference_mla(in.q_latent, in.q_pe, in.latent, in.pe, in.rows, in.scale)), kFp32MaxRelL2)
        << c.label();
    EXPECT_TRUE(empty_rows_are_zero(got, in.rows.len)) << c.label();
    EXPECT_TRUE(torch::equal(run_mla(in, /*fused=*/true), got)) << c.label();
  }
}

// The comparison above can fail: a reference with a length off by one, the wrong KV head or no
// rotary part is far from the plain path.
TEST(DecodeAttention, Float64LoopCatchesWrongLengthsAndHeads) {
  torch::manual_seed(13);
  const GqaInputs g = draw_gqa({8, 2, 16, 23}, 7, 4);
  const torch::Tensor got = run_gqa(g, false);
  EXPECT_GT(rel_l2(got, reference_gqa(g.q, g.k, g.v, g.rows, g.scale, {/*len_offset=*/-1})), 1e-3);
  EXPECT_GT(rel_l2(got, reference_gqa(g.q, g.k, g.v, g.rows, g.scale, {0, /*kv_head_modulo=*/true})), 1e-3);
  const MlaInputs m = draw_mla({4, 32, 8, 30}, 6, 3);
  const torch::Tensor got_mla = run_mla(m, false);
  EXPECT_GT(rel_l2(got_mla, reference_mla(m.q_latent, m.q_pe, m.latent, m.pe, m.rows, m.scale, {/*len_offset=*/1})),
            1e-3);
  EXPECT_GT(rel_l2(got_mla, reference_mla(m.q_latent, m.q_pe, m.latent, m.pe, m.rows, m.scale, {0, false, true})),
            1e-3);
}

// causal_attention on the same keys laid out as packed sequences, one per row: the row's query at
// position len - 1 sees positions 0..len-1 of its slot. MLA is attention with one KV head whose
// key is [latent, pe] and whose value is the latent row.
TEST(DecodeAttention, PlainMatchesCausalAttention) {
  torch::manual_seed(14);
  const int64_t n = 6;
  auto packed = [&](const Rows& rows, const torch::Tensor& cache, std::vector<int64_t>& lens) {
    std::vector<torch::Tensor> parts;
    lens.clear();
    for (int64_t i = 0; i < n; ++i) {
      lens.push_back(rows.len[i].item<int64_t>());
      parts.push_back(cache[rows.slot[i].item<int64_t>()].narrow(0, 0, lens.back()));
    }
    return torch::cat(parts);
  };
  std::vector<int64_t> lens;
  for (const GqaCase& c : {GqaCase{8, 2, 16, 29}, GqaCase{32, 4, 128, 33}}) {
    const GqaInputs g = draw_gqa(c, n, 3);
    const torch::Tensor k = packed(g.rows, g.k, lens), v = packed(g.rows, g.v, lens);
    const TokenPlacement queries{torch::arange(n, torch::kInt64), g.rows.len - 1};
    const TokenPlacement keys = packed_placement(lens, torch::kCPU);
    const torch::Tensor want = causal_attention(g.q, k, v, queries, keys, g.scale);
    EXPECT_LT(rel_l2(run_gqa(g, false), want), kFp32MaxRelL2) << c.label();
  }
  const MlaInputs m = draw_mla({4, 32, 8, 30}, n, 3);
  const torch::Tensor keys_cache = torch::cat({m.latent, m.pe}, -1).unsqueeze(2);  // [slots, cap, 1, R + P]
  const torch::Tensor k = packed(m.rows, keys_cache, lens), v = packed(m.rows, m.latent.unsqueeze(2), lens);
  const TokenPlacement queries{torch::arange(n, torch::kInt64), m.rows.len - 1};
  const TokenPlacement keys = packed_placement(lens, torch::kCPU);
  const torch::Tensor want = causal_attention(torch::cat({m.q_latent, m.q_pe}, -1), k, v, queries, keys, m.scale);
  EXPECT_LT(rel_l2(run_mla(m, false), want), kFp32MaxRelL2) << "MLA";
}

TEST(DecodeAttention, SplitFillsTheGpuWithoutOversplitting) {
  const int64_t sms = 132, cap = 1100;
  auto expect_valid = [&](const DecodeSplit& s, int64_t c) {
    EXPECT_EQ(s.chunk % 16, 0);
    EXPECT_LE(s.chunk, 512);
    EXPECT_GE(s.chunk * s.chunks, c);
    EXPECT_LT((s.chunks - 1) * s.chunk, c) << "a chunk with no positions";
  };
  // Qwen3-30B-A3B at batch 1: 4 KV heads, one block each per chunk, and yet about one block per SM.
  const DecodeSplit one = decode_split(4, cap, sms);
  expect_valid(one, cap);
  EXPECT_GE(4 * one.chunks, sms);
  // At batch 64 the rows alone fill the GPU: only the chunks a block's shared memory needs.
  const DecodeSplit many = decode_split(64 * 4, cap, sms);
  expect_valid(many, cap);
  EXPECT_EQ(many.chunks, 3);
  expect_valid(decode_split(1, 5, sms), 5);
  expect_valid(decode_split(1, 100000, sms), 100000);
}

TEST(DecodeAttention, RejectsBadInputs) {
  const GqaInputs g = draw_gqa({8, 2, 16, 9}, 3, 2);
  const Rows& r = g.rows;
  EXPECT_THROW(decode_attention(g.q, g.k, g.v, r.slot.to(torch::kInt32), r.len, 1.0, false), InputError);
  EXPECT_THROW(decode_attention(g.q, g.k, g.v, r.slot, r.len.narrow(0, 0, 2), 1.0, false), InputError);
  EXPECT_THROW(decode_attention(g.q.narrow(1, 0, 7), g.k, g.v, r.slot, r.len, 1.0, false), InputError);
  EXPECT_THROW(decode_attention(g.q, g.k, g.v.narrow(1, 0, 8), r.slot, r.len, 1.0, false), InputError);
  EXPECT_THROW(decode_attention(g.q, g.k.to(torch::kFloat64), g.v, r.slot, r.len, 1.0, false), InputError);
  const MlaInputs m = draw_mla({4, 32, 8, 30}, 3, 2);
  EXPECT_THROW(decode_attention_mla(m.q_latent, m.q_pe, m.latent, m.pe.narrow(1, 0, 29), m.rows.slot, m.rows.len, 1.0,
                                    false),
               InputError);
  EXPECT_THROW(decode_attention_mla(m.q_latent, m.q_pe.narrow(1, 0, 3), m.latent, m.pe, m.rows.slot, m.rows.len, 1.0,
                                    false),
               InputError);
}

// The kernel (asserted to run) in `dtype` against the plain path in f32 on the same inputs.
void expect_gqa_kernel_matches(const GqaCase& c, int64_t n, torch::ScalarType dtype, double tol) {
  const GqaInputs in = draw_gqa(c, n, n + 2, torch::Device("cuda"));
  const torch::Tensor want = run_gqa(in, /*fused=*/false);
  GqaInputs low = in;
  low.q = in.q.to(dtype), low.k = in.k.to(dtype), low.v = in.v.to(dtype);
  const std::string what = c.label() + ", n " + std::to_string(n) + ", " + std::string(c10::toString(dtype));
  ASSERT_TRUE(decode_attention_uses_kernel(low.q, low.k, low.v)) << what;
  const torch::Tensor got = run_gqa(low, /*fused=*/true);
  EXPECT_EQ(got.scalar_type(), dtype) << what;
  EXPECT_FALSE(got.isnan().any().item<bool>()) << what;
  EXPECT_LT(rel_l2(got, want), tol) << what;
  EXPECT_LT(worst_row_rel_l2(got, want, in.rows.len), 2 * tol) << what;
  EXPECT_TRUE(empty_rows_are_zero(got, in.rows.len)) << what;
}

void expect_mla_kernel_matches(const MlaCase& c, int64_t n, torch::ScalarType dtype, double tol) {
  const MlaInputs in = draw_mla(c, n, n + 2, torch::Device("cuda"));
  const torch::Tensor want = run_mla(in, /*fused=*/false);
  MlaInputs low = in;
  low.q_latent = in.q_latent.to(dtype), low.q_pe = in.q_pe.to(dtype);
  low.latent = in.latent.to(dtype), low.pe = in.pe.to(dtype);
  const std::string what = c.label() + ", n " + std::to_string(n) + ", " + std::string(c10::toString(dtype));
  ASSERT_TRUE(decode_attention_mla_uses_kernel(low.q_latent, low.q_pe, low.latent, low.pe)) << what;
  const torch::Tensor got = run_mla(low, /*fused=*/true);
  EXPECT_EQ(got.scalar_type(), dtype) << what;
  EXPECT_FALSE(got.isnan().any().item<bool>()) << what;
  EXPECT_LT(rel_l2(got, want), tol) << what;
  EXPECT_LT(worst_row_rel_l2(got, want, in.rows.len), 2 * tol) << what;
  EXPECT_TRUE(empty_rows_are_zero(got, in.rows.len)) << what;
}

#define LB_SKIP_WITHOUT_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine"

// Qwen3-30B-A3B: 32 query heads over 4 KV heads of 128 (16 over 2 per rank at TP 2).
TEST(GpuDecodeAttention, GqaKernelMatchesPlainAtQwenShapes) {
  LB_SKIP_WITHOUT_GPU();
  torch::manual_seed(21);
  for (const auto& [dtype, tol] : {std::pair{torch::kBFloat16, 1e-2}, std::pair{torch::kFloat32, kFp32MaxRelL2}})
    for (const GqaCase& c : {GqaCase{32, 4, 128, 1100}, GqaCase{16, 2, 128, 1100}})
      for (int64_t n : {1, 8, 64}) expect_gqa_kernel_matches(c, n, dtype, tol);
}

// The other instantiations: head sizes 64 and 256, f16, one query head per KV head, 16 (two
// blocks of heads), 3 (a partial block), and a cache shorter than one chunk.
TEST(GpuDecodeAttention, GqaKernelOtherHeadSizesAndGroups) {
  LB_SKIP_WITHOUT_GPU();
  torch::manual_seed(22);
  expect_gqa_kernel_matches({32, 4, 128, 300}, 8, torch::kHalf, 1e-2);
  expect_gqa_kernel_matches({8, 8, 64, 300}, 5, torch::kBFloat16, 1e-2);
  expect_gqa_kernel_matches({16, 1, 256, 300}, 5, torch::kBFloat16, 1e-2);
  expect_gqa_kernel_matches({12, 4, 64, 77}, 5, torch::kFloat32, kFp32MaxRelL2);
  expect_gqa_kernel_matches({8, 2, 256, 600}, 3, torch::kFloat32, kFp32MaxRelL2);
  expect_gqa_kernel_matches({16, 2, 128, 5}, 4, torch::kBFloat16, 1e-2);
}

// A cache of over 256 chunks of the largest size (512): the merge holds the weights of 256 chunks
// at a time, so the first row (at full length) spans two of its tiles on any GPU. f32 is held to
// 1e-4, not 1e-5: both sides sum 131584 positions, in different orders. Leaving out the second
// tile (its one chunk, 0.4% of the positions) would move that row by far more (~6%, estimated).
TEST(GpuDecodeAttention, MergeOverMoreChunksThanOneTile) {
  LB_SKIP_WITHOUT_GPU();
  torch::manual_seed(26);
  const int64_t cap = 512 * 257;
  ASSERT_GT(decode_split(3, cap, 132).chunks, 256);
  expect_gqa_kernel_matches({2, 1, 64, cap}, 3, torch::kFloat32, 1e-4);
  expect_gqa_kernel_matches({2, 1, 128, cap}, 3, torch::kBFloat16, 1e-2);
}

// DeepSeek-V3: 128 heads (64 per rank at TP 2), kv_lora_rank 512, rotary 64.
TEST(GpuDecodeAttention, MlaKernelMatchesPlainAtDeepSeekShapes) {
  LB_SKIP_WITHOUT_GPU();
  torch::manual_seed(23);
  for (const auto& [dtype, tol] : {std::pair{torch::kBFloat16, 1e-2}, std::pair{torch::kFloat32, kFp32MaxRelL2}})
    for (int64_t heads : {128, 64})
      for (int64_t n : {1, 8, 64}) expect_mla_kernel_matches({heads, 512, 64, 1100}, n, dtype, tol);
  expect_mla_kernel_matches({20, 512, 64, 200}, 3, torch::kHalf, 1e-2);  // a partial block of heads
}

#ifdef LB_TEST_CUDA_GRAPHS
// Captures call() in a CUDA graph on a side stream and replays it: each replay equals a fresh
// eager call bit for bit, also after change() rewrites the inputs in place (and differs from the
// first replay then, so the graph did read them).
void expect_replay_matches_eager(const std::function<torch::Tensor()>& call, const std::function<void()>& change,
                                 const std::string& what) {
  torch::cuda::synchronize();
  at::cuda::CUDAGraph graph;
  torch::Tensor out;
  {
    const c10::cuda::CUDAStreamGuard side(c10::cuda::getStreamFromPool());
    call();  // outside the capture: lazy initialization, allocator pools
    graph.capture_begin();
    out = call();
    graph.capture_end();
  }
  torch::cuda::synchronize();
  graph.replay();
  const torch::Tensor first = out.clone();
  EXPECT_TRUE(torch::equal(first, call())) << what << ": first replay";
  change();
  graph.replay();
  EXPECT_TRUE(torch::equal(out, call())) << what << ": replay after new lengths, slots and cache contents";
  EXPECT_FALSE(torch::equal(out, first)) << what << ": the replay did not read the new inputs";
}

// New lengths (other edges) and slots written into the captured tensors.
void redraw_rows(const Rows& rows, int64_t slots, int64_t cap) {
  const int64_t n = rows.len.size(0);
  Rows fresh = draw_rows(n, slots, cap);
  fresh.len = fresh.len.flip(0);  // the length-0 row elsewhere
  rows.slot.copy_(fresh.slot);
  rows.len.copy_(fresh.len);
}
#endif

TEST(GpuDecodeAttention, GraphReplayMatchesEager) {
  LB_SKIP_WITHOUT_GPU();
#ifndef LB_TEST_CUDA_GRAPHS
  GTEST_SKIP() << "CUDA graphs are tested with LibTorch 2";
#else
  torch::manual_seed(24);
  const torch::Device cuda("cuda");
  const int64_t n = 8, slots = 10, cap = 1100;
  GqaInputs g = draw_gqa({32, 4, 128, cap}, n, slots, cuda);
  g.q = g.q.to(torch::kBFloat16), g.k = g.k.to(torch::kBFloat16), g.v = g.v.to(torch::kBFloat16);
  ASSERT_TRUE(decode_attention_uses_kernel(g.q, g.k, g.v));
  expect_replay_matches_eager(
      [&] { return run_gqa(g, true); },
      [&] {
        redraw_rows(g.rows, slots, cap);
        g.k.copy_(torch::randn_like(g.k));
        g.v.copy_(torch::randn_like(g.v));
      },
      "GQA kernel");
  MlaInputs m = draw_mla({128, 512, 64, cap}, n, slots, cuda);
  m.q_latent = m.q_latent.to(torch::kBFloat16), m.q_pe = m.q_pe.to(torch::kBFloat16);
  m.latent = m.latent.to(torch::kBFloat16), m.pe = m.pe.to(torch::kBFloat16);
  ASSERT_TRUE(decode_attention_mla_uses_kernel(m.q_latent, m.q_pe, m.latent, m.pe));
  expect_replay_matches_eager(
      [&] { return run_mla(m, true); },
      [&] {
        redraw_rows(m.rows, slots, cap);
        m.latent.copy_(torch::randn_like(m.latent));
        m.pe.copy_(torch::randn_like(m.pe));
      },
      "MLA kernel");
#endif
}

// The plain path (what `fused` falls back to for tiny models' head sizes) also replays in a graph.
TEST(GpuDecodeAttention, PlainPathReplaysInGraph) {
  LB_SKIP_WITHOUT_GPU();
#ifndef LB_TEST_CUDA_GRAPHS
  GTEST_SKIP() << "CUDA graphs are tested with LibTorch 2";
#else
  torch::manual_seed(25);
  const int64_t n = 5, slots = 6, cap = 50;
  GqaInputs g = draw_gqa({8, 2, 32, cap}, n, slots, torch::Device("cuda"));
  ASSERT_FALSE(decode_attention_uses_kernel(g.q, g.k, g.v));
  expect_replay_matches_eager(
      [&] { return run_gqa(g, true); },
      [&] {
        redraw_rows(g.rows, slots, cap);
        g.k.copy_(torch::randn_like(g.k));
      },
      "GQA plain");
  MlaInputs m = draw_mla({4, 32, 8, cap}, n, slots, torch::Device("cuda"));
  expect_replay_matches_eager(
      [&] { return run_mla(m, true); },
      [&] {
        redraw_rows(m.rows, slots, cap);
        m.latent.copy_(torch::randn_like(m.latent));
      },
      "MLA plain");
#endif
}

}  // namespace
}  // namespace lb
