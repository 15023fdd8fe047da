// Every layout and baseline on CPU ranks, fp32, tiny models: each layer's output, reassembled in
// original token order, matches the single-device reference to relative L2 < 1e-5 (the CLI's
// default fp32 threshold), for several rank counts, odd sequence lengths, and DP ranks without
// tokens. Configurations a layout cannot take are refused with a message naming the rule.
#include "test_util.h"

#include "datasets/token_input.h"
#include "oracles/compare.h"

#include <nlohmann/json.hpp>

#include <fstream>

namespace lb {
namespace {

struct LayoutCase {
  std::string model, layout;
  int ranks;
  std::vector<std::string> extra;  // more flags
  std::string lengths;
};

std::string label(const LayoutCase& c) {
  std::string s = c.model + " " + c.layout + " ranks=" + std::to_string(c.ranks);
  for (const auto& e : c.extra) s += " " + e;
  return s + " lengths=" + c.lengths;
}

// gtest prints the parameter in ctest's test list; bytes by default.
void PrintTo(const LayoutCase& c, std::ostream* os) { *os << label(c); }

class LayoutMatchesReference : public testing::TestWithParam<LayoutCase> {};

// Lengths: odd, not multiples of 2*cp; the round-robin batches sum to a multiple of 4.
const std::string kLens = "37,9,64,23";
const std::string kRoundRobinLens = "37,9,64,22";
const std::string kThreeSeqs = "37,9,22";  // on 4 DP ranks, one rank holds no tokens
const std::string kOneSeq = "41";          // dense layouts on 4 ranks: the second DP rank holds none

// The verdict read from the record: every layer within the fp32 threshold, every rank's rows
// accounted for, and idle ranks exactly where the case has them.
TEST_P(LayoutMatchesReference, EveryLayer) {
  const LayoutCase& c = GetParam();
  test::TempDir dir;
  std::vector<std::string> args = {"check", "--model", c.model, "--layout", c.layout, "--backend", "cpu",
                                   "--ranks", std::to_string(c.ranks), "--lengths", c.lengths, "--layers", "3",
                                   "--json", dir / "run.json"};
  args.insert(args.end(), c.extra.begin(), c.extra.end());
  test::CliResult r = test::run_cli(args);
  EXPECT_EQ(r.code, 0) << label(c) << "\n" << r.out << r.err;
  EXPECT_NE(r.out.find("all layouts match the reference"), std::string::npos) << r.out << r.err;
  // Keep the per-layer table in the test log.
  std::cout << r.out;

  std::ifstream in(dir / "run.json");
  ASSERT_TRUE(in);
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j.at("dtype"), "f32");
  ASSERT_EQ(j.at("layouts").size(), 1u);
  const nlohmann::json& layout = j.at("layouts").at(0);
  EXPECT_TRUE(layout.at("pass").get<bool>());
  ASSERT_EQ(layout.at("layers").size(), 3u);
  for (const auto& l : layout.at("layers")) {
    EXPECT_EQ(l.at("threshold").get<double>(), kFp32MaxRelL2) << l.dump();
    EXPECT_LT(l.at("rel_l2").get<double>(), kFp32MaxRelL2) << l.dump();
    EXPECT_TRUE(l.at("finite").get<bool>());
  }
  const std::vector<int64_t> rank_tokens = layout.at("rank_tokens").get<std::vector<int64_t>>();
  ASSERT_EQ(rank_tokens.size(), size_t(c.ranks));
  int64_t total = 0, held = 0, idle = 0;
  for (int64_t n : parse_lengths(c.lengths, "lengths")) total += n;
  for (int64_t n : rank_tokens) held += n, idle += n == 0;
  EXPECT_GE(held, total);  // attention-TP peers hold the same rows
  EXPECT_EQ(idle > 0, c.lengths == kThreeSeqs || c.lengths == kOneSeq) << layout.at("rank_tokens");
}

std::vector<LayoutCase> cases() {
  std::vector<LayoutCase> v;
  for (const char* m : {"tiny-qwen3-moe", "tiny-deepseek-v3"}) {
    const std::string model = m;
    for (int n : {2, 4}) {
      v.push_back({model, "tp", n, {}, kLens});
      v.push_back({model, "cp-fused-moe", n, {}, kRoundRobinLens});
      v.push_back({model, "cp-moe-full", n, {}, kLens});
      v.push_back({model, "cp-moe-dp", n, {}, kLens});
      v.push_back({model, "dp-attn-rsv", n, {}, kLens});
      v.push_back({model, "dp-attn-ar", n, {}, kLens});
      v.push_back({model, "dense-tp-attn", n, {}, kLens});
      v.push_back({model, "dense-tp1", n, {}, kLens});
      v.push_back({model, "dense-tp-full", n, {}, kLens});
    }
    v.push_back({model, "cp-moe-full", 4, {"--attn-cp", "4"}, kLens});
    v.push_back({model, "cp-moe-dp", 4, {"--attn-cp", "4", "--moe-dp", "4"}, kLens});
    v.push_back({model, "dp-attn-rsv", 4, {}, kThreeSeqs});
    v.push_back({model, "dp-attn-ar", 4, {}, kThreeSeqs});
    v.push_back({model, "dp-attn-rsv", 4, {"--moe-ep", "4"}, kThreeSeqs});
    v.push_back({model, "dp-attn-ar", 4, {"--moe-ep", "2"}, kLens});
    v.push_back({model, "dense-tp-attn", 4, {}, kOneSeq});
    v.push_back({model, "dense-tp1", 4, {}, kOneSeq});
    v.push_back({model, "dense-tp-full", 4, {}, kOneSeq});
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(CpuRanks, LayoutMatchesReference, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<LayoutCase>& info) {
                           return test::param_name(info.index, info.param.layout);
                         });

// The record a nightly job reads: per layout, per layer verdicts and the collectives it made; in
// bf16 also the calibrated noise floor the thresholds came from.
TEST(LayoutCheck, WritesTheRunRecord) {
  for (const std::string dtype : {"f32", "bf16"}) {
    test::TempDir dir;
    const std::string path = dir / "check.json";
    test::CliResult r = test::run_cli({"check", "--model", "tiny-qwen3-moe", "--layout", "dp-attn-rsv,cp-fused-moe",
                                       "--backend", "cpu", "--ranks", "2", "--layers", "2", "--dtype", dtype,
                                       "--json", path});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    std::ifstream in(path);
    ASSERT_TRUE(in) << path;
    const nlohmann::json j = nlohmann::json::parse(in);
    EXPECT_EQ(j.at("command").get<std::string>().rfind("layoutbench check", 0), 0u) << j.at("command");
    EXPECT_TRUE(j.at("pass").get<bool>());
    ASSERT_EQ(j.at("layouts").size(), 2u);
    for (const auto& l : j.at("layouts")) {
      EXPECT_EQ(l.at("layers").size(), 2u);
      EXPECT_FALSE(l.at("collectives").empty()) << l.dump();
    }
    EXPECT_EQ(j.contains("noise_floor"), dtype == "bf16") << j.dump();
    // bf16: every row judged too, none past its bound.
    EXPECT_EQ(j.at("row_verdicts").get<bool>(), dtype == "bf16");
    for (const auto& l : j.at("layouts"))
      for (const auto& layer : l.at("layers")) {
        EXPECT_EQ(layer.contains("rows_past_bound"), dtype == "bf16") << layer.dump();
        if (dtype == "bf16") {
          EXPECT_EQ(layer.at("rows_past_bound"), 0) << layer.dump();
        }
      }
  }
}

// A reference too big to run next to the layout comes from a dump of `layoutbench reference`;
// the dump must have been made on the same model, weights and tokens.
TEST(LayoutCheck, JudgesAgainstAReferenceDump) {
  test::TempDir dir;
  const std::string dump = dir / "reference.safetensors";
  test::CliResult r = test::run_cli({"reference", "--model", "tiny-deepseek-v3", "--lengths", "37,9,64,18", "--layers",
                                     "3", "--dump", dump});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const std::vector<std::string> check = {"check", "--model", "tiny-deepseek-v3", "--layout", "dp-attn-rsv,dense-tp-attn",
                                          "--backend", "cpu", "--ranks", "4", "--reference-dump", dump};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = check;
    args.insert(args.end(), extra.begin(), extra.end());
    return test::run_cli(args);
  };
  r = with({"--layers", "3", "--lengths", "37,9,64,18"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("all layouts match the reference"), std::string::npos) << r.out;

  r = with({"--layers", "3", "--lengths", "37,9,64,18", "--seed", "7"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("random(seed=7)"), std::string::npos) << r.err;
  r = with({"--layers", "3", "--lengths", "37,9,64,19"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("input_ids or seq_lens differ"), std::string::npos) << r.err;
  r = with({"--layers", "4", "--lengths", "37,9,64,18"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("layers.3.output"), std::string::npos) << r.err;
  r = with({"--layers", "3", "--lengths", "37,9,64,18", "--dtype", "bf16"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("needs --max-rel-l2"), std::string::npos) << r.err;
}

// The oracle must be able to say no: an impossible threshold fails every layer.
TEST(LayoutCheck, ReportsDivergence) {
  test::CliResult r = test::run_cli({"check", "--model", "tiny-qwen3-moe", "--layout", "dp-attn-rsv", "--backend",
                                     "cpu", "--ranks", "2", "--layers", "2", "--max-rel-l2", "1e-30"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("first divergence: layer 0"), std::string::npos) << r.out;
}

void expect_refused(const std::vector<std::string>& extra, const std::string& needle) {
  std::vector<std::string> args = {"check", "--model", "tiny-qwen3-moe", "--backend", "cpu", "--layers", "1"};
  args.insert(args.end(), extra.begin(), extra.end());
  test::CliResult r = test::run_cli(args);
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "'" << needle << "' not in: " << r.err;
}

TEST(LayoutCheck, RefusesWhatALayoutCannotTake) {
  // Round-robin CP with attention TP > 1.
  expect_refused({"--layout", "cp-fused-moe", "--ranks", "4", "--attn-cp", "2"}, "attn_tp == 1");
  // moe_dense_tp outside {none, 1, attn_tp}.
  expect_refused({"--layout", "dense-tp-attn", "--ranks", "4", "--moe-dense-tp", "4"}, "moe_dense_tp (4)");
  // A sequence shorter than 2 * cp under zigzag.
  expect_refused({"--layout", "cp-moe-full", "--ranks", "2", "--lengths", "40,3"}, "shorter than 2 * attn_cp");
  // Round-robin over a token count that does not divide by cp.
  expect_refused({"--layout", "cp-fused-moe", "--ranks", "4", "--lengths", "37,5"}, "not a multiple of attn_cp");
  // Sizes that do not divide: 8 heads over 3 ranks.
  expect_refused({"--layout", "tp", "--ranks", "3"}, "attention heads");
  // A layout's own rules.
  expect_refused({"--layout", "cp-moe-dp", "--ranks", "4", "--moe-dp", "1"}, "moe_dp == attn_cp");
  expect_refused({"--layout", "nope", "--ranks", "2"}, "unknown");
}

}  // namespace
}  // namespace lb
