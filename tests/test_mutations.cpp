// The oracle against planted bugs: each mutation is a mistake a layout author could make. With op
// capture on, `check` must flag every one (exit 1) and name the layer and capture point where it
// first shows; without a mutation, every layout passes at every capture point.
#include "test_util.h"

#include "layouts/mutations.h"

#include <nlohmann/json.hpp>

#include <fstream>

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
  test::TempDir dir;
  std::vector<std::string> args = {"check", "--model", c.model, "--layout", c.layout, "--backend", "cpu",
                                   "--ranks", std::to_string(c.ranks), "--layers", "3", "--capture", "op",
                                   "--mutation", c.mutation, "--json", dir / "run.json"};
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
  EXPECT_GE(all_mutations().size(), 8u);
}

// Without a mutation every capture point of every layout agrees with the reference: in fp32 at
// the fp32 threshold, in bf16 at each capture point's calibrated threshold.
TEST(OpCapture, UnmutatedLayoutsPassAtEveryCapturePoint) {
  for (const char* model : {"tiny-qwen3-moe", "tiny-deepseek-v3"})
    for (const char* dtype : {"f32", "bf16"}) {
      test::CliResult r = test::run_cli({"check", "--model", model, "--layout", "all", "--backend", "cpu", "--ranks",
                                         "2", "--layers", "3", "--capture", "op", "--dtype", dtype});
      EXPECT_EQ(r.code, 0) << model << " " << dtype << "\n" << r.out << r.err;
      EXPECT_EQ(r.out.find("first divergence"), std::string::npos) << r.out;
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
