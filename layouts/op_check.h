#pragma once
// Op-level comparison (`check --capture op`): every rank's capture pieces are gathered to rank 0
// and compared with the reference's capture of the same layer, piece by piece, so that the first
// divergence is named with its layer, capture point, ranks and token ranges.
#include "harness/runtime/rank_context.h"
#include "layouts/row_check.h"
#include "oracles/compare.h"
#include "oracles/op_capture.h"

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace lb {

// Top-k selections may flip at near-ties without a bug: they are counted, not compared as values,
// and the capture fails only when more than this fraction of tokens changed experts.
// Their MLP and layer outputs are left out of those captures' comparison (they differ by design).
constexpr double kMaxRoutingFlipFraction = 0.10;

struct OpVerdict {
  int64_t layer = 0;
  std::string op;
  TensorDiff diff;         // topk_experts: rel_l2 is the fraction of tokens that changed experts
  double threshold = 0;
  bool pass = true;
  int64_t rows = 0;        // rows compared, over all ranks
  int64_t flips = 0;       // tokens whose top-k expert set differs (routing captures)
  std::vector<int> ranks;  // ranks whose piece is past the threshold
  std::vector<std::pair<int64_t, int64_t>> token_ranges;  // original token ranges past the threshold
  RowVerdict row;          // bf16/f16: every row against its own bound (flipped tokens left out)
};

// Row verdicts of one layer's capture points (calibrated bf16/f16 runs).
struct CaptureRows {
  const LayerCapture* exact = nullptr;  // the f32 reference's capture of the layer; null: no row verdicts
  torch::Tensor left_out;               // bool [T]: flipped at an earlier layer, or in such a flip's shadow
  std::vector<int64_t> seq_lens;
};

// Collective over the world. On rank 0: [capture op index][rank] pieces, on the CPU; elsewhere empty.
std::vector<std::vector<OpPiece>> gather_capture(RankContext& ctx, const LayerCapture& capture);
// The pieces of capture point `op` in gather_capture's result.
const std::vector<OpPiece>& pieces_of(const std::vector<std::vector<OpPiece>>& pieces, const std::string& op);

// bool [n]: the rows of two [n, k] expert choices whose expert sets differ.
torch::Tensor flipped_rows(const torch::Tensor& experts, const torch::Tensor& ref_experts);

// Rank 0: one verdict per capture point the layer has. `thresholds` maps op -> relative L2
// (ops missing from it use `default_threshold`). With `rows.exact`, every row is also judged against
// its own bound: `rows.left_out` everywhere, this layer's flips from topk_weights, mlp_out and
// layer_out (router_logits keeps them: a flip must come from logits that agree within their bound).
std::vector<OpVerdict> compare_capture(int64_t layer, const std::vector<std::vector<OpPiece>>& pieces,
                                       const LayerCapture& reference, const std::map<std::string, double>& thresholds,
                                       double default_threshold, const CaptureRows& rows = {});

// bool [total]: the tokens whose top-k expert set in any piece differs from `reference_experts`
// ([total, k], original order; undefined on a dense layer: none).
torch::Tensor flipped_tokens(const std::vector<OpPiece>& experts, const torch::Tensor& reference_experts,
                             int64_t total);

// The low-precision reference against the f32 reference, per capture point: the noise floor that
// bf16/f16 thresholds are calibrated on.
std::map<std::string, double> capture_noise_floor(const LayerCapture& low, const LayerCapture& exact);

std::string describe(const OpVerdict& v);  // "layer 3, op mlp_out, ranks 1, tokens 10-19 (rel_l2 ...)"
nlohmann::json to_json(const OpVerdict& v);

}  // namespace lb
