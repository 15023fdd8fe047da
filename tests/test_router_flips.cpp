// The router-aware rule of op capture (layouts/op_check.h), on crafted captures: a layout whose
// router picks another expert for a share of tokens at near-ties. Below kMaxRoutingFlipFraction the
// flips are counted and their tokens left out of topk_weights, mlp_out and layer_out (whose values
// differ by design), in the totals and in the row verdicts alike; above it, topk_experts fails.
#include "test_util.h"

#include "layouts/op_check.h"

#include <map>

namespace lb {
namespace {

constexpr int64_t kTokens = 400, kExperts = 8, kTopK = 2, kHidden = 16;

struct Captures {
  LayerCapture low, exact;                        // the references
  std::map<std::string, torch::Tensor> layout;    // the layout's rows, in token order
  torch::Tensor flipped;                          // bool [T]
};

// References a bf16-like floor apart; the layout within the floor of the low-precision one,
// except the tokens it routes to its third-best expert, whose MLP and layer outputs then differ.
Captures make_captures(double flip_share, uint64_t seed) {
  torch::manual_seed(seed);
  auto noisy = [](const torch::Tensor& t, double scale) { return t + scale * t.abs().mean() * torch::randn_like(t); };
  const torch::Tensor tokens = torch::arange(kTokens, torch::kInt64);
  Captures c;
  const torch::Tensor x = torch::randn({kTokens, kHidden});
  const torch::Tensor logits = torch::randn({kTokens, kExperts});
  auto [top_values, order] = logits.topk(kTopK + 1, 1);
  const torch::Tensor experts = order.narrow(1, 0, kTopK);
  const torch::Tensor weights = top_values.narrow(1, 0, kTopK).softmax(1);
  const torch::Tensor mlp = torch::randn({kTokens, kHidden});
  std::map<std::string, torch::Tensor> exact = {{"residual", x},          {"router_logits", logits},
                                                {"topk_experts", experts}, {"topk_weights", weights},
                                                {"mlp_out", mlp},          {"layer_out", x + mlp}};
  for (const auto& [op, t] : exact) {
    const bool ids = op == "topk_experts";
    c.exact.add(op, t, tokens);
    c.low.add(op, ids ? t : noisy(t, 4e-3), tokens);
    c.layout[op] = ids ? t.to(torch::kFloat32) : noisy(c.low.find(op)->rows, 1e-3);
  }
  c.flipped = torch::rand({kTokens}) < flip_share;
  // The flipped tokens: the second expert swapped for the third, another MLP output.
  c.layout["topk_experts"].index_put_({c.flipped, 1}, order.index({c.flipped, kTopK}).to(torch::kFloat32));
  const torch::Tensor other = torch::randn({kTokens, kHidden});
  c.layout["mlp_out"] = torch::where(c.flipped.unsqueeze(1), other, c.layout["mlp_out"]);
  c.layout["layer_out"] = torch::where(c.flipped.unsqueeze(1), c.layout["residual"] + other, c.layout["layer_out"]);
  return c;
}

// As gather_capture hands them to rank 0: per capture point, one piece per rank (two ranks,
// alternate tokens).
std::vector<std::vector<OpPiece>> pieces_of(const Captures& c) {
  std::vector<std::vector<OpPiece>> out;
  for (const std::string& op : capture_ops()) {
    std::vector<OpPiece> per_rank;
    for (int64_t rank = 0; rank < 2; ++rank) {
      const torch::Tensor tokens = torch::arange(rank, kTokens, 2, torch::kInt64);
      const auto it = c.layout.find(op);
      per_rank.push_back(it == c.layout.end() ? OpPiece{torch::zeros({0, 1}), torch::zeros({0}, torch::kInt64), 0}
                                              : OpPiece{it->second.index_select(0, tokens), tokens, 0});
    }
    out.push_back(per_rank);
  }
  return out;
}

std::map<std::string, OpVerdict> compare(const Captures& c) {
  std::map<std::string, double> thresholds;
  for (const auto& [op, floor] : capture_noise_floor(c.low, c.exact)) thresholds[op] = 3 * floor;
  CaptureRows rows;
  rows.exact = &c.exact;
  rows.left_out = torch::zeros({kTokens}, torch::kBool);
  rows.seq_lens = {kTokens};
  std::map<std::string, OpVerdict> out;
  for (OpVerdict& v : compare_capture(0, pieces_of(c), c.low, thresholds, 1.0, rows)) out[v.op] = v;
  EXPECT_EQ(out.size(), 6u);
  return out;
}

TEST(RouterFlips, AFewAreCountedAndLeftOut) {
  const Captures c = make_captures(0.05, 21);
  const int64_t flipped = c.flipped.sum().item<int64_t>();
  ASSERT_GT(flipped, 5);
  ASSERT_LT(flipped, kTokens / 10);
  const auto v = compare(c);
  for (const auto& [op, verdict] : v) EXPECT_TRUE(verdict.pass) << describe(verdict);
  EXPECT_EQ(v.at("topk_experts").flips, flipped);
  EXPECT_DOUBLE_EQ(v.at("topk_experts").diff.rel_l2, double(flipped) / kTokens);
  for (const char* op : {"topk_weights", "mlp_out", "layer_out"}) {
    EXPECT_EQ(v.at(op).row.rows, kTokens - flipped) << op;  // left out of the row verdicts
    EXPECT_EQ(v.at(op).row.past_bound, 0) << op;
  }
  // Router logits keep every row: a flip must come from logits that agree within their bound.
  EXPECT_EQ(v.at("router_logits").row.rows, kTokens);
  // The flipped tokens' outputs do differ: compared with the rest, they would fail.
  const double with_flips = compare_tensors(c.layout.at("mlp_out"), c.low.find("mlp_out")->rows).rel_l2;
  EXPECT_GT(with_flips, v.at("mlp_out").threshold);
}

TEST(RouterFlips, TooManyFailAtTopkExperts) {
  const Captures c = make_captures(0.2, 22);
  const auto v = compare(c);
  EXPECT_FALSE(v.at("topk_experts").pass);
  EXPECT_GT(v.at("topk_experts").diff.rel_l2, kMaxRoutingFlipFraction);
  EXPECT_EQ(v.at("topk_experts").ranks, (std::vector<int>{0, 1}));
  EXPECT_FALSE(v.at("topk_experts").token_ranges.empty());
  // Everything before the routing still agrees: topk_experts is where it first shows.
  for (const char* op : {"residual", "router_logits"}) EXPECT_TRUE(v.at(op).pass) << op;
}

}  // namespace
}  // namespace lb
