#pragma once
// DeepSeek-V4 models by name, for runs without a checkpoint (random weights,
// oracles/deepseek_v4_weights.h):
//   deepseek-v4-flash: DeepSeek-V4-Flash at its real shapes, from its hub config.json written in
//     transformers' keys: 43 decoder layers (sliding, sliding, then compressed sparse and heavily
//     compressed in turn; hash routing on the first 3), the multi-token-prediction block left out;
//   tiny-deepseek-v4: every attention kind and both routings at sizes CPU tests can run, with 4
//     output groups so that tp = 4 divides them.
#include "oracles/deepseek_v4_model.h"

#include <optional>
#include <string>
#include <vector>

namespace lb {

std::vector<std::string> deepseek_v4_preset_names();
std::optional<DeepseekV4Config> find_deepseek_v4_preset(const std::string& name);

// Keeps the first `layers` decoder layers (0 keeps all); InputError when the model has fewer.
void keep_first_v4_layers(DeepseekV4Config& config, int64_t layers);

}  // namespace lb
