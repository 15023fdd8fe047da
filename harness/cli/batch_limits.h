#pragma once
// Whether a batch of token sequences can run at all, decided before any weight is made: every
// position inside the model's max_position_embeddings, and the activations within the memory of
// the device. Without this, --tokens 1000000000000 grew to 17 GB and ended in a bare
// std::bad_alloc a minute later.
#include "harness/model/model_config.h"

#include <torch/torch.h>

#include <string>
#include <vector>

namespace lb {

// A lower bound of the bytes a forward pass over `tokens` tokens holds at once: the output of every
// layer kept for the comparison (tokens x layers x hidden) and the logits (tokens x vocab), in
// `dtype`. Real runs need more (weights, attention, MoE buffers); this only refuses what cannot fit.
double least_activation_bytes(double tokens, const ModelConfig& config, torch::ScalarType dtype);

// InputError naming `flag` when a sequence is longer than config.max_position, or when the least
// activation bytes of all the sequences together exceed the memory of `device`.
void check_batch_fits(const std::vector<int64_t>& seq_lens, const ModelConfig& config, torch::ScalarType dtype,
                      torch::Device device, const std::string& flag);

}  // namespace lb
