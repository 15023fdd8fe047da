#pragma once
// Where a model's weights come from: a HF checkpoint directory (FP8 block-scaled weights are
// dequantized on load) or deterministic random weights. Callers ask by TensorSpec, for the
// whole tensor or one slice (a rank's shard), in the dtype and on the device they compute in.
#include "harness/model/model_tensors.h"
#include "harness/model/safetensors.h"

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>

namespace lb {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual torch::Tensor load(const TensorSpec& spec, torch::ScalarType dtype, torch::Device device,
                             std::optional<Slice> slice = std::nullopt) const = 0;
  // "random(seed=S)" or the checkpoint directory, for reports.
  virtual std::string describe() const = 0;
  // What the weights are, wherever they lie: equal for one checkpoint at two paths, different for
  // two checkpoints (see Checkpoint::fingerprint); random weights are their seed.
  virtual std::string fingerprint() const { return describe(); }
};

// Random weights when `checkpoint_dir` is empty, else the checkpoint, opened and checked now (every
// tensor present with the config's shape), so bad files are reported before any compute.
std::unique_ptr<WeightSource> open_weights(const ModelConfig& config, const std::string& checkpoint_dir,
                                           uint64_t seed);

}  // namespace lb
