// Row-level verdicts: every row of a bf16/f16 layer output or capture point against its own bound
// (layouts/row_check.h). The rule against a float64 loop on fresh random rows; then the oracle on
// single-row bugs that the per-layer relative L2 dilutes away in a batch of thousands of tokens.
#include "test_util.h"

#include "layouts/row_check.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>

namespace lb {
namespace {

// The rule of row_check.h, one row at a time in float64.
std::vector<double> ratios_by_loop(const torch::Tensor& layout, const torch::Tensor& low, const torch::Tensor& exact) {
  const auto l = layout.to(torch::kFloat64).contiguous(), r = low.to(torch::kFloat64).contiguous(),
             x = exact.to(torch::kFloat64).contiguous();
  const int64_t n = r.size(0), c = r.size(1);
  const double* pl = l.data_ptr<double>();
  const double* pr = r.data_ptr<double>();
  const double* px = x.data_ptr<double>();
  std::vector<double> norm(n), err(n), floor(n);
  for (int64_t i = 0; i < n; ++i) {
    double nn = 0, ee = 0, ff = 0;
    for (int64_t j = 0; j < c; ++j) {
      const double rv = pr[i * c + j];
      nn += rv * rv;
      ee += (pl[i * c + j] - rv) * (pl[i * c + j] - rv);
      ff += (rv - px[i * c + j]) * (rv - px[i * c + j]);
    }
    norm[i] = std::sqrt(nn), err[i] = std::sqrt(ee), floor[i] = std::sqrt(ff);
  }
  // Lower medians, as torch's median.
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[(v.size() - 1) / 2];
  };
  const double typical = median(norm) * kNearZeroRowFraction;
  std::vector<double> rel_floor(n);
  for (int64_t i = 0; i < n; ++i) {
    const double scale = std::max(norm[i], typical);
    err[i] /= scale, rel_floor[i] = floor[i] / scale;
  }
  const double median_floor = std::max(median(rel_floor), kMinRowFloor);
  std::vector<double> ratio(n);
  for (int64_t i = 0; i < n; ++i) ratio[i] = err[i] / (kRowFloorFactor * std::max(rel_floor[i], median_floor));
  return ratio;
}

struct Rows {
  torch::Tensor low, exact, layout;
};

// bf16-like data: the references a floor apart, the layout closer to the low-precision one.
Rows random_rows(int64_t n, int64_t c, uint64_t seed) {
  torch::manual_seed(seed);
  Rows r;
  r.exact = torch::randn({n, c}, torch::kFloat64) * torch::rand({n, 1}, torch::kFloat64).mul(4).add(0.5);
  r.low = r.exact.to(torch::kBFloat16).to(torch::kFloat64);
  r.layout = r.low + (r.low - r.exact) * 0.5 * torch::randn({n, c}, torch::kFloat64);
  return r;
}

TEST(RowVerdict, MatchesTheRuleRowByRow) {
  Rows r = random_rows(300, 40, 11);
  // Planted: a wrong row, a near-zero row, a row identical in both references, and one whose
  // floor is large (the layout as far off as its references are from each other).
  r.layout[17] += r.low[17] * 0.2;
  r.low[40] *= 1e-5, r.exact[40] = r.low[40] * 1.001, r.layout[40] = r.low[40] * 1.002;
  r.exact[41] = r.low[41], r.layout[41] = r.low[41] + 1e-3 * r.low[41];
  r.exact[42] = r.low[42] * 1.05, r.layout[42] = r.low[42] * 0.97;
  const std::vector<double> expected = ratios_by_loop(r.layout, r.low, r.exact);

  // Two ranks, each with half of the tokens in a shuffled order.
  const torch::Tensor order = torch::randperm(300, torch::kInt64);
  std::vector<RowPiece> pieces;
  for (int rank = 0; rank < 2; ++rank) {
    const torch::Tensor tokens = order.narrow(0, rank * 150, 150);
    pieces.push_back({r.layout.index_select(0, tokens).to(torch::kFloat32), tokens, 0, rank, {}});
  }
  const RowVerdict v = judge_rows("layer_out", pieces, r.low, r.exact, {100, 120, 80});
  EXPECT_TRUE(v.judged);
  EXPECT_EQ(v.rows, 300);
  int64_t past = 0;
  for (double q : expected) past += q > 1;
  EXPECT_EQ(v.past_bound, past);
  EXPECT_GE(past, 1);
  EXPECT_NEAR(v.worst_ratio, *std::max_element(expected.begin(), expected.end()), 1e-3 * v.worst_ratio);
  ASSERT_FALSE(v.worst.empty());
  EXPECT_EQ(v.worst[0].token, 17);
  EXPECT_EQ(v.worst[0].sequence, 0);
  EXPECT_EQ(v.worst[0].position, 17);
  EXPECT_EQ(v.worst[0].op, "layer_out");
  EXPECT_EQ(v.past_tokens, std::vector<int64_t>{17});
  for (const WorstRow& w : v.worst) {
    EXPECT_NEAR(w.ratio, expected[w.token], 1e-3 * expected[w.token]) << w.token;
    const torch::Tensor holder = (order.narrow(0, 150, 150) == w.token).any();
    EXPECT_EQ(w.ranks, std::vector<int>{holder.item<bool>() ? 1 : 0}) << w.token;
  }
  // The rows chosen above: near zero, equal references and a large floor all within their bounds.
  for (int64_t t : {40, 41, 42}) EXPECT_LT(expected[t], 1) << t;
}

TEST(RowVerdict, LeftOutRowsAndNanFloorsAndNonFiniteRows) {
  Rows r = random_rows(64, 8, 12);
  r.layout[5] *= 2;                                                      // past its bound, but left out
  r.exact[6].fill_(std::numeric_limits<double>::quiet_NaN());           // no floor of its own
  r.layout[7][3] = std::numeric_limits<double>::infinity();             // not finite: past any bound
  const torch::Tensor tokens = torch::arange(64, torch::kInt64);
  torch::Tensor judged = torch::ones({64}, torch::kBool);
  judged[5] = false;
  const RowVerdict v = judge_rows("mlp_out", {{r.layout, tokens, 0, 3, judged}}, r.low, r.exact, {30, 34});
  EXPECT_EQ(v.rows, 63);
  EXPECT_EQ(v.past_tokens, std::vector<int64_t>{7});
  EXPECT_EQ(v.past_ranks, std::vector<int>{3});
  ASSERT_FALSE(v.worst.empty());
  EXPECT_TRUE(std::isinf(v.worst[0].ratio));
  EXPECT_EQ(v.worst[0].sequence, 0);
  EXPECT_EQ(v.worst[0].position, 7);
  for (const WorstRow& w : v.worst) EXPECT_NE(w.token, 5);
  // Row 6 is held to the median floor: its bound is that of a row with the median floor.
  for (const WorstRow& w : v.worst) {
    if (w.token == 6) {
      EXPECT_GT(w.bound, 0);
    }
  }
}

TEST(RowVerdict, ColumnSlicesAndMerging) {
  Rows r = random_rows(50, 12, 13);
  r.layout[9].narrow(0, 6, 6) += 0.5;  // the second column slice of token 9
  const torch::Tensor tokens = torch::arange(50, torch::kInt64);
  std::vector<RowPiece> pieces = {{r.layout.narrow(1, 0, 6), tokens, 0, 0, {}},
                                  {r.layout.narrow(1, 6, 6), tokens, 6, 1, {}}};
  const RowVerdict v = judge_rows("q", pieces, r.low, r.exact, {50});
  EXPECT_EQ(v.rows, 100);
  EXPECT_EQ(v.past_tokens, std::vector<int64_t>{9});
  EXPECT_EQ(v.past_ranks, std::vector<int>{1});
  const RowVerdict m = merge(v, judge_rows("kv", {pieces[0]}, r.low, r.exact, {50}));
  EXPECT_EQ(m.rows, 150);
  EXPECT_EQ(m.past_bound, 1);
  EXPECT_EQ(m.worst.size(), kWorstRowsKept);
  EXPECT_EQ(m.worst[0].op, "q");
  for (size_t i = 1; i < m.worst.size(); ++i) EXPECT_GE(m.worst[i - 1].ratio, m.worst[i].ratio);
  EXPECT_NE(describe(m).find("seq 0 pos 9 (token 9, q, ranks 1)"), std::string::npos) << describe(m);
  const nlohmann::json j = to_json(m);
  EXPECT_EQ(j.at("rows_past_bound"), 1);
  EXPECT_EQ(j.at("worst_rows").at(0).at("position"), 9);
}

// A flip leaves out its token and the kFlipShadowRows after it, within its sequence only.
TEST(RowVerdict, FlipShadowStaysInItsSequence) {
  const std::vector<int64_t> lens = {100, 30, 200};
  torch::Tensor flips = torch::zeros({330}, torch::kBool);
  flips[10] = true;   // sequence 0: 10..74
  flips[90] = true;   // sequence 0: 90..99, not into sequence 1
  flips[250] = true;  // sequence 2 (starts at 130): 250..314
  const torch::Tensor shadow = flip_shadow(flips, lens);
  for (int64_t t = 0; t < 330; ++t) {
    const bool expected = (t >= 10 && t <= 10 + kFlipShadowRows) || (t >= 90 && t < 100) ||
                          (t >= 250 && t <= 250 + kFlipShadowRows);
    EXPECT_EQ(shadow[t].item<bool>(), expected) << t;
  }
  EXPECT_FALSE(flip_shadow(torch::zeros({330}, torch::kBool), lens).any().item<bool>());
}

// ---- the oracle on single-row bugs ------------------------------------------------------------

// Four sequences, 4096 tokens: a row is 1/64 of the total's L2.
const std::string kLongLengths = "1500,1100,900,596";

struct SingleRowBug {
  std::string mutation, model, layout;
  std::string where;                   // "layer L, op O": the first capture point past its bound
  int64_t sequence = 0, position = 0;  // the row the bug is on
  bool at_layer_output = true;         // its layer output row is past its bound too (else it may not be)
};

void PrintTo(const SingleRowBug& c, std::ostream* os) { *os << c.mutation << " on " << c.layout; }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// `expected_code` < 0: either verdict.
nlohmann::json check_bf16(const SingleRowBug& c, const std::string& capture, int expected_code) {
  test::TempDir dir;
  test::CliResult r = test::run_cli({"check", "--model", c.model, "--layout", c.layout, "--backend", "cpu", "--ranks",
                                     "2", "--layers", "1", "--dtype", "bf16", "--lengths", kLongLengths, "--capture",
                                     capture, "--mutation", c.mutation, "--json", dir / "run.json"});
  if (expected_code >= 0) {
    EXPECT_EQ(r.code, expected_code) << r.out << r.err;
  }
  if (capture == "op") {
    EXPECT_NE(r.out.find("first divergence: " + c.where + ","), std::string::npos) << r.out;
  }
  return read_json(dir / "run.json").at("layouts").at(0);
}

// The row the bug is on leads the verdict's worst rows, past its bound.
void expect_worst_row(const nlohmann::json& verdict, const SingleRowBug& c) {
  EXPECT_FALSE(verdict.at("pass").get<bool>()) << verdict.dump();
  EXPECT_GE(verdict.at("rows_past_bound").get<int>(), 1) << verdict.dump();
  const nlohmann::json& worst = verdict.at("worst_rows").at(0);
  EXPECT_EQ(worst.at("sequence"), c.sequence) << worst.dump();
  EXPECT_EQ(worst.at("position"), c.position) << worst.dump();
  EXPECT_GT(worst.at("ratio").get<double>(), 1) << worst.dump();
}

class SingleRowBugIsCaught : public testing::TestWithParam<SingleRowBug> {};

// In bf16 on 4096 tokens the layer's relative L2 stays under its threshold (1/64 of a row's
// error), and the row verdicts flag the bug: located at the capture point where it starts, and
// (where the bug reaches it) at the layer output, or at the router logits of a token it made
// change experts.
TEST_P(SingleRowBugIsCaught, InBf16WhereTheLayerL2IsBlind) {
  const SingleRowBug& c = GetParam();
  const nlohmann::json op = check_bf16(c, "op", 1);
  const nlohmann::json& layer = op.at("layers").at(0);
  EXPECT_LT(layer.at("rel_l2").get<double>(), layer.at("threshold").get<double>()) << layer.dump();
  const nlohmann::json& first = op.at("first_divergence");
  EXPECT_EQ("layer " + std::to_string(first.at("layer").get<int>()) + ", op " + first.at("op").get<std::string>(),
            c.where);
  EXPECT_FALSE(first.at("ranks").empty());
  expect_worst_row(first, c);

  const nlohmann::json plain = check_bf16(c, "none", c.at_layer_output ? 1 : -1);
  const nlohmann::json& only = plain.at("layers").at(0);
  EXPECT_LT(only.at("rel_l2").get<double>(), only.at("threshold").get<double>()) << only.dump();
  if (c.at_layer_output) expect_worst_row(only, c);
}

std::vector<SingleRowBug> single_row_bugs() {
  const std::string q = "tiny-qwen3-moe", d = "tiny-deepseek-v3";
  return {
      // Rank 1's first row: sequence 1's first token (DP ranks hold whole sequences).
      {"reduce-scatterv-boundary-row", q, "dp-attn-rsv", "layer 0, op mlp_out", 1, 0},
      {"reduce-scatterv-boundary-row", d, "dp-attn-rsv", "layer 0, op mlp_out", 1, 0},
      {"all-gatherv-boundary-row", q, "dp-attn-ar", "layer 0, op router_logits", 1, 0},
      // CP rank 1's first token under zigzag: the start of sequence 0's second block. A RoPE
      // position one off moves q and k a lot and the layer output little.
      {"cp-first-token-position", q, "cp-moe-full", "layer 0, op q", 0, 375, false},
      {"cp-first-token-position", d, "cp-moe-dp", "layer 0, op q", 0, 375, false},
      {"last-token-own-sequence", q, "tp", "layer 0, op attn_out", 0, 1499},
      {"last-token-own-sequence", d, "dense-tp-attn", "layer 0, op attn_out", 0, 1499},
  };
}

INSTANTIATE_TEST_SUITE_P(Oracle, SingleRowBugIsCaught, testing::ValuesIn(single_row_bugs()),
                         [](const testing::TestParamInfo<SingleRowBug>& info) {
                           return test::param_name(info.index, info.param.mutation + "_" + info.param.layout);
                         });

// The layouts above without their bugs, on the same tokens: every row within its bound (else the
// cases above would pass by failing everything).
TEST(RowVerdicts, UnmutatedLayoutsPassOnTheSameTokens) {
  std::map<std::string, std::vector<std::string>> layouts;
  for (const SingleRowBug& c : single_row_bugs()) layouts[c.model].push_back(c.layout);
  ASSERT_EQ(layouts.size(), 2u);
  for (const auto& [model, names] : layouts) {
    std::string list;
    for (const std::string& n : names) list += (list.empty() ? "" : ",") + n;
    test::TempDir dir;
    test::CliResult r = test::run_cli({"check", "--model", model, "--layout", list, "--backend", "cpu", "--ranks",
                                       "2", "--layers", "1", "--dtype", "bf16", "--lengths", kLongLengths,
                                       "--capture", "op", "--json", dir / "run.json"});
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    const nlohmann::json j = read_json(dir / "run.json");
    ASSERT_EQ(j.at("layouts").size(), names.size());
    for (const auto& layout : j.at("layouts")) {
      const nlohmann::json& layer = layout.at("layers").at(0);
      EXPECT_EQ(layer.at("rows_past_bound"), 0) << layer.dump();
      // Top-k flips are left out, not judged: the layer output's rows, and top-k weights' rows.
      EXPECT_GE(layer.at("rows_left_out").get<int64_t>(), layer.at("flips").get<int64_t>());
      int64_t ops = 0, weight_flips = -1;
      for (const auto& o : layout.at("ops")) {
        ++ops;
        if (o.at("op") == "topk_experts") weight_flips = o.at("flips").get<int64_t>();
        if (o.at("op") == "topk_experts") continue;
        EXPECT_EQ(o.at("rows_past_bound"), 0) << o.dump();
        if (o.at("op") == "topk_weights") {
          EXPECT_EQ(o.at("rows_judged").get<int64_t>(), o.at("rows").get<int64_t>() - weight_flips) << o.dump();
        }
      }
      EXPECT_EQ(ops, model == "tiny-deepseek-v3" ? 8 : 11);  // layer 0 of tiny-deepseek-v3 is dense
      std::cout << "  " << model << " " << layout.at("layout") << ": " << layer.at("flips") << " flips, worst row "
                << layout.at("worst_row_ratio") << " of its bound\n";
    }
  }
}

// --row-verdicts off leaves the per-layer verdicts alone, which pass the same bug: the row
// verdicts are what catches it.
TEST(RowVerdicts, OffLeavesTheLayerL2Alone) {
  test::TempDir dir;
  test::CliResult r = test::run_cli({"check", "--model", "tiny-qwen3-moe", "--layout", "tp", "--backend", "cpu",
                                     "--ranks", "2", "--layers", "1", "--dtype", "bf16", "--lengths", kLongLengths,
                                     "--mutation", "last-token-own-sequence", "--row-verdicts", "off", "--json",
                                     dir / "run.json"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  const nlohmann::json j = read_json(dir / "run.json");
  EXPECT_FALSE(j.at("row_verdicts").get<bool>());
  EXPECT_FALSE(j.at("layouts").at(0).at("layers").at(0).contains("rows_past_bound"));
  r = test::run_cli({"check", "--model", "tiny-qwen3-moe", "--layout", "tp", "--backend", "cpu", "--ranks", "2",
                     "--row-verdicts", "maybe"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--row-verdicts 'maybe': on or off"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lb
