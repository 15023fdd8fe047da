// DeepSeek-V4 under the "tp" baseline and layout A (context-parallel attention, fused TP MoE) on
// CPU ranks, fp32: every layer's residual streams, the final norm and the logits of every rank's
// rows, at their original positions, match the single-rank oracle (itself checked against
// transformers in test_deepseek_v4.cpp) to relative L2 < 1e-5. Run on the fixture's 40 tokens and
// on fresh seeded token sequences of 48 and 64, long enough that the sliding window (8), the CSA
// (rate 4, overlapping) and HCA (rate 8) windows and the indexer's top-3 all reach across ranks.
#include "harness/runtime/cpu_ranks.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"
#include "harness/model/safetensors.h"
#include "layouts/deepseek_v4_layouts.h"
#include "oracles/compare.h"
#include "test_util.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

namespace lb {
namespace {

constexpr double kMaxRelL2 = 1e-5;

struct V4Model {
  DeepseekV4Config config;
  std::map<std::string, torch::Tensor> weights;
  torch::Tensor fixture_ids;  // the 40 tokens transformers ran
};

const V4Model& fixture_model() {
  static const V4Model model = [] {
    const std::string dir = test::fixture_dir("deepseek_v4_tiny");
    return V4Model{read_deepseek_v4_config(join_path(dir, "config.json")),
                   test::read_all_tensors(join_path(dir, "model.safetensors")),
                   SafetensorsFile(join_path(dir, "expected.safetensors")).read("input_ids", torch::kInt64)};
  }();
  return model;
}

// tp 4 needs o_groups % 4 == 0 and the fixture has 2 groups: the same model with 4 groups, its
// o_a_proj and o_b_proj (the only weights whose shapes change) drawn afresh at the fixture's scale.
V4Model with_four_output_groups(const V4Model& m) {
  V4Model out = m;
  out.config.o_groups = 4;
  auto gen = at::detail::createCPUGenerator(4);
  const int64_t in = m.config.num_heads * m.config.head_dim / 4, rank = m.config.o_lora_rank;
  for (int64_t l = 0; l < m.config.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
    const double a_std = m.weights.at(p + "o_a_proj.weight").std().item<double>();
    const double b_std = m.weights.at(p + "o_b_proj.weight").std().item<double>();
    out.weights[p + "o_a_proj.weight"] = torch::randn({4 * rank, in}, gen) * a_std;
    out.weights[p + "o_b_proj.weight"] = torch::randn({m.config.hidden, 4 * rank}, gen) * b_std;
  }
  return out;
}

// The fixture's tokens, then fresh seeded sequences.
std::vector<torch::Tensor> token_sequences(const V4Model& m) {
  std::vector<torch::Tensor> v = {m.fixture_ids};
  for (const int64_t length : {48, 64}) {
    auto gen = at::detail::createCPUGenerator(uint64_t(1000 + length));
    v.push_back(torch::randint(m.config.vocab, {length}, gen, torch::kInt64));
  }
  return v;
}

std::vector<DeepseekV4LayoutOutput> run_layout(const V4Model& m, const torch::Tensor& ids, V4Layout layout, int ranks,
                                               Mutation mutation = Mutation::None) {
  std::vector<DeepseekV4LayoutOutput> outs(static_cast<size_t>(ranks));
  run_cpu_ranks(ranks, [&](RankContext& ctx) {
    outs[size_t(ctx.rank())] = deepseek_v4_forward_layout(m.config, m.weights, ids, ctx, layout, mutation);
  });
  return outs;
}

// The largest relative L2 error of any rank's rows against the oracle's rows at the same original
// positions, over every layer, the final norm and the logits. Also requires the ranks to hold
// every position equally often (once under A, on every rank under tp).
double worst_error(const DeepseekV4Output& oracle, const std::vector<DeepseekV4LayoutOutput>& outs) {
  std::vector<torch::Tensor> held;
  double worst = 0;
  for (const DeepseekV4LayoutOutput& o : outs) {
    held.push_back(o.tokens);
    auto check = [&](const torch::Tensor& rows, const torch::Tensor& expected) {
      const TensorDiff d = compare_tensors(rows, expected.index_select(0, o.tokens));
      worst = std::max(worst, d.finite ? d.rel_l2 : 1e9);
    };
    EXPECT_EQ(o.layers.size(), oracle.layers.size());
    for (size_t l = 0; l < std::min(o.layers.size(), oracle.layers.size()); ++l) check(o.layers[l], oracle.layers[l]);
    check(o.final_norm, oracle.final_norm);
    check(o.logits, oracle.logits);
  }
  const int64_t T = oracle.logits.size(0);
  const torch::Tensor counts = torch::cat(held).bincount({}, T);
  EXPECT_TRUE(counts.eq(counts[0]).all().item<bool>() && counts[0].item<int64_t>() > 0) << counts;
  return worst;
}

void expect_layout_matches(const V4Model& m, V4Layout layout, int ranks) {
  for (const torch::Tensor& ids : token_sequences(m)) {
    const DeepseekV4Output oracle = deepseek_v4_forward(m.config, m.weights, ids);
    const double worst = worst_error(oracle, run_layout(m, ids, layout, ranks));
    std::cout << "  deepseek_v4 layout " << to_string(layout) << " ranks " << ranks << " tokens " << ids.size(0)
              << ": max rel_l2 " << worst << "\n";
    EXPECT_LT(worst, kMaxRelL2) << to_string(layout) << " ranks " << ranks << " tokens " << ids.size(0);
  }
}

TEST(DeepseekV4Layouts, TensorParallelMatchesOracle) {
  expect_layout_matches(fixture_model(), V4Layout::TensorParallel, 2);
  expect_layout_matches(with_four_output_groups(fixture_model()), V4Layout::TensorParallel, 4);
}

TEST(DeepseekV4Layouts, ContextParallelFusedMoeMatchesOracle) {
  for (int cp : {2, 4}) expect_layout_matches(fixture_model(), V4Layout::ContextParallelFusedMoe, cp);
}

// The check must be able to fail: layout A with the gathered keys left in gather order, or with
// the MoE output's rows shifted before the reduce_scatter, is far off.
TEST(DeepseekV4Layouts, PlantedBugsFail) {
  const V4Model& m = fixture_model();
  const DeepseekV4Output oracle = deepseek_v4_forward(m.config, m.weights, m.fixture_ids);
  int tested = 0;  // a renamed or removed mutation must not leave this test testing nothing
  for (const MutationSpec& bug : all_mutations()) {
    if (bug.mutation != Mutation::RoundRobinKeysAsContiguous && bug.mutation != Mutation::ReduceScattervOffByOne) continue;
    const double worst =
        worst_error(oracle, run_layout(m, m.fixture_ids, V4Layout::ContextParallelFusedMoe, 2, bug.mutation));
    std::cout << "  deepseek_v4 layout A with " << bug.name << ": max rel_l2 " << worst << "\n";
    EXPECT_GT(worst, 1e-2) << bug.name;
    ++tested;
  }
  EXPECT_EQ(tested, 2);
}

TEST(DeepseekV4Layouts, BadSizesNameTheRule) {
  const V4Model& m = fixture_model();
  auto expect_refused = [&](const DeepseekV4Config& config, V4Layout layout, int ranks, const std::string& rule) {
    V4Model bad = m;
    bad.config = config;
    try {
      run_layout(bad, m.fixture_ids, layout, ranks);
      ADD_FAILURE() << to_string(layout) << " on " << ranks << " ranks ran; expected '" << rule << "'";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(rule), std::string::npos) << e.what();
    }
  };
  expect_refused(m.config, V4Layout::TensorParallel, 3, "num_heads % tp");
  expect_refused(m.config, V4Layout::TensorParallel, 4, "o_groups % tp");  // the fixture has 2 groups
  DeepseekV4Config odd_intermediate = m.config;
  odd_intermediate.moe_intermediate = 31;
  expect_refused(odd_intermediate, V4Layout::TensorParallel, 2, "moe_intermediate % tp");
  expect_refused(m.config, V4Layout::ContextParallelFusedMoe, 3, "token count % cp");        // 40 tokens
  expect_refused(m.config, V4Layout::ContextParallelFusedMoe, 5, "moe_intermediate % cp");   // 32 on 5
}

}  // namespace
}  // namespace lb
