#pragma once
// The tensors of one decoder layer, by the name after "model.layers.{i}." (for example
// "self_attn.q_proj.weight"), plus the routed experts stacked for the MoE ops.
#include "harness/model/weights.h"
#include "kernels/moe.h"

#include <torch/torch.h>

#include <map>
#include <string>

namespace lb {

struct LayerWeights {
  int64_t layer = 0;
  std::map<std::string, torch::Tensor> tensors;
  ExpertWeights experts;  // empty for dense layers
  bool fused_kernels = false;  // `--kernels fused`: SDPA attention and fused_moe_experts

  const torch::Tensor& operator[](const std::string& suffix) const;
  bool has(const std::string& suffix) const { return tensors.count(suffix) > 0; }
  int64_t bytes() const;
};

// Loads a whole layer (no sharding) in `dtype` on `device`; routed experts are stacked.
LayerWeights load_layer(const ModelConfig& config, const WeightSource& source, int64_t layer,
                        torch::ScalarType dtype, torch::Device device);

}  // namespace lb
