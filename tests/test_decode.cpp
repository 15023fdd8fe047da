// The decode oracle (`check --decode-steps`): after the prefill, every layout's decode steps on CPU
// ranks match the reference's at every layer of every step (f32 at 1e-5; bf16 at 3x the decode
// noise floor), and bugs only a decode step has are caught at the first step and layer, with the
// prefill still passing.
#include "test_util.h"

#include "layouts/mutations.h"

#include <nlohmann/json.hpp>

#include <fstream>

namespace lb {
namespace {

constexpr int kSteps = 4, kLayers = 3;

nlohmann::json run_check(const std::vector<std::string>& extra, int expect_code) {
  test::TempDir dir;
  std::vector<std::string> args = {"check", "--backend", "cpu", "--layers", std::to_string(kLayers), "--decode-steps",
                                   std::to_string(kSteps), "--json", dir / "run.json"};
  args.insert(args.end(), extra.begin(), extra.end());
  const test::CliResult r = test::run_cli(args);
  EXPECT_EQ(r.code, expect_code) << r.out << r.err;
  std::ifstream in(dir / "run.json");
  if (!in) {
    ADD_FAILURE() << "no record\n" << r.out << r.err;
    return {};
  }
  return nlohmann::json::parse(in);
}

struct DecodeCase {
  std::string model;
  int ranks;
  std::string dtype;
};

void PrintTo(const DecodeCase& c, std::ostream* os) { *os << c.model << " on " << c.ranks << " ranks " << c.dtype; }

class EveryLayoutDecodes : public testing::TestWithParam<DecodeCase> {};

TEST_P(EveryLayoutDecodes, LikeTheReference) {
  const DecodeCase& c = GetParam();
  // Lengths whose sum divides by 4 (round-robin CP) and none shorter than 2 * cp (zigzag).
  const nlohmann::json j = run_check({"--model", c.model, "--layout", "all", "--ranks", std::to_string(c.ranks),
                                      "--lengths", "37,9,64,22", "--dtype", c.dtype},
                                     0);
  ASSERT_FALSE(j.empty());
  EXPECT_EQ(j.at("decode_steps"), kSteps);
  ASSERT_EQ(j.at("decode_thresholds").size(), size_t(kLayers));
  for (const auto& t : j.at("decode_thresholds")) {
    if (c.dtype == "f32") EXPECT_EQ(t.get<double>(), 1e-5);
    else EXPECT_GT(t.get<double>(), 1e-5) << "a bf16 threshold comes from a measured floor";
  }
  EXPECT_GE(j.at("layouts").size(), 9u);
  bool some_differ = false;  // a layout that sums in another order: the comparison is not of a tensor with itself
  for (const auto& l : j.at("layouts")) {
    ASSERT_EQ(l.at("decode").size(), size_t(kSteps * kLayers)) << l.at("layout");
    for (const auto& v : l.at("decode")) {
      EXPECT_TRUE(v.at("pass").get<bool>()) << l.at("layout") << " " << v.dump();
      EXPECT_LT(v.at("rel_l2").get<double>(), v.at("threshold").get<double>());
      some_differ = some_differ || v.at("rel_l2").get<double>() > 0;
    }
  }
  EXPECT_TRUE(some_differ);
}

INSTANTIATE_TEST_SUITE_P(CpuRanks, EveryLayoutDecodes,
                         testing::Values(DecodeCase{"tiny-qwen3-moe", 2, "f32"}, DecodeCase{"tiny-qwen3-moe", 4, "f32"},
                                         DecodeCase{"tiny-deepseek-v3", 2, "f32"},
                                         DecodeCase{"tiny-deepseek-v3", 4, "f32"},
                                         DecodeCase{"tiny-qwen3-moe", 2, "bf16"},
                                         DecodeCase{"tiny-deepseek-v3", 2, "bf16"}),
                         [](const testing::TestParamInfo<DecodeCase>& info) {
                           return test::param_name(info.index, info.param.model + "_" + info.param.dtype);
                         });

struct DecodeMutationCase {
  std::string mutation, model, layout;
  int ranks;
  // bf16: the calibrated check, where rows that change experts are left out of their layers'
  // verdicts; a bug must still be caught there (its rows' router logits are past their bound).
  std::string dtype = "f32";
};

void PrintTo(const DecodeMutationCase& c, std::ostream* os) { *os << c.mutation << " on " << c.layout << " " << c.dtype; }

std::vector<DecodeMutationCase> mutation_cases() {
  return {
      {"decode-position-off-by-one", "tiny-qwen3-moe", "cp-fused-moe", 2},
      {"decode-position-off-by-one", "tiny-deepseek-v3", "tp", 2},
      {"decode-keys-to-next-slot", "tiny-qwen3-moe", "cp-moe-full", 4},
      {"decode-keys-to-next-slot", "tiny-deepseek-v3", "dp-attn-rsv", 2},
      {"decode-attends-one-short", "tiny-qwen3-moe", "dense-tp-attn", 2},
      {"decode-attends-one-short", "tiny-deepseek-v3", "cp-fused-moe", 2},
      {"decode-position-off-by-one", "tiny-deepseek-v3", "cp-moe-full", 2, "bf16"},
      {"decode-keys-to-next-slot", "tiny-qwen3-moe", "tp", 2, "bf16"},
      {"decode-attends-one-short", "tiny-deepseek-v3", "dp-attn-rsv", 2, "bf16"},
  };
}

class DecodeMutationIsCaught : public testing::TestWithParam<DecodeMutationCase> {};

TEST_P(DecodeMutationIsCaught, AtTheFirstStepAndLayer) {
  const DecodeMutationCase& c = GetParam();
  const nlohmann::json j = run_check({"--model", c.model, "--layout", c.layout, "--ranks", std::to_string(c.ranks),
                                      "--lengths", "37,9,64,22", "--mutation", c.mutation, "--dtype", c.dtype},
                                     1);
  ASSERT_FALSE(j.empty());
  const nlohmann::json& l = j.at("layouts").at(0);
  for (const auto& v : l.at("layers")) EXPECT_TRUE(v.at("pass").get<bool>()) << "the prefill is untouched: " << v.dump();
  ASSERT_EQ(l.at("decode").size(), size_t(kSteps * kLayers));
  const nlohmann::json* first = nullptr;
  for (const auto& v : l.at("decode"))
    if (!v.at("pass").get<bool>() && !first) first = &v;
  ASSERT_NE(first, nullptr) << "not caught";
  EXPECT_EQ(first->at("step"), 0);
  EXPECT_EQ(first->at("layer"), 0);
}

INSTANTIATE_TEST_SUITE_P(Oracle, DecodeMutationIsCaught, testing::ValuesIn(mutation_cases()),
                         [](const testing::TestParamInfo<DecodeMutationCase>& info) {
                           return test::param_name(info.index, info.param.mutation + "_" + info.param.dtype);
                         });

TEST(DecodeMutationRegistry, EveryDecodeMutationHasACase) {
  int decode_mutations = 0;
  for (const MutationSpec& m : all_mutations()) {
    if (m.name.rfind("decode-", 0) != 0) continue;
    ++decode_mutations;
    bool found = false;
    for (const DecodeMutationCase& c : mutation_cases()) found = found || c.mutation == m.name;
    EXPECT_TRUE(found) << m.name << " has no decode mutation test";
  }
  EXPECT_EQ(decode_mutations, 3);
}

TEST(DecodeCheck, RefusesWhatItCannotDo) {
  test::CliResult r = test::run_cli({"check", "--model", "tiny-qwen3-moe", "--layout", "tp", "--backend", "cpu",
                                     "--ranks", "2", "--decode-steps", "-1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--decode-steps must be >= 0"), std::string::npos) << r.err;
  r = test::run_cli({"check", "--model", "tiny-deepseek-v4", "--layout", "tp", "--backend", "cpu", "--ranks", "2",
                     "--decode-steps", "2"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--decode-steps does not apply to DeepSeek-V4"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lb
