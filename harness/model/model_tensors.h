#pragma once
// Every tensor a model has: its hub name, shape, and how random weights initialize it.
// One table serves checkpoint validation (shapes) and random weights (init).
#include "harness/model/model_config.h"

#include <string>
#include <vector>

namespace lb {

enum class InitKind {
  Linear,        // uniform, std 1/sqrt(fan_in)
  OutputLinear,  // a projection that writes into the residual stream: std 1/sqrt(fan_in * 2 * layers)
  Embedding,     // std 1
  Norm,          // 1 + U(-0.1, 0.1), so a wrong norm weight is visible
  Bias,          // U(-0.05, 0.05): DeepSeek's e_score_correction_bias
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  InitKind init = InitKind::Linear;
  bool fp8_quantizable = false;  // a checkpoint may store it as F8_E4M3 with *_scale_inv
};

// Names follow the HF hub layout (per-expert tensors).
std::vector<TensorSpec> model_tensors(const ModelConfig& config);
// The tensors of one decoder layer only (names with the "model.layers.{i}." prefix).
std::vector<TensorSpec> layer_tensors(const ModelConfig& config, int64_t layer);

// The spec of one tensor by hub name; throws std::logic_error for a name the model does not have.
TensorSpec tensor_spec(const ModelConfig& config, const std::string& name);

std::string layer_prefix(int64_t layer);

}  // namespace lb
