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
  // On the fused path, Qwen3's q, k and v projections end to end (the named ones are views of it):
  // one matrix product instead of three, which at decode's few rows is three launches that each
  // read their weights below the copy bandwidth.
  torch::Tensor qkv;

  const torch::Tensor& operator[](const std::string& suffix) const;
  bool has(const std::string& suffix) const { return tensors.count(suffix) > 0; }
  int64_t bytes() const;
};

// Puts q_proj, k_proj and v_proj in one tensor (LayerWeights::qkv) when the layer has all three
// with the same input size, dtype and device; the named tensors become its row blocks.
void fuse_qkv(LayerWeights& w);

// Loads a whole layer (no sharding) in `dtype` on `device`; routed experts are stacked.
LayerWeights load_layer(const ModelConfig& config, const WeightSource& source, int64_t layer,
                        torch::ScalarType dtype, torch::Device device);

}  // namespace lb
