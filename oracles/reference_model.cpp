#include "oracles/reference_model.h"

#include "harness/runtime/device.h"
#include "harness/runtime/errors.h"
#include "kernels/rmsnorm.h"
#include "kernels/small_linear.h"
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
  rope_.inv_freq = rope_.inv_freq.to(options_.device);  // not copied up at every call
  auto load = [&](const std::string& name) {
    return source.load(tensor_spec(config_, name), options_.dtype, options_.device);
  };
  embed_ = load("model.embed_tokens.weight");
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    layers_.push_back(load_layer(config_, source, i, options_.dtype, options_.device));
    layers_.back().fused_kernels = options_.fused_kernels;
    if (options_.fused_kernels) fuse_qkv(layers_.back());
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
                                            Routing* chosen, LayerCapture* capture, const CacheStep* cache) const {
  const LayerWeights& w = layers_.at(layer);
  if (config_.family == ModelFamily::Qwen3Moe) return qwen3_layer(config_, w, rope_, x, tokens, chosen, capture, cache);
  // The plain path decodes MLA in its expanded form: the oracle for the absorbed one the layouts run.
  return deepseek_layer(config_, w, rope_, x, tokens, chosen, capture, cache, /*absorbed=*/options_.fused_kernels);
}

torch::Tensor ReferenceModel::head(const torch::Tensor& hidden) const {
  return linear_to_f32(rmsnorm(hidden, final_norm_, config_.rms_eps), lm_head_, options_.fused_kernels);
}

KvCache ReferenceModel::make_cache(int64_t slots, int64_t capacity) const {
  return KvCache(config_.num_layers, slots, capacity, cache_part_shapes(config_, layers_.at(0)),
                 torch::TensorOptions().dtype(options_.dtype).device(options_.device));
}

torch::Tensor ReferenceModel::prefill(const torch::Tensor& input_ids, const std::vector<int64_t>& seq_lens,
                                      KvCache& cache) const {
  torch::NoGradGuard no_grad;
  const torch::Device device = options_.device;
  TORCH_CHECK(int64_t(seq_lens.size()) <= cache.slots(), "prefill: ", seq_lens.size(), " prompts for ", cache.slots(),
              " cache slots");
  const TokenPlacement tokens = packed_placement(seq_lens, device);
  const CacheStep step{&cache, cache.row_of(tokens.seq, tokens.pos), {}, {}};
  torch::Tensor x = embed_.index_select(0, input_ids.to(device));
  for (int64_t i = 0; i < config_.num_layers; ++i) x = layer_forward(i, x, tokens, nullptr, nullptr, &step);
  std::vector<int64_t> last;
  int64_t end = 0;
  for (int64_t len : seq_lens) last.push_back((end += len) - 1);
  cache.lengths().zero_().narrow(0, 0, int64_t(seq_lens.size())).copy_(torch::tensor(seq_lens, torch::kInt64));
  return head(x.index_select(0, torch::tensor(last, torch::kInt64).to(device)));
}

torch::Tensor ReferenceModel::decode(const torch::Tensor& input_ids, KvCache& cache,
                                     std::vector<torch::Tensor>* layer_outputs, std::vector<Routing>* routing) const {
  torch::NoGradGuard no_grad;
  const torch::Tensor slot = torch::arange(cache.slots(), cache.lengths().options());
  // Every slot takes one token at its next position: positions come from the device, never the host.
  const TokenPlacement tokens{slot, cache.lengths().clone()};
  const CacheStep step{&cache, cache.row_of(slot, tokens.pos), slot, tokens.pos + 1};
  torch::Tensor x = embed_.index_select(0, input_ids);
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    Routing chosen;
    x = layer_forward(i, x, tokens, routing ? &chosen : nullptr, nullptr, &step);
    if (layer_outputs) layer_outputs->push_back(x);
    if (routing) routing->push_back(std::move(chosen));
  }
  cache.lengths().add_(1);
  return head(x);
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
