#pragma once
// The arithmetic of a prefill, counted from the model's shapes (2 FLOPs per multiply-add of the
// matrix products and attention; norms, RoPE and routing softmax left out), so a benchmark can
// state achieved TFLOP/s against the device's measured matmul peak.
#include "harness/model/model_config.h"

#include <vector>

namespace lb {

// All decoder layers of `config` (its num_layers) on sequences of `seq_lens` tokens, causal
// attention counted over the visible keys only; the lm_head is not included.
double prefill_flops(const ModelConfig& config, const std::vector<int64_t>& seq_lens);

}  // namespace lb
