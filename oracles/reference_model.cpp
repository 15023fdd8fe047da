#include "oracles/reference_model.h"

#include "harness/runtime/device.h"
#include "harness/runtime/errors.h"
#include "kernels/rmsnorm.h"
#include "oracles/deepseek_v3_layer.h"
#include "oracles/qwen3_moe_layer.h"

#include <chrono>

namespace lb {

namespace {

double elapsed_ms(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

ReferenceModel::ReferenceModel(ModelConfig config, const WeightSource& source, ReferenceOptions options)
    : config_(std::move(config)), options_(options), rope_(make_rope(config_)) {
  torch::NoGradGuard no_grad;
  auto load = [&](const std::string& name) {
    return source.load(tensor_spec(config_, name), options_.dtype, options_.device);
  };
  embed_ = load("model.embed_tokens.weight");
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    layers_.push_back(load_layer(config_, source, i, options_.dtype, options_.device));
    layers_.back().fused_kernels = options_.fused_kernels;
  }
  final_norm_ = load("model.norm.weight");
  lm_head_ = config_.tie_word_embeddings ? embed_ : load("lm_head.weight");
}

int64_t ReferenceModel::weight_bytes() const {
  int64_t total = 0;
  for (const torch::Tensor* t : {&embed_, &final_norm_, &lm_head_}) total += t->numel() * t->element_size();
  if (config_.tie_word_embeddings) total -= lm_head_.numel() * lm_head_.element_size();
  for (const LayerWeights& w : layers_) total += w.bytes();
  return total;
}

torch::Tensor ReferenceModel::layer_forward(int64_t layer, const torch::Tensor& x, const TokenPlacement& tokens,
                                            Routing* chosen, LayerCapture* capture, LayerKvCache* kv) const {
  const LayerWeights& w = layers_.at(layer);
  return config_.family == ModelFamily::Qwen3Moe ? qwen3_layer(config_, w, rope_, x, tokens, chosen, capture, kv)
                                                 : deepseek_layer(config_, w, rope_, x, tokens, chosen, capture, kv);
}

torch::Tensor ReferenceModel::step(const torch::Tensor& input_ids, const TokenPlacement& tokens, KvCache& cache,
                                   const torch::Tensor& last) const {
  torch::NoGradGuard no_grad;
  cache.resize(config_.num_layers);
  torch::Tensor x = embed_.index_select(0, input_ids.to(options_.device));
  for (int64_t i = 0; i < config_.num_layers; ++i) x = layer_forward(i, x, tokens, nullptr, nullptr, &cache[i]);
  x = x.index_select(0, last.to(options_.device));
  return torch::linear(rmsnorm(x, final_norm_, config_.rms_eps), lm_head_).to(torch::kFloat32);
}

ReferenceRun ReferenceModel::forward(const torch::Tensor& input_ids, const std::vector<int64_t>& seq_lens,
                                   bool capture, const std::function<void(int64_t layer)>& on_layer) const {
  torch::NoGradGuard no_grad;
  int64_t total = 0;
  for (int64_t len : seq_lens) total += len;
  if (input_ids.dim() != 1 || input_ids.size(0) != total)
    throw InputError("input ids: " + std::to_string(input_ids.numel()) + " tokens but sequence lengths sum to " +
                     std::to_string(total));
  const torch::Device device = options_.device;
  ReferenceRun run;
  synchronize(device);
  const auto start = std::chrono::steady_clock::now();
  TokenPlacement tokens = packed_placement(seq_lens, device);
  torch::Tensor x = embed_.index_select(0, input_ids.to(device));
  run.embeddings = x;
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    const auto layer_start = std::chrono::steady_clock::now();
    Routing chosen;
    if (capture) run.captures.emplace_back();
    x = layer_forward(i, x, tokens, &chosen, capture ? &run.captures.back() : nullptr);
    synchronize(device);
    run.layer_ms.push_back(elapsed_ms(layer_start));
    run.layer_outputs.push_back(x);
    run.chosen_experts.push_back(chosen.experts);
    run.router_logits.push_back(chosen.logits);
    if (on_layer) on_layer(i);
  }
  run.final_norm = rmsnorm(x, final_norm_, config_.rms_eps);
  run.logits = torch::linear(run.final_norm, lm_head_);
  synchronize(device);
  run.forward_ms = elapsed_ms(start);
  return run;
}

}  // namespace lb
