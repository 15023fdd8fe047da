#pragma once
// The decode oracle (`check --decode-steps N`): after the prefill, N decode steps through the
// reference and a layout on the same tokens (the reference's greedy choices, fed to both), with every
// layer's output of every step compared. A layout's decode path (its KV cache, the positions of new
// tokens, the dealt split of a decode step, its decode kernels) is judged on its own, and the first
// (step, layer) that diverges is named.
#include "datasets/token_input.h"
#include "harness/runtime/rank_context.h"
#include "layouts/layout_rank.h"
#include "oracles/compare.h"
#include "oracles/reference_model.h"

#include <nlohmann/json.hpp>

#include <vector>

namespace lb {

struct DecodeTrace {
  std::vector<torch::Tensor> fed;                  // per decode step: the tokens fed, int64 [S] on the CPU
  std::vector<std::vector<torch::Tensor>> layers;  // [step][layer]: float32 [S, H], sequence order
};

// `model`'s prefill of `batch`, then `steps` decode steps fed `feed`'s tokens when given, else its
// own greedy choices.
DecodeTrace reference_decode(const ReferenceModel& model, const TokenBatch& batch, int steps,
                             const DecodeTrace* feed = nullptr);

// Per layer: the largest relative L2 over the steps between two traces (the decode noise floor).
std::vector<double> decode_noise_floor(const DecodeTrace& low, const DecodeTrace& exact);

struct DecodeVerdict {
  int step = 0;
  int64_t layer = 0;
  TensorDiff diff;
  double threshold = 0;
  bool pass = false;
};

// Collective. The layout's prefill of `batch` and `reference->fed.size()` decode steps on the
// reference's tokens (sent from rank 0, where `reference` is given); rank 0 compares every
// (step, layer) under thresholds[layer] and returns the verdicts (other ranks: none).
std::vector<DecodeVerdict> check_decode(RankContext& ctx, LayoutRank& rank, const TokenBatch& batch, int steps,
                                        const DecodeTrace* reference, const std::vector<double>& thresholds);

// "  decode, N steps: ..." lines: the worst step per layer and the first divergence.
std::string format_decode_verdicts(const std::vector<DecodeVerdict>& verdicts);
nlohmann::json to_json(const DecodeVerdict& v);

}  // namespace lb
