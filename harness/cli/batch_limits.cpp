#include "harness/cli/batch_limits.h"

#include "harness/runtime/device.h"
#include "harness/runtime/errors.h"

#include <cstdio>

namespace lb {

namespace {

std::string gib(double bytes) {
  char text[64];
  std::snprintf(text, sizeof text, "%.3g GiB", bytes / double(int64_t(1) << 30));
  return text;
}

}  // namespace

double least_activation_bytes(double tokens, const ModelConfig& config, torch::ScalarType dtype) {
  const double per_token = double(config.num_layers) * double(config.hidden) + double(config.vocab);
  return tokens * per_token * double(c10::elementSize(dtype));
}

void check_batch_fits(const std::vector<int64_t>& seq_lens, const ModelConfig& config, torch::ScalarType dtype,
                      torch::Device device, const std::string& flag) {
  double tokens = 0;  // a double: lengths near 2^63 would overflow an int64 sum
  for (size_t i = 0; i < seq_lens.size(); ++i) {
    if (seq_lens[i] > config.max_position)
      throw InputError(flag + ": sequence " + std::to_string(i) + " has " + std::to_string(seq_lens[i]) +
                       " tokens, past the model's max_position_embeddings " + std::to_string(config.max_position));
    tokens += double(seq_lens[i]);
  }
  const double need = least_activation_bytes(tokens, config, dtype);
  const double have = double(memory_capacity_bytes(device));
  if (need > have)
    throw InputError(flag + ": " + std::to_string(int64_t(tokens)) + " tokens need at least " + gib(need) +
                     " for the layer outputs and logits alone, more than the " + gib(have) + " of " +
                     device_name(device));
}

}  // namespace lb
