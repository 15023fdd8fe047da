#pragma once
// The decode oracle (`check --decode-steps N`): after the prefill, N decode steps through the
// reference and a layout on the same tokens (the reference's greedy choices, fed to both), with every
// layer's output of every step compared. A layout's decode path (its KV cache, the positions of new
// tokens, the dealt split of a decode step, its decode kernels) is judged on its own, and the first
// (step, layer) that diverges is named.
//
// Calibrated (bf16/f16) checks tell a near-tie from a bug as the prefill's row verdicts do: a row
// whose experts differ from the reference's is left out of its layer's verdict from that layer on
// (DecodeFlips), and is judged instead on its router logits against their own bound, so a token
// moved far enough to change experts is still caught; and more than kMaxRoutingFlipFraction of the
// rows x MoE layers x steps changing experts fails the check. A decode step has one row per
// sequence, so without this one near-tie flip among two rows moved a layer's relative L2 far past
// 3x its floor (DeepSeek-V3 on one H200 at 7ff8315), and a flip between the two references raised
// that layer's floor for every layout.
#include "datasets/token_input.h"
#include "harness/runtime/rank_context.h"
#include "layouts/layout_rank.h"
#include "layouts/op_check.h"
#include "layouts/row_check.h"
#include "oracles/compare.h"
#include "oracles/reference_model.h"

#include <nlohmann/json.hpp>

#include <vector>

namespace lb {

struct DecodeTrace {
  std::vector<torch::Tensor> fed;                  // per decode step: the tokens fed, int64 [S] on the CPU
  std::vector<std::vector<torch::Tensor>> layers;  // [step][layer]: float32 [S, H], sequence order
  // [step][layer], on the CPU, undefined on dense layers: int64 [S, k] and float32 [S, E].
  std::vector<std::vector<torch::Tensor>> experts, router_logits;
};

// The rows of a decode step that each layer's verdict leaves out once experts flip: a row whose
// experts differ from the reference's at layer L differs by design up to the step's last layer, and
// its sequence's cached keys and values of the layers after L differ from then on, so later steps
// leave that sequence out from layer L + 1 on.
class DecodeFlips {
 public:
  explicit DecodeFlips(int64_t sequences);
  void start_step();
  // bool [S]: the rows layer `layer` of this step leaves out, `flips` (bool [S]) being the rows whose
  // experts differ there; recorded for the layers and steps after. `fresh`, when given, receives
  // the flips of rows not left out before this layer (their router logits are still comparable).
  torch::Tensor left_out(int64_t layer, const torch::Tensor& flips, torch::Tensor* fresh = nullptr);

 private:
  std::vector<int64_t> from_layer_;  // per sequence: left out above this layer (flipped in an earlier step)
  std::vector<int64_t> this_step_;   // per sequence: the first layer it flipped at in this step
};

// `model`'s prefill of `batch`, then `steps` decode steps fed `feed`'s tokens when given, else its
// own greedy choices.
DecodeTrace reference_decode(const ReferenceModel& model, const TokenBatch& batch, int steps,
                             const DecodeTrace* feed = nullptr);

// Per layer: the largest relative L2 over the steps between two traces (the decode noise floor),
// over the rows whose experts agree (DecodeFlips between the two).
std::vector<double> decode_noise_floor(const DecodeTrace& low, const DecodeTrace& exact);

struct DecodeVerdict {
  int step = 0;
  int64_t layer = 0;
  TensorDiff diff;         // over the rows judged
  double threshold = 0;
  bool pass = false;
  int64_t rows = 0;        // rows judged (calibrated: those not left out for flips)
  int64_t flips = 0;       // rows whose experts differ from the reference's at this layer
  RowVerdict router_rows;  // the new flips' router logits, each against its own bound
  bool too_many_flips = false;  // the check's flips passed kMaxRoutingFlipFraction here
};

// One (step, layer) verdict, on rank 0: `layout` and the traces' rows in sequence order; `flips`
// (bool [S]) the rows whose experts differ from `low`'s, `left_out` and `fresh` as DecodeFlips gives
// them; `router` the layout's router-logit pieces (none on a dense layer). Without `exact` (an f32
// check) every row is judged and flips are not looked at.
DecodeVerdict judge_decode_layer(int step, int64_t layer, const torch::Tensor& layout, const DecodeTrace& low,
                                 const DecodeTrace* exact, const torch::Tensor& flips, const torch::Tensor& left_out,
                                 const torch::Tensor& fresh, const std::vector<OpPiece>& router, double threshold);

// Collective. The layout's prefill of `batch` and `reference->fed.size()` decode steps on the
// reference's tokens (sent from rank 0, where `reference` is given); rank 0 compares every
// (step, layer) under thresholds[layer] and returns the verdicts (other ranks: none).
// With `flips` (set alike on every rank; calibrated checks) flips are told from bugs as above, on
// `exact`, the f32 reference's trace (rank 0).
std::vector<DecodeVerdict> check_decode(RankContext& ctx, LayoutRank& rank, const TokenBatch& batch, int steps,
                                        const DecodeTrace* reference, const std::vector<double>& thresholds,
                                        const DecodeTrace* exact = nullptr, bool flips = false);

// "  decode, N steps: ..." lines: the worst step per layer and the first divergence.
std::string format_decode_verdicts(const std::vector<DecodeVerdict>& verdicts);
nlohmann::json to_json(const DecodeVerdict& v);

}  // namespace lb
