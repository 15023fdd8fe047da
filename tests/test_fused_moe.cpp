// The fused MoE path (sorted pairs, grouped GEMMs, fixed-order combine) against the plain
// LibTorch oracle, on fresh random inputs: in fp32 on the CPU (the sorting, shards and combine),
// and in bf16 on a GPU (the decode kernels, cuBLAS's grouped GEMM, the padded batched GEMM and
// the row kernels; skipped without one).
#include "kernels/fused_moe.h"
#include "kernels/fused_routing.h"
#include "kernels/small_linear.h"
#include "kernels/grouped_linear.h"
#include "kernels/moe_steps.h"
#include "kernels/moe_slots.h"
#include "oracles/compare.h"

#include <gtest/gtest.h>

#ifdef LB_HAVE_CUDA
#include "kernels/cuda/moe_decode.h"
#include "kernels/cuda/moe_stream.h"
#include "kernels/cuda_glue.h"
#endif

namespace lb {
namespace {

struct MoeCase {
  int64_t tokens, hidden, inter, experts, k;
};

// Gate and up in one tensor, as loaded models hold them (the tests that build ExpertWeights from
// separate tensors cover the other case).
ExpertWeights random_experts(const MoeCase& c, torch::TensorOptions o) {
  const double s = 1.0 / std::sqrt(double(c.hidden));
  return stack_experts(torch::randn({c.experts, c.inter, c.hidden}, o) * s,
                       torch::randn({c.experts, c.inter, c.hidden}, o) * s,
                       torch::randn({c.experts, c.hidden, c.inter}, o) / std::sqrt(double(c.inter)));
}

Routing random_routing(const MoeCase& c, torch::Device device) {
  return route_softmax_topk(torch::randn({c.tokens, c.experts}, torch::TensorOptions().device(device)), c.k, true);
}

// random_experts rounded to bf16, as the GPU tests run them.
ExpertWeights bf16_experts(const MoeCase& c, torch::Device device) {
  const ExpertWeights w = random_experts(c, torch::TensorOptions().device(device));
  return stack_experts(w.gate.to(torch::kBFloat16), w.up.to(torch::kBFloat16), w.down.to(torch::kBFloat16),
                       w.first_expert);
}

// The oracle in fp32 on the same bf16 inputs and weights the fused path gets.
torch::Tensor fp32_oracle(const torch::Tensor& x, const Routing& r, const ExpertWeights& w) {
  return moe_experts(x.to(torch::kFloat32), r,
                     {w.gate.to(torch::kFloat32), w.up.to(torch::kFloat32), w.down.to(torch::kFloat32),
                      w.first_expert});
}

double rel_l2(const torch::Tensor& a, const torch::Tensor& b) {
  return compare_tensors(a.to(torch::kFloat32).cpu(), b.to(torch::kFloat32).cpu()).rel_l2;
}

TEST(FusedMoe, MatchesOracleOnCpu) {
  torch::manual_seed(1);
  for (const MoeCase& c : {MoeCase{37, 48, 20, 8, 3}, MoeCase{1, 64, 16, 16, 4}, MoeCase{200, 32, 24, 32, 8}}) {
    const ExpertWeights w = random_experts(c, torch::TensorOptions());
    const torch::Tensor x = torch::randn({c.tokens, c.hidden});
    const Routing r = random_routing(c, torch::kCPU);
    const torch::Tensor want = moe_experts(x, r, w), got = fused_moe_experts(x, r, w);
    EXPECT_LT(rel_l2(got, want), 1e-6) << c.tokens << " tokens, " << c.experts << " experts";
    EXPECT_GT(want.norm().item<double>(), 0);
  }
}

// Every expert chosen equally often: the padded batched-GEMM path.
TEST(FusedMoe, BalancedRoutingMatchesOracle) {
  torch::manual_seed(5);
  const MoeCase c{64, 48, 20, 8, 4};
  const ExpertWeights w = random_experts(c, torch::TensorOptions());
  const torch::Tensor x = torch::randn({c.tokens, c.hidden});
  const torch::Tensor t = torch::arange(c.tokens).unsqueeze(1), j = torch::arange(c.k).unsqueeze(0);
  Routing r{(t + 2 * j) % c.experts, torch::softmax(torch::randn({c.tokens, c.k}), 1)};
  EXPECT_LT(rel_l2(fused_moe_experts(x, r, w), moe_experts(x, r, w)), 1e-6);
  // One expert a little busier: still padded; then one idle expert: grouped.
  r.experts[0][0] = (r.experts[0][0].item<int64_t>() + 1) % c.experts;
  EXPECT_LT(rel_l2(fused_moe_experts(x, r, w), moe_experts(x, r, w)), 1e-6);
  r.experts.masked_fill_(r.experts == 3, 4);
  EXPECT_LT(rel_l2(fused_moe_experts(x, r, w), moe_experts(x, r, w)), 1e-6);
}

TEST(FusedMoe, ExpertAndTensorShardsMatchOracle) {
  torch::manual_seed(2);
  const MoeCase c{53, 48, 20, 8, 3};
  const ExpertWeights full = random_experts(c, torch::TensorOptions());
  const torch::Tensor x = torch::randn({c.tokens, c.hidden});
  const Routing r = random_routing(c, torch::kCPU);
  // Expert parallel: experts 2..5 here; tokens routed elsewhere contribute nothing.
  ExpertWeights ep{full.gate.narrow(0, 2, 4), full.up.narrow(0, 2, 4), full.down.narrow(0, 2, 4), 2};
  EXPECT_LT(rel_l2(fused_moe_experts(x, r, ep), moe_experts(x, r, ep)), 1e-6);
  // Tensor parallel: half of every expert's intermediate dimension.
  ExpertWeights tp{full.gate.narrow(1, 10, 10), full.up.narrow(1, 10, 10), full.down.narrow(2, 10, 10), 0};
  EXPECT_LT(rel_l2(fused_moe_experts(x, r, tp), moe_experts(x, r, tp)), 1e-6);
  // No tokens at all, and tokens none of whose experts are here.
  EXPECT_EQ(fused_moe_experts(x.narrow(0, 0, 0), Routing{r.experts.narrow(0, 0, 0), r.weights.narrow(0, 0, 0)}, full)
                .size(0),
            0);
  ExpertWeights none{full.gate.narrow(0, 0, 1), full.up.narrow(0, 0, 1), full.down.narrow(0, 0, 1), 100};
  EXPECT_EQ(fused_moe_experts(x, r, none).abs().max().item<double>(), 0.0);
}

TEST(GroupedLinear, RejectsMismatchedGroups) {
  EXPECT_THROW(grouped_linear(torch::randn({5, 4}), {2, 2}, torch::randn({2, 3, 4})), c10::Error);
  EXPECT_THROW(grouped_linear(torch::randn({4, 4}), {2, 2}, torch::randn({3, 3, 4})), c10::Error);
}

// bf16 on the GPU against the fp32 oracle on the same inputs: relative error < 1e-2, no NaN,
// every row written (rows of tokens with experts get nonzero output).
TEST(GpuFusedMoe, Bf16MatchesOracle) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  torch::manual_seed(3);
  const torch::Device cuda("cuda");
  // Streamed kernels (hidden and inter multiples of 64, up to 8192 pairs): 8 pairs a pass (8
  // tokens on 128 experts, half a pair per expert), 16 (160 tokens; 33 tokens with hidden 7168 on
  // 64 experts, 4 an expert; 4 tokens on 8 experts), with stages of 128 columns; on other GPUs
  // also 32 (300 tokens, inter 384) and 64 (600 and 1024 tokens; 64 tokens on 8 experts, some
  // pairs passing twice; 700 tokens with hidden 1984 and inter 448, whose last 128-row tiles are
  // partial and whose stages stay 64 columns), which StreamedKernelsMatchOracleAtEveryPassSize
  // covers on sm_90. The warp-per-row kernel where 64 does not divide the sizes (hidden 1000,
  // inter 520). On sm_90 the warpgroup kernels take 16 to 128 pairs an expert on average (300,
  // 600, 1024 and 700 tokens, 64 tokens on 8 experts; gate/up's narrow block up to 40, at 300 and
  // 600 tokens and the expert-parallel shard at 160; 600 tokens on 16 experts at top 4, 150
  // pairs an expert counted with those held elsewhere, takes their largest tiles, whose passes of
  // 128 pairs take the pairs as the products' rows, as at 1024 tokens; where an expert would take
  // more than one such pass, three warpgroups take up to 192 pairs a pass, the third sitting out
  // at 128 pairs and fewer, the second too at 64 and fewer: 600 tokens on 16 experts, 2048 and
  // 8192 tokens, and 200 tokens on 8 of 8 experts, 200 pairs each, in passes of 192 and 8), past
  // 8192 pairs too with no host sync (1100 tokens, 8800 pairs; 2048 and 8192 tokens; 8500 tokens
  // on 64 experts, 68000 pairs, up to the 131072 the device sort takes with byte keys; grouped
  // GEMM on other GPUs); padded batched GEMM (17000 tokens, 136000 pairs; 8192 tokens on other
  // GPUs).
  // Per-pair kernels (up to two tokens, hidden 7168 included; 2 tokens on 8 of 8 experts: both
  // tokens share every expert).
  for (const MoeCase& c : {MoeCase{8192, 2048, 768, 128, 8}, MoeCase{1, 2048, 768, 128, 8},
                           MoeCase{33, 7168, 256, 64, 8}, MoeCase{600, 2048, 768, 128, 8}, MoeCase{1100, 2048, 768, 128, 8},
                           MoeCase{64, 1024, 512, 8, 8}, MoeCase{8, 2048, 768, 128, 8}, MoeCase{40, 1000, 520, 8, 8},
                           MoeCase{2, 7168, 256, 64, 8}, MoeCase{4, 1024, 512, 8, 8}, MoeCase{160, 2048, 768, 128, 8},
                           MoeCase{300, 2048, 384, 128, 8}, MoeCase{1024, 2048, 768, 128, 8},
                           MoeCase{700, 1984, 448, 128, 8}, MoeCase{600, 512, 256, 16, 4},
                           MoeCase{2048, 2048, 768, 128, 8}, MoeCase{2, 1024, 512, 8, 8},
                           MoeCase{8500, 512, 256, 64, 8}, MoeCase{16, 7168, 256, 64, 8},
                           MoeCase{17000, 512, 256, 64, 8}, MoeCase{200, 1024, 512, 8, 8}}) {
    const ExpertWeights w16 = bf16_experts(c, cuda);
    const torch::Tensor x = torch::randn({c.tokens, c.hidden}, torch::TensorOptions().device(cuda)).to(torch::kBFloat16);
    const Routing r = random_routing(c, cuda);
    const torch::Tensor want = fp32_oracle(x, r, w16), got = fused_moe_experts(x, r, w16);
    EXPECT_FALSE(got.isnan().any().item<bool>());
    EXPECT_LT(rel_l2(got, want), 1e-2) << c.tokens << " tokens";
    EXPECT_EQ((got.abs().sum(1) == 0).sum().item<int64_t>(), 0) << "rows left unwritten";
    // An expert-parallel shard: pairs routed elsewhere are skipped, their tokens' rows partial.
    const int64_t held = c.experts / 4;
    const ExpertWeights ep{w16.gate.narrow(0, held, held), w16.up.narrow(0, held, held),
                           w16.down.narrow(0, held, held), held};
    EXPECT_LT(rel_l2(fused_moe_experts(x, r, ep), fp32_oracle(x, r, ep)), 1e-2) << c.tokens << " tokens, EP";
  }
}

// The streamed kernels (kernels/cuda/moe_stream.h) at each pass size they choose (8, 16, 32 and 64
// pairs: 2, 8, 16 and 40 pairs an expert on average; also 8 at 0.5, most experts idle) after the
// device sort, against the fp32 oracle, with down waiting for the whole gate/up kernel and for its
// expert's counted rows (the same bits), and an expert-parallel shard at the largest. On sm_90
// fused_moe_experts gives 16 pairs an expert and more to the warpgroup kernels, so the larger
// passes are reached only here there.
TEST(GpuFusedMoe, StreamedKernelsMatchOracleAtEveryPassSize) {
#ifndef LB_HAVE_CUDA
  GTEST_SKIP() << "built without CUDA: this check runs on the GPU machine";
#else
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  torch::manual_seed(23);
  const torch::Device cuda("cuda");
  // counted: down waits for its expert's rows, counted by gate/up, not for the whole kernel.
  const auto streamed = [](const torch::Tensor& x, const Routing& r, const ExpertWeights& w, bool counted) {
    const int64_t tokens = x.size(0), k = r.experts.size(1), pairs = r.experts.numel(), held = w.down.size(0);
    const int64_t hidden = x.size(1), inter = w.down.size(2);
    const torch::Tensor experts = r.experts.to(torch::kInt64).contiguous();
    const torch::Tensor weights = r.weights.to(torch::kFloat32).contiguous();
    const auto index = experts.options();
    torch::Tensor order = torch::empty({pairs}, index), offsets = torch::empty({held + 1}, index);
    torch::Tensor row_of_pair = torch::empty({pairs}, index);
    torch::Tensor act = torch::empty({pairs, inter}, x.options()), y = torch::empty({pairs, hidden}, x.options());
    const torch::Tensor ready = torch::full({held}, 12345, index.dtype(torch::kInt32));  // the sort clears it
    int* const counts = counted ? ready.data_ptr<int>() : nullptr;
    const cudaStream_t stream = stream_of(x);
    check_launch(cuda::moe_sort_pairs(experts.data_ptr<int64_t>(), pairs, w.first_expert, held,
                                      order.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(),
                                      row_of_pair.data_ptr<int64_t>(), stream, counts),
                 "pair sort");
    check_launch(cuda::moe_stream_gate_up(cuda::Dtype::BF16, x.data_ptr(), w.gate_up.data_ptr(),
                                          order.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(),
                                          weights.data_ptr<float>(), act.data_ptr(), held, pairs, inter, hidden, k,
                                          stream, counts),
                 "streamed gate/up");
    check_launch(cuda::moe_stream_down(cuda::Dtype::BF16, act.data_ptr(), w.down.data_ptr(),
                                       offsets.data_ptr<int64_t>(), y.data_ptr(), held, pairs, hidden, inter, stream,
                                       counts),
                 "streamed down");
    return combine_pairs(y, row_of_pair, tokens, k);
  };
  for (const int64_t tokens : {4, 16, 64, 128, 320}) {  // 64 experts at top 8
    const MoeCase c{tokens, 1024, 512, 64, 8};
    const ExpertWeights w16 = bf16_experts(c, cuda);
    const torch::Tensor x = torch::randn({c.tokens, c.hidden}, torch::TensorOptions().device(cuda)).to(torch::kBFloat16);
    const Routing r = random_routing(c, cuda);
    const torch::Tensor got = streamed(x, r, w16, false);
    EXPECT_TRUE(torch::equal(streamed(x, r, w16, true), got)) << tokens << " tokens: counted rows";
    EXPECT_FALSE(got.isnan().any().item<bool>()) << tokens << " tokens";
    EXPECT_LT(rel_l2(got, fp32_oracle(x, r, w16)), 1e-2) << tokens << " tokens";
    EXPECT_EQ((got.abs().sum(1) == 0).sum().item<int64_t>(), 0) << tokens << " tokens: rows left unwritten";
    if (tokens == 320) {  // experts 16..31 here: the pairs of the others sort last and are skipped
      const ExpertWeights ep = stack_experts(w16.gate.narrow(0, 16, 16), w16.up.narrow(0, 16, 16),
                                             w16.down.narrow(0, 16, 16), 16);
      const torch::Tensor shard = streamed(x, r, ep, true);
      EXPECT_LT(rel_l2(shard, fp32_oracle(x, r, ep)), 1e-2) << "expert-parallel shard";
      EXPECT_TRUE(torch::equal(streamed(x, r, ep, false), shard)) << "expert-parallel shard, counted rows";
    }
  }
#endif
}

// The device pair sort (kernels/cuda/moe_decode.h) against LibTorch's stable sort on the CPU:
// order, offsets and each pair's position, exactly. Uniform routing up to kMaxSortPairs, a few
// experts taking every pair, experts held elsewhere (their pairs last, position -1), 1024 experts,
// a single pair.
TEST(GpuFusedMoe, PairSortMatchesStableSort) {
#ifndef LB_HAVE_CUDA
  GTEST_SKIP() << "built without CUDA: this check runs on the GPU machine";
#else
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  torch::manual_seed(17);
  struct SortCase {
    int64_t pairs, experts, held, first, chosen_from;  // chosen_from: experts drawn from [0, chosen_from)
  };
  // The keys sit in dynamic shared memory sized to the pairs, a byte each up to 255 experts held
  // (131072 pairs at most), else two (65536): past 48 KB the launch opts in beyond the default
  // (131072 on 128 experts, 65536 on 1024), below it not (20000 with experts held elsewhere, 8192
  // on 1024); 255 experts held, the most with byte keys, and 256, the fewest with two bytes.
  for (const SortCase& c : {SortCase{131072, 128, 128, 0, 128}, SortCase{65536, 1024, 1024, 0, 1024},
                            SortCase{20000, 128, 32, 64, 128}, SortCase{8192, 128, 128, 0, 128},
                            SortCase{4096, 128, 128, 0, 3}, SortCase{296, 128, 32, 64, 128},
                            SortCase{8192, 1024, 1024, 0, 1024}, SortCase{5000, 256, 64, 0, 256},
                            SortCase{3000, 300, 255, 0, 300}, SortCase{3000, 300, 256, 0, 300},
                            SortCase{1, 256, 256, 0, 256}, SortCase{64, 8, 8, 0, 8}}) {
    const torch::Tensor experts = torch::randint(c.chosen_from, {c.pairs}, torch::kInt64);
    const torch::Tensor local = experts - c.first;
    const torch::Tensor key = torch::where((local >= 0) & (local < c.held), local, torch::full_like(local, c.held));
    const auto [sorted, want_order] = torch::sort(key, /*stable=*/true, 0, false);
    const torch::Tensor want_offsets = torch::searchsorted(sorted, torch::arange(c.held + 1, key.options()));
    torch::Tensor want_row = torch::full({c.pairs}, -1, key.options());
    const torch::Tensor here = sorted < c.held;
    want_row.index_put_({want_order.masked_select(here)}, torch::arange(c.pairs, key.options()).masked_select(here));

    const auto o = torch::TensorOptions().device(torch::Device("cuda")).dtype(torch::kInt64);
    const torch::Tensor e = experts.to(o.device());
    torch::Tensor order = torch::empty({c.pairs}, o), offsets = torch::empty({c.held + 1}, o);
    torch::Tensor row = torch::empty({c.pairs}, o), ready = torch::full({c.held}, 7, o.dtype(torch::kInt32));
    check_launch(cuda::moe_sort_pairs(e.data_ptr<int64_t>(), c.pairs, c.first, c.held, order.data_ptr<int64_t>(),
                                      offsets.data_ptr<int64_t>(), row.data_ptr<int64_t>(), stream_of(e),
                                      ready.data_ptr<int>()),
                 "pair sort");
    const std::string what = std::to_string(c.pairs) + " pairs on " + std::to_string(c.held) + " experts";
    EXPECT_TRUE(torch::equal(order.cpu(), want_order)) << what;
    EXPECT_TRUE(torch::equal(offsets.cpu(), want_offsets)) << what;
    EXPECT_TRUE(torch::equal(row.cpu(), want_row)) << what;
    EXPECT_EQ(ready.abs().sum().item<int64_t>(), 0) << what << ": the expert kernels' counts not cleared";
  }
  // One pair past the most the keys' width allows is refused.
  const auto o = torch::TensorOptions().device(torch::Device("cuda")).dtype(torch::kInt64);
  for (const int64_t held : {128, 1024}) {
    const int64_t pairs = cuda::max_sort_pairs(held) + 1;
    torch::Tensor e = torch::zeros({pairs}, o), order = torch::empty({pairs}, o), row = torch::empty({pairs}, o);
    torch::Tensor offsets = torch::empty({held + 1}, o);
    EXPECT_EQ(cuda::moe_sort_pairs(e.data_ptr<int64_t>(), pairs, 0, held, order.data_ptr<int64_t>(),
                                   offsets.data_ptr<int64_t>(), row.data_ptr<int64_t>(), stream_of(e)),
              cudaErrorInvalidValue)
        << held << " experts";
  }
#endif
}

// The GEMM rows of a prefill's pairs (kernels/moe_slots.h): the kernel against the plain ops on the
// CPU, padded and exact, with every expert here and with half of them held elsewhere.
TEST(GpuFusedMoe, GemmSlotsKernelMatchesPlainOps) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU";
  torch::manual_seed(11);
  const int64_t tokens = 300, k = 4, experts = 16;
  for (const int64_t held : {experts, experts / 2}) {
    for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      const torch::Tensor chosen = torch::randint(experts, {tokens, k}, torch::kInt64);
      const torch::Tensor weights = torch::rand({tokens, k}).to(dtype);
      const int64_t first = experts - held;  // the upper experts are held here
      const torch::Tensor local = chosen.reshape({-1}) - first;
      const torch::Tensor key = torch::where((local >= 0) & (local < held), local, torch::full_like(local, held));
      const auto [sorted, order] = torch::sort(key, /*stable=*/true, 0, false);
      const torch::Tensor offsets = torch::searchsorted(sorted, torch::arange(held + 1, key.options()));
      const int64_t rows = offsets[held].item<int64_t>();
      const int64_t most = (offsets.narrow(0, 1, held) - offsets.narrow(0, 0, held)).max().item<int64_t>();
      for (const int64_t layout_most : {most, int64_t(0)}) {
        const GemmSlots want = gemm_slots(order, sorted, offsets, weights, rows, k, layout_most);
        const torch::Device cuda("cuda");
        const GemmSlots got =
            gemm_slots(order.to(cuda), sorted.to(cuda), offsets.to(cuda), weights.to(cuda), rows, k, layout_most);
        const std::string what = "held " + std::to_string(held) + (layout_most ? " padded " : " exact ") +
                                 c10::toString(dtype);
        EXPECT_TRUE(torch::equal(got.token.cpu(), want.token)) << what;
        EXPECT_TRUE(torch::equal(got.weight.cpu(), want.weight)) << what;
        EXPECT_TRUE(torch::equal(got.row_of_pair.cpu(), want.row_of_pair)) << what;
      }
    }
  }
}

// The row kernels alone against their plain ops, and the grouped GEMM against one product per group.
TEST(GpuFusedMoe, RowKernelsMatchPlainOps) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  torch::manual_seed(4);
  const auto o = torch::TensorOptions().device(torch::Device("cuda"));
  for (const int64_t inter : {768, 13}) {  // 16-byte packs, and one element at a time
    const torch::Tensor h = torch::randn({37, 2 * inter}, o).to(torch::kBFloat16), w = torch::rand({37}, o);
    const torch::Tensor hf = h.to(torch::kFloat32);
    const torch::Tensor want = torch::silu(hf.narrow(1, 0, inter)) * hf.narrow(1, inter, inter) * w.unsqueeze(1);
    EXPECT_LT(rel_l2(silu_mul_weight(h, w), want), 1e-2) << inter;
    const torch::Tensor y = torch::randn({20, inter}, o).to(torch::kBFloat16);
    const torch::Tensor rows = torch::randint(-1, 20, {6 * 4}, o.dtype(torch::kInt64));
    const torch::Tensor yf = torch::cat({y.to(torch::kFloat32), torch::zeros({1, inter}, o)});
    const torch::Tensor sum = yf.index_select(0, rows.masked_fill(rows < 0, 20)).view({6, 4, inter}).sum(1);
    EXPECT_LT(rel_l2(combine_pairs(y, rows, 6, 4), sum), 1e-2) << inter;
  }
  const std::vector<int64_t> counts = {3, 0, 5, 1};
  const torch::Tensor xs = torch::randn({9, 256}, o.dtype(torch::kBFloat16));
  const torch::Tensor ws = torch::randn({4, 96, 256}, o.dtype(torch::kBFloat16));
  const torch::Tensor ys = grouped_linear(xs, counts, ws);
  const torch::Tensor loop = torch::cat({torch::mm(xs.narrow(0, 0, 3), ws[0].t()), torch::mm(xs.narrow(0, 3, 5), ws[2].t()),
                                         torch::mm(xs.narrow(0, 8, 1), ws[3].t())});
  EXPECT_LT(rel_l2(ys, loop), 1e-2);
}

// Qwen3's router product and its top-k in one launch (1-4 rows): the same logits, experts and
// weights, bit for bit, as the matrix-vector kernel and the routing kernel apart; past 4 rows the
// two themselves. 60 experts leave some of the cluster's warps without one.
TEST(GpuFusedMoe, RouterAndTopkInOneLaunchMatchTheTwoApart) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  torch::manual_seed(9);
  const auto o = torch::TensorOptions().device(torch::Device("cuda"));
  for (const auto dtype : {torch::kBFloat16, torch::kHalf})
    for (const int64_t experts : {128, 60}) {
      const torch::Tensor gate = (torch::randn({experts, 2048}, o) * 0.05).to(dtype);
      for (const int64_t rows : {1, 2, 3, 4, 9})
        for (const bool renormalize : {true, false}) {
          const torch::Tensor x = torch::randn({rows, 2048}, o).to(dtype);
          const Routing got = fused_router_softmax_topk(x, gate, 8, renormalize);
          const torch::Tensor logits = linear_fused(x, gate);
          const Routing want = fused_route_softmax_topk(logits, 8, renormalize);
          const std::string what = std::to_string(experts) + " experts, " + std::to_string(rows) + " rows";
          ASSERT_EQ(got.logits.sizes(), logits.sizes()) << what;
          EXPECT_TRUE(torch::equal(got.logits, logits)) << what;
          EXPECT_TRUE(torch::equal(got.experts, want.experts)) << what;
          EXPECT_TRUE(torch::equal(got.weights, want.weights)) << what;
          // And near the plain ops in fp32: nearly the same sets of experts (a near tie at the 8th
          // may fall either way after rounding to 16 bits).
          const Routing plain = route_softmax_topk(torch::linear(x.to(torch::kFloat32), gate.to(torch::kFloat32)), 8,
                                                   renormalize);
          // Each chosen expert looked up in the plain choice of its row (sorted ids would shift at the
          // first difference).
          const torch::Tensor shared = got.experts.unsqueeze(2).eq(plain.experts.unsqueeze(1)).any(2);
          EXPECT_GE(shared.to(torch::kFloat32).mean().item<float>(), 0.75) << what;
        }
    }
}

// The routing kernels choose the oracle's experts with its weights (compared per expert id, since
// the oracle's grouped top-k is unordered), in descending order of the score that chose them.
TEST(GpuFusedMoe, RoutingKernelsMatchOracle) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  torch::manual_seed(5);
  const auto o = torch::TensorOptions().device(torch::Device("cuda"));
  const auto by_expert = [](const Routing& r) {
    auto [experts, order] = r.experts.sort(1);
    return std::make_pair(experts, r.weights.gather(1, order));
  };
  // `choice`: each expert's selection score [T, E].
  const auto expect_same = [&](const Routing& got, const Routing& want, const torch::Tensor& choice,
                               const std::string& what) {
    ASSERT_EQ(got.experts.sizes(), want.experts.sizes()) << what;
    const auto [ge, gw] = by_expert(got);
    const auto [we, ww] = by_expert(want);
    EXPECT_TRUE(torch::equal(ge, we)) << what << ": different experts";
    EXPECT_LT((gw - ww).abs().max().item<float>(), 1e-5) << what;
    const torch::Tensor chosen = choice.gather(1, got.experts);
    const int64_t k = chosen.size(1);
    EXPECT_TRUE((chosen.narrow(1, 0, k - 1) >= chosen.narrow(1, 1, k - 1)).all().item<bool>()) << what << ": not descending";
  };
  for (const int64_t tokens : {1, 7, 1000}) {
    for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      const torch::Tensor logits = torch::randn({tokens, 128}, o).to(dtype);
      for (const bool renormalize : {true, false})
        expect_same(fused_route_softmax_topk(logits, 8, renormalize), route_softmax_topk(logits, 8, renormalize),
                    logits.to(torch::kFloat32),
                    "softmax, " + std::to_string(tokens) + " tokens, renormalize " + std::to_string(renormalize));
    }
    // DeepSeek-V3's groups (8 of 32, 4 kept) and a small layout (4 groups of 4, 2 kept); the
    // experts are chosen by the biased score, weighted by the unbiased one.
    for (const auto& [experts, groups, kept, k] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{256, 8, 4, 8},
                                                   std::tuple<int64_t, int64_t, int64_t, int64_t>{16, 4, 2, 3}}) {
      const torch::Tensor logits = torch::randn({tokens, experts}, o), bias = 0.1 * torch::randn({experts}, o);
      expect_same(fused_route_sigmoid_grouped(logits, bias, groups, kept, k, true, 2.5),
                  route_sigmoid_grouped(logits, bias, groups, kept, k, true, 2.5), logits.sigmoid() + bias,
                  "sigmoid grouped, " + std::to_string(experts) + " experts, " + std::to_string(tokens) + " tokens");
    }
  }
}

}  // namespace
}  // namespace lb
