#pragma once
// Runs a layout next to the reference on the same weights and tokens and compares every layer's
// output, reassembled in original token order, with the reference's.
#include "datasets/token_input.h"
#include "harness/runtime/communicator.h"
#include "harness/runtime/rank_context.h"
#include "layouts/decode_check.h"
#include "layouts/layout.h"
#include "layouts/mutations.h"
#include "layouts/op_check.h"
#include "oracles/compare.h"
#include "oracles/reference_model.h"

#include <nlohmann/json.hpp>

#include <map>
#include <optional>

#include <string>
#include <vector>

namespace lb {

struct LayerVerdict {
  int64_t layer = 0;
  TensorDiff diff;
  double threshold = 0;  // relative L2 this layer had to stay under
  bool pass = false;
  // bf16/f16: every row of the output against its own bound, the tokens whose experts flipped here
  // or earlier left out (a flip here is judged on its router logits instead).
  RowVerdict row;
  int64_t flips = 0;     // tokens whose top-k experts differ from the reference's at this layer
  int64_t left_out = 0;  // tokens whose output row is not judged (flips and their shadows, kFlipShadowRows)
};

struct LayoutCheck {
  std::string layout;
  ParallelConfig parallel;
  std::vector<LayerVerdict> layers;
  bool pass = false;
  double layout_ms = 0;                    // all layers, rank 0, device-synchronized
  std::vector<CollectiveRecord> records;   // rank 0's collectives during the layers
  std::vector<int64_t> rank_tokens;        // rows per world rank
  std::vector<OpVerdict> ops;              // with op capture: every capture point of every layer
  std::optional<OpVerdict> first_divergence;  // with op capture: the first (layer, op) past its threshold
  std::vector<DecodeVerdict> decode;          // with decode steps: every (step, layer)
  double worst_row_ratio = 0;                 // bf16/f16: the worst row of any layer or capture point / its bound
};

// What row verdicts need beyond the low-precision reference's layer outputs (rank 0).
struct RowReference {
  std::vector<torch::Tensor> exact_layers;         // the f32 reference's layer outputs
  std::vector<torch::Tensor> experts;              // the low-precision reference's top-k experts (undefined: dense)
  std::vector<torch::Tensor> router_logits;        // the low-precision reference's router logits
  std::vector<torch::Tensor> exact_router_logits;  // the f32 reference's
  std::vector<LayerCapture> exact_captures;        // with op capture: the f32 reference's captures
};

// Op-level checking (`--capture op`) and planted bugs (`--mutation`).
struct OpCheckOptions {
  bool capture = false;
  const std::vector<LayerCapture>* reference = nullptr;        // rank 0: the reference's captures per layer
  std::vector<std::map<std::string, double>> thresholds;      // per layer, op -> relative L2 (else the layer's)
  Mutation mutation = Mutation::None;
  // Row verdicts (calibrated bf16/f16), set alike on every rank: the layouts keep their routing.
  bool rows = false;
  const RowReference* row_reference = nullptr;  // rank 0
};

// The decode oracle (`--decode-steps`): rank 0's reference trace and per-layer thresholds.
struct DecodeCheckOptions {
  int steps = 0;
  const DecodeTrace* reference = nullptr;
  std::vector<double> thresholds;
  // Calibrated checks, set alike on every rank: rows that change experts are told from bugs
  // (layouts/decode_check.h) on `exact`, the f32 reference's trace (rank 0).
  bool flips = false;
  const DecodeTrace* exact = nullptr;
};

// Collective over all ranks; the verdicts are filled on rank 0 (where `reference_layers`, the
// reference's per-layer outputs in original order, must be given, with one threshold per layer).
LayoutCheck check_layout(RankContext& ctx, const LayoutSpec& layout, const ParallelConfig& parallel,
                         const ModelConfig& config, const WeightSource& weights, ReferenceOptions options,
                         const TokenBatch& batch, const std::vector<torch::Tensor>& reference_layers,
                         const std::vector<double>& max_rel_l2, const OpCheckOptions& op_check = {},
                         const DecodeCheckOptions& decode = {});

std::string format_layout_check(const LayoutCheck& check);
nlohmann::json to_json(const LayoutCheck& check);

}  // namespace lb
