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
};

// Op-level checking (`--capture op`) and planted bugs (`--mutation`).
struct OpCheckOptions {
  bool capture = false;
  const std::vector<LayerCapture>* reference = nullptr;        // rank 0: the reference's captures per layer
  std::vector<std::map<std::string, double>> thresholds;      // per layer, op -> relative L2 (else the layer's)
  Mutation mutation = Mutation::None;
};

// The decode oracle (`--decode-steps`): rank 0's reference trace and per-layer thresholds.
struct DecodeCheckOptions {
  int steps = 0;
  const DecodeTrace* reference = nullptr;
  std::vector<double> thresholds;
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
