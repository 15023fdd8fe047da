// How the calibrated decode oracle tells a near-tie from a bug (layouts/decode_check.h), on made-up
// traces: which rows a flip leaves out and for how long, a flip between the references kept out of
// the noise floor, and a flipped row excused only while its router logits agree with the reference's.
#include "layouts/decode_check.h"

#include <gtest/gtest.h>

namespace lb {
namespace {

torch::Tensor rows_of(std::initializer_list<bool> v) {
  torch::Tensor t = torch::zeros({int64_t(v.size())}, torch::kBool);
  int64_t i = 0;
  for (const bool b : v) t[i++] = b;
  return t;
}

TEST(DecodeFlips, LeavesARowOutToTheStepsEndAndItsSequenceAboveTheLayerAfter) {
  DecodeFlips flips(3);
  torch::Tensor fresh;
  flips.start_step();  // step 0
  EXPECT_TRUE(torch::equal(flips.left_out(0, rows_of({false, true, false}), &fresh), rows_of({false, true, false})));
  EXPECT_TRUE(torch::equal(fresh, rows_of({false, true, false})));
  EXPECT_TRUE(torch::equal(flips.left_out(1, rows_of({false, false, false}), &fresh), rows_of({false, true, false})))
      << "a row that flipped differs to the step's last layer";
  EXPECT_TRUE(torch::equal(fresh, rows_of({false, false, false})));
  EXPECT_TRUE(torch::equal(flips.left_out(2, rows_of({false, true, true}), &fresh), rows_of({false, true, true})));
  EXPECT_TRUE(torch::equal(fresh, rows_of({false, false, true}))) << "row 1's logits moved with its earlier flip";
  flips.start_step();  // step 1: row 1 flipped at layer 0 (its cache differs above it), row 2 at layer 2
  EXPECT_TRUE(torch::equal(flips.left_out(0, rows_of({false, false, false}), &fresh), rows_of({false, false, false})));
  EXPECT_TRUE(torch::equal(flips.left_out(1, rows_of({false, false, false}), &fresh), rows_of({false, true, false})));
  EXPECT_TRUE(torch::equal(flips.left_out(2, rows_of({true, false, false}), &fresh), rows_of({true, true, false})));
  EXPECT_TRUE(torch::equal(fresh, rows_of({true, false, false})));
}

// Two sequences, one step, two layers (layer 0 dense); hidden 8, 4 experts, top 2.
struct Traces {
  DecodeTrace low, exact;
};

Traces made_up_traces() {
  torch::manual_seed(21);
  Traces t;
  for (DecodeTrace* d : {&t.low, &t.exact}) {
    d->fed = {torch::zeros({2}, torch::kInt64)};
    d->layers = {{torch::randn({2, 8}), torch::randn({2, 8})}};
    d->experts = {{torch::Tensor(), torch::tensor({0, 1, 2, 3}, torch::kInt64).view({2, 2})}};
    d->router_logits = {{torch::Tensor(), torch::randn({2, 4})}};
  }
  // The f32 reference a little off the low-precision one, row by row.
  for (size_t i = 0; i < 2; ++i) t.exact.layers[0][i] = t.low.layers[0][i] + 1e-3 * torch::randn({2, 8});
  t.exact.router_logits[0][1] = t.low.router_logits[0][1] + 1e-3 * torch::randn({2, 4});
  return t;
}

TEST(DecodeNoiseFloor, LeavesOutARowTheReferencesRoutedApart) {
  Traces t = made_up_traces();
  const double calm = decode_noise_floor(t.low, t.exact).at(1);
  EXPECT_LT(calm, 1e-2);
  t.exact.layers[0][1][1] += 5.0;  // row 1 far apart at layer 1 ...
  EXPECT_GT(decode_noise_floor(t.low, t.exact).at(1), 0.1) << "the same experts: a real difference";
  t.exact.experts[0][1] = torch::tensor({0, 1, 2, 0}, torch::kInt64).view({2, 2});  // ... because it chose other experts
  EXPECT_DOUBLE_EQ(decode_noise_floor(t.low, t.exact).at(1), compare_tensors(t.low.layers[0][1].narrow(0, 0, 1),
                                                                             t.exact.layers[0][1].narrow(0, 0, 1))
                                                                 .rel_l2);
}

TEST(JudgeDecodeLayer, ExcusesAFlippedRowOnlyWhileItsRouterLogitsAgree) {
  const Traces t = made_up_traces();
  const torch::Tensor reference = t.low.layers[0][1];
  torch::Tensor layout = reference + 1e-4 * torch::randn({2, 8});
  layout[1] += 3.0;  // row 1 chose other experts: far from the reference by design
  const auto router = [&](double off) {
    return std::vector<OpPiece>{{t.low.router_logits[0][1] + off * torch::randn({2, 4}), torch::arange(2), 0}};
  };
  const torch::Tensor flipped = rows_of({false, true});
  const double threshold = 1e-2;
  DecodeVerdict v = judge_decode_layer(0, 1, layout, t.low, &t.exact, flipped, flipped, flipped, router(1e-4), threshold);
  EXPECT_TRUE(v.pass) << v.diff.rel_l2;
  EXPECT_EQ(v.rows, 1);
  EXPECT_EQ(v.flips, 1);
  EXPECT_TRUE(v.router_rows.judged);
  // Its router logits far from the reference's: the token moved, not a near-tie.
  v = judge_decode_layer(0, 1, layout, t.low, &t.exact, flipped, flipped, flipped, router(1.0), threshold);
  EXPECT_FALSE(v.pass);
  EXPECT_LT(v.diff.rel_l2, threshold);
  EXPECT_FALSE(v.router_rows.pass());
  // The same experts: the row is judged, and diverges.
  const torch::Tensor none = rows_of({false, false});
  v = judge_decode_layer(0, 1, layout, t.low, &t.exact, none, none, none, router(1e-4), threshold);
  EXPECT_FALSE(v.pass);
  EXPECT_EQ(v.rows, 2);
  // An f32 check (no f32 trace to judge flips on) judges every row.
  v = judge_decode_layer(0, 1, layout, t.low, nullptr, flipped, flipped, flipped, router(1e-4), threshold);
  EXPECT_FALSE(v.pass);
  EXPECT_EQ(v.flips, 0);
}

}  // namespace
}  // namespace lb
