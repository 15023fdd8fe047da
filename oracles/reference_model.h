#pragma once
// The single-device reference: embeddings, every decoder layer, final norm and lm_head, on a
// packed batch of sequences without padding. Every layout is judged against its outputs.
#include "harness/model/weights.h"
#include "kernels/attention.h"
#include "kernels/moe.h"
#include "kernels/rope.h"
#include "oracles/cached_attention.h"
#include "oracles/kv_cache.h"
#include "oracles/layer_weights.h"
#include "oracles/op_capture.h"

#include <torch/torch.h>

#include <functional>
#include <vector>

namespace lb {

struct ReferenceOptions {
  torch::ScalarType dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
  bool fused_kernels = false;  // `--kernels fused`: SDPA attention and fused_moe_experts
};

struct ReferenceRun {
  torch::Tensor embeddings;                  // [T, H]
  std::vector<torch::Tensor> layer_outputs;  // [T, H] after each decoder layer
  std::vector<torch::Tensor> chosen_experts; // int64 [T, k] per layer; undefined on dense layers
  std::vector<torch::Tensor> router_logits;  // [T, E] per layer; undefined on dense layers
  torch::Tensor final_norm;                  // [T, H]
  torch::Tensor logits;                      // [T, V]
  std::vector<LayerCapture> captures;        // per decoder layer, with forward(..., capture = true)
  std::vector<double> layer_ms;              // per decoder layer, device-synchronized
  double forward_ms = 0;                     // embeddings to logits
};

class ReferenceModel {
 public:
  // Loads all weights of config.num_layers layers now (set num_layers to run a prefix of the model).
  ReferenceModel(ModelConfig config, const WeightSource& source, ReferenceOptions options);

  // `on_layer`, when given, is called after each decoder layer (progress displays).
  ReferenceRun forward(const torch::Tensor& input_ids, const std::vector<int64_t>& seq_lens, bool capture = false,
                       const std::function<void(int64_t layer)>& on_layer = {}) const;
  torch::Tensor layer_forward(int64_t layer, const torch::Tensor& x, const TokenPlacement& tokens,
                              Routing* chosen = nullptr, LayerCapture* capture = nullptr,
                              const CacheStep* cache = nullptr) const;

  // Generation (oracles/kv_cache.h), slot s holding sequence s: an empty cache for `slots`
  // sequences of up to `capacity` tokens each.
  KvCache make_cache(int64_t slots, int64_t capacity) const;
  // Whole prompts (`seq_lens`, end to end in `input_ids`) into slots 0..S-1 of an empty `cache`;
  // returns the float32 logits [S, V] of each prompt's last token, on the device.
  torch::Tensor prefill(const torch::Tensor& input_ids, const std::vector<int64_t>& seq_lens, KvCache& cache) const;
  // One token per slot (int64 [slots] on the device) after the tokens its slot holds; returns the
  // float32 logits [slots, V] on the device, with no host synchronization. `layer_outputs`, when
  // given, receives each layer's output [slots, H], and `routing` each layer's choice (empty on a
  // dense layer).
  torch::Tensor decode(const torch::Tensor& input_ids, KvCache& cache, std::vector<torch::Tensor>* layer_outputs = nullptr,
                       std::vector<Routing>* routing = nullptr) const;

  const ModelConfig& config() const { return config_; }
  const ReferenceOptions& options() const { return options_; }
  int64_t weight_bytes() const;

 private:
  ModelConfig config_;
  ReferenceOptions options_;
  Rope rope_;
  torch::Tensor embed_, final_norm_, lm_head_;
  std::vector<LayerWeights> layers_;

  torch::Tensor head(const torch::Tensor& hidden) const;  // final norm and lm_head, float32
};

}  // namespace lb
