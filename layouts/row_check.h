#pragma once
// Row-level verdicts for bf16/f16 checks. The per-layer relative L2 averages over every row, so an
// error on one token of 8192 is diluted by 1/sqrt(8192) and passes; here every row (token) of a
// layer output or capture point is judged against its own noise floor.
//
// The rule, for row i, with L the layout, R the low-precision reference and X the f32 reference
// on the same row and columns:
//   error_i = ||L_i - R_i|| / n_i          floor_i = ||R_i - X_i|| / n_i
//   n_i     = max(||R_i||, kNearZeroRowFraction * median_j ||R_j||)
//   bound_i = kRowFloorFactor * max(floor_i, median_j floor_j, kMinRowFloor)
// and the row is past its bound when error_i > bound_i; the ratio error_i / bound_i is reported.
// - Its own floor: a row whose bf16 reference is far from f32 (rounding that cancels, an expert
//   set flipped between the references) may be as far from the layout.
// - At least the median floor: floor_i is a random draw; a row that the references happen to agree
//   on (or compute identically, floor 0) is not held to a bound its own noise cannot keep.
// - n_i: the median row norm keeps a near-zero row from turning rounding into a huge relative error.
// - kRowFloorFactor: a layout differs from the bf16 reference only by summation order, while the
//   floor also holds the bf16 rounding of the weights, which layout and reference share: at real
//   shape a layer's relative L2 is 0.1-0.8 of its floor (results/layouts, results/capture). The
//   factor leaves room for the worst of thousands of rows, which have far fewer degrees of freedom
//   than a layer (3 top-k weights a row on the tiny model), while a token that lost one rank's MoE
//   partial sum, a wrong RoPE position or a wrong sequence is 30-1000x its floor.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lb {

constexpr double kRowFloorFactor = 10.0;
constexpr double kNearZeroRowFraction = 1e-2;
constexpr double kMinRowFloor = 1e-6;  // rows computed identically in both precisions
constexpr size_t kWorstRowsKept = 5;
// Rows after a top-k flip that are left out from the next layer on (see flip_shadow).
constexpr int64_t kFlipShadowRows = 64;

// One rank's rows to judge: a piece of [T, C] in original token order.
struct RowPiece {
  torch::Tensor rows;      // [n, c]
  torch::Tensor tokens;    // int64 [n]: original token index of each row
  int64_t col_offset = 0;  // the reference column where `rows` start
  int rank = 0;
  torch::Tensor judged;    // bool [n]; undefined: every row. Rows left out still set the median floor.
};

struct WorstRow {
  std::string op;  // where it was measured
  int64_t token = 0;
  int64_t sequence = 0, position = 0;  // in the packed batch
  std::vector<int> ranks;              // the ranks whose copy of the row is this far (the worst first)
  double rel_l2 = 0, bound = 0, ratio = 0;
};

struct RowVerdict {
  bool judged = false;           // row verdicts were made (calibrated bf16/f16)
  int64_t rows = 0;              // rows judged (a row held by several ranks counts once per rank)
  int64_t past_bound = 0;        // rows with error > bound
  double worst_ratio = 0;        // the largest error / bound
  std::vector<WorstRow> worst;   // the worst rows, worst first, at most kWorstRowsKept
  std::vector<int64_t> past_tokens;  // original index of every row past its bound
  std::vector<int> past_ranks;       // ranks holding one, ascending
  bool pass() const { return past_bound == 0; }
};

// Judges every row of `pieces` (judged ones) against `low` (the low-precision reference) and
// `exact` (the f32 reference), both [T, C] in original token order; a NaN row of `exact` has no
// floor of its own (its bound uses the median). `op` names the rows in the worst list.
RowVerdict judge_rows(const std::string& op, const std::vector<RowPiece>& pieces, const torch::Tensor& low,
                      const torch::Tensor& exact, const std::vector<int64_t>& seq_lens);

// A token whose experts flipped at a near-tie differs by design from then on, and every later
// token of its sequence attends to it: bool [T], the flipped tokens (`flips`, bool [T]) and the
// kFlipShadowRows tokens after each in its sequence, which see it as one of few keys (or a near
// one). Past them, a flipped key is one of many and moves a row well below its floor.
torch::Tensor flip_shadow(const torch::Tensor& flips, const std::vector<int64_t>& seq_lens);

// Both verdicts' rows together (the layer verdict: its output and its flipped rows' router logits).
RowVerdict merge(RowVerdict a, const RowVerdict& b);

// "2 rows past their bound; worst: seq 0 pos 36 (token 36, ranks 1) 3.5e-01 = 35.2x bound, ..."
std::string describe(const RowVerdict& v);
nlohmann::json to_json(const RowVerdict& v);

}  // namespace lb
