// The oracle against planted bugs: each mutation is a mistake a layout author could make. With op
// capture on, `check` must flag every one (exit 1) and name the layer and capture point where it
// first shows, in f32 and in bf16 alike; without a mutation, every layout passes at every capture
// point. (The single-row bugs in a batch of thousands of tokens: test_row_verdicts.cpp.)
#include "test_util.h"

#include "layouts/layout.h"
#include "layouts/mutations.h"
#include "layouts/op_check.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>

namespace lb {
namespace {

struct MutationCase {
  std::string mutation, model, layout;
  int ranks;
  std::vector<std::string> extra;
  std::string where;  // "layer L, op O" of the first divergence
};

void PrintTo(const MutationCase& c, std::ostream* os) { *os << c.mutation << " on " << c.layout; }

class MutationIsCaught : public testing::TestWithParam<MutationCase> {};

TEST_P(MutationIsCaught, AndLocalized) {
  const MutationCase& c = GetParam();
  for (const std::string dtype : {"f32", "bf16"}) {
    SCOPED_TRACE(dtype);
    test::TempDir dir;
    std::vector<std::string> args = {"check", "--model", c.model, "--layout", c.layout, "--backend", "cpu",
                                     "--ranks", std::to_string(c.ranks), "--layers", "3", "--capture", "op",
                                     "--dtype", dtype, "--mutation", c.mutation, "--json", dir / "run.json"};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    test::CliResult r = test::run_cli(args);
    EXPECT_EQ(r.code, 1) << r.out << r.err;
    EXPECT_NE(r.out.find("first divergence: " + c.where + ","), std::string::npos) << r.out << r.err;
    std::ifstream in(dir / "run.json");
    const nlohmann::json j = nlohmann::json::parse(in);
    const nlohmann::json& first = j.at("layouts").at(0).at("first_divergence");
    EXPECT_EQ("layer " + std::to_string(first.at("layer").get<int>()) + ", op " + first.at("op").get<std::string>(),
              c.where);
    EXPECT_FALSE(first.at("ranks").empty());
    EXPECT_FALSE(first.at("token_ranges").empty());
    EXPECT_EQ(j.at("mutation"), c.mutation);
  }
}

std::vector<MutationCase> cases() {
  const std::string q = "tiny-qwen3-moe", d = "tiny-deepseek-v3";
  return {
      {"zigzag-key-blocks-reversed", q, "cp-moe-full", 2, {}, "layer 0, op attn_out"},
      {"round-robin-keys-as-contiguous", q, "cp-fused-moe", 2, {}, "layer 0, op attn_out"},
      {"rope-local-positions", q, "cp-fused-moe", 4, {}, "layer 0, op q"},
      {"rope-local-positions", d, "cp-moe-dp", 4, {}, "layer 0, op q"},
      {"missing-residual-add", q, "dp-attn-rsv", 2, {}, "layer 0, op residual"},
      {"reduce-scatterv-off-by-one", q, "dp-attn-rsv", 4, {"--lengths", "37,9,64,18"}, "layer 0, op mlp_out"},
      // Equal DP batches, so the wrong group's all-reduce has matching shapes and fails silently.
      {"all-reduce-wrong-group", q, "dense-tp-attn", 4, {"--lengths", "40,40"}, "layer 0, op o_proj"},
      {"router-not-renormalized", q, "tp", 2, {}, "layer 0, op topk_weights"},
      // tiny-deepseek-v3 has one dense layer first: the shared experts show at the first MoE layer.
      {"shared-expert-twice", d, "tp", 2, {}, "layer 1, op mlp_out"},
      // Single-row bugs, on 128 tokens.
      {"reduce-scatterv-boundary-row", q, "dp-attn-rsv", 2, {}, "layer 0, op mlp_out"},
      {"all-gatherv-boundary-row", q, "dp-attn-ar", 2, {}, "layer 0, op router_logits"},
      {"cp-first-token-position", q, "cp-moe-full", 2, {}, "layer 0, op q"},
      {"last-token-own-sequence", d, "dense-tp-attn", 2, {}, "layer 0, op attn_out"},
  };
}

INSTANTIATE_TEST_SUITE_P(Oracle, MutationIsCaught, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<MutationCase>& info) {
                           return test::param_name(info.index, info.param.mutation);
                         });

TEST(MutationRegistry, EveryMutationHasACase) {
  for (const MutationSpec& m : all_mutations()) {
    if (m.name.rfind("decode-", 0) == 0) continue;  // decode-only bugs: tests/test_decode.cpp
    bool found = false;
    for (const MutationCase& c : cases()) found = found || c.mutation == m.name;
    EXPECT_TRUE(found) << m.name << " has no mutation test";
  }
  EXPECT_GE(all_mutations().size(), 12u);
}

// Without a mutation every capture point of every layout agrees with the reference: in fp32 at
// the fp32 threshold, in bf16 at each capture point's calibrated threshold (3x its noise floor)
// with no row past its bound. Read from the record, so that a loosened threshold or a capture
// point that recorded nothing fails too.
TEST(OpCapture, UnmutatedLayoutsPassAtEveryCapturePoint) {
  for (const std::string model : {"tiny-qwen3-moe", "tiny-deepseek-v3"})
    for (const std::string dtype : {"f32", "bf16"}) {
      SCOPED_TRACE(model + " " + dtype);
      test::TempDir dir;
      test::CliResult r = test::run_cli({"check", "--model", model, "--layout", "all", "--backend", "cpu", "--ranks",
                                         "2", "--layers", "3", "--capture", "op", "--dtype", dtype, "--json",
                                         dir / "run.json"});
      EXPECT_EQ(r.code, 0) << r.out << r.err;
      EXPECT_EQ(r.out.find("first divergence"), std::string::npos) << r.out;
      std::ifstream in(dir / "run.json");
      const nlohmann::json j = nlohmann::json::parse(in);
      const bool bf16 = dtype == "bf16";
      if (bf16) {
        EXPECT_EQ(j.at("noise_floor_factor").get<double>(), 3.0);
      }
      // The documented thresholds: per layer and per capture point.
      auto expected_threshold = [&](int64_t layer, const std::string& op) {
        if (op == "topk_experts") return kMaxRoutingFlipFraction;
        if (!bf16) return kFp32MaxRelL2;
        const double floor = op.empty() ? j.at("noise_floor").at(layer).get<double>()
                                        : j.at("op_noise_floor").at(layer).at(op).get<double>();
        EXPECT_GT(floor, 5e-4) << layer << " " << op;  // bf16 rounding is there, and stays modest
        EXPECT_LT(floor, 0.1) << layer << " " << op;
        return 3.0 * std::max(floor, 1e-6);
      };
      ASSERT_EQ(j.at("layouts").size(), all_layouts().size());
      for (const auto& layout : j.at("layouts")) {
        SCOPED_TRACE(layout.at("layout").get<std::string>());
        ASSERT_EQ(layout.at("layers").size(), 3u);
        for (const auto& l : layout.at("layers")) {
          const int64_t layer = l.at("layer").get<int64_t>();
          EXPECT_DOUBLE_EQ(l.at("threshold").get<double>(), expected_threshold(layer, ""));
          EXPECT_LT(l.at("rel_l2").get<double>(), l.at("threshold").get<double>());
          EXPECT_EQ(l.contains("rows_past_bound"), bf16);
          if (bf16) {
            EXPECT_EQ(l.at("rows_past_bound"), 0) << l.dump();
            EXPECT_GT(l.at("rows_judged").get<int64_t>(), 0);
          }
        }
        // Every capture point of every layer: 11 on a MoE layer, 8 on a dense one (tiny-deepseek-v3's first).
        std::map<int64_t, int> ops_per_layer;
        for (const auto& o : layout.at("ops")) {
          const int64_t layer = o.at("layer").get<int64_t>();
          const std::string op = o.at("op").get<std::string>();
          ++ops_per_layer[layer];
          EXPECT_GT(o.at("rows").get<int64_t>(), 0) << op;
          EXPECT_DOUBLE_EQ(o.at("threshold").get<double>(), expected_threshold(layer, op)) << op;
          if (op == "topk_experts") {
            EXPECT_LE(o.at("rel_l2").get<double>(), o.at("threshold").get<double>());
          } else {
            EXPECT_LT(o.at("rel_l2").get<double>(), o.at("threshold").get<double>()) << op;
          }
          if (bf16 && op != "topk_experts") {
            EXPECT_EQ(o.at("rows_past_bound"), 0) << o.dump();
          }
        }
        for (int64_t layer = 0; layer < 3; ++layer)
          EXPECT_EQ(ops_per_layer[layer], model == "tiny-deepseek-v3" && layer == 0 ? 8 : 11) << layer;
        if (bf16)
          std::cout << "  " << layout.at("layout") << ": worst row " << layout.at("worst_row_ratio") << " of its bound\n";
      }
    }
}

TEST(OpCapture, UnknownMutationAndCaptureAreRefused) {
  test::CliResult r = test::run_cli({"check", "--model", "tiny-qwen3-moe", "--layout", "tp", "--backend", "cpu",
                                     "--ranks", "2", "--mutation", "nope"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--mutation 'nope': unknown"), std::string::npos) << r.err;
  r = test::run_cli({"check", "--model", "tiny-qwen3-moe", "--layout", "tp", "--backend", "cpu", "--ranks", "2",
                     "--capture", "everything"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--capture 'everything'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lb
