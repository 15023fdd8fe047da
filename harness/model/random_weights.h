#pragma once
// Deterministic random weights: every element is a hash of (seed, tensor name, element index),
// so any rank can make exactly its slice, on any device, and get the same numbers whatever the
// rank count, layout or LibTorch version (integer arithmetic only, no torch RNG).
#include "harness/model/model_tensors.h"
#include "harness/model/safetensors.h"

#include <torch/torch.h>

#include <optional>

namespace lb {

// Elements hashed at a time. The index arithmetic holds several int64 temporaries per element, so
// one whole [vocab, hidden] table (DeepSeek-V3: 926M elements, 7 GB per temporary) at once ran a
// GPU that already held a model's weights out of memory. Values do not depend on the blocks.
constexpr int64_t kHashBlockElements = int64_t(1) << 24;

// Uniform values in (-1, 1) * sqrt(3) (unit variance) for the elements of `shape` (or of one
// slice of it), as float32 on `device`.
torch::Tensor hashed_uniform(const std::string& name, uint64_t seed, const std::vector<int64_t>& shape,
                             torch::Device device, std::optional<Slice> slice = std::nullopt,
                             int64_t block_elements = kHashBlockElements);

// A model tensor initialized by its InitKind (see model_tensors.h), in `dtype` on `device`.
torch::Tensor random_tensor(const TensorSpec& spec, const ModelConfig& config, uint64_t seed,
                            torch::ScalarType dtype, torch::Device device,
                            std::optional<Slice> slice = std::nullopt, int64_t block_elements = kHashBlockElements);

}  // namespace lb
