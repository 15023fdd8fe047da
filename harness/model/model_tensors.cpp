#include "harness/model/model_tensors.h"

namespace lb {

std::string layer_prefix(int64_t layer) { return "model.layers." + std::to_string(layer) + "."; }

namespace {

void add_swiglu(std::vector<TensorSpec>& out, const std::string& prefix, int64_t hidden, int64_t inter) {
  out.push_back({prefix + "gate_proj.weight", {inter, hidden}, InitKind::Linear, true});
  out.push_back({prefix + "up_proj.weight", {inter, hidden}, InitKind::Linear, true});
  out.push_back({prefix + "down_proj.weight", {hidden, inter}, InitKind::OutputLinear, true});
}

void add_attention(std::vector<TensorSpec>& out, const ModelConfig& c, const std::string& p) {
  const int64_t H = c.hidden;
  if (c.family == ModelFamily::Qwen3Moe) {
    out.push_back({p + "q_proj.weight", {c.num_heads * c.head_dim, H}});
    out.push_back({p + "k_proj.weight", {c.num_kv_heads * c.head_dim, H}});
    out.push_back({p + "v_proj.weight", {c.num_kv_heads * c.head_dim, H}});
    out.push_back({p + "o_proj.weight", {H, c.num_heads * c.head_dim}, InitKind::OutputLinear});
    out.push_back({p + "q_norm.weight", {c.head_dim}, InitKind::Norm});
    out.push_back({p + "k_norm.weight", {c.head_dim}, InitKind::Norm});
    return;
  }
  const int64_t q_out = c.num_heads * c.qk_head_dim();
  if (c.q_lora_rank > 0) {
    out.push_back({p + "q_a_proj.weight", {c.q_lora_rank, H}, InitKind::Linear, true});
    out.push_back({p + "q_a_layernorm.weight", {c.q_lora_rank}, InitKind::Norm});
    out.push_back({p + "q_b_proj.weight", {q_out, c.q_lora_rank}, InitKind::Linear, true});
  } else {
    out.push_back({p + "q_proj.weight", {q_out, H}, InitKind::Linear, true});
  }
  out.push_back({p + "kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, H}, InitKind::Linear, true});
  out.push_back({p + "kv_a_layernorm.weight", {c.kv_lora_rank}, InitKind::Norm});
  out.push_back({p + "kv_b_proj.weight", {c.num_heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank},
                 InitKind::Linear, true});
  out.push_back({p + "o_proj.weight", {H, c.num_heads * c.v_head_dim}, InitKind::OutputLinear, true});
}

}  // namespace

std::vector<TensorSpec> layer_tensors(const ModelConfig& c, int64_t layer) {
  std::vector<TensorSpec> out;
  const std::string p = layer_prefix(layer);
  const int64_t H = c.hidden;
  out.push_back({p + "input_layernorm.weight", {H}, InitKind::Norm});
  add_attention(out, c, p + "self_attn.");
  out.push_back({p + "post_attention_layernorm.weight", {H}, InitKind::Norm});
  if (!c.is_moe_layer(layer)) {
    add_swiglu(out, p + "mlp.", H, c.intermediate);
    return out;
  }
  out.push_back({p + "mlp.gate.weight", {c.num_experts, H}});
  if (c.family == ModelFamily::DeepseekV3)
    out.push_back({p + "mlp.gate.e_score_correction_bias", {c.num_experts}, InitKind::Bias});
  for (int64_t e = 0; e < c.num_experts; ++e)
    add_swiglu(out, p + "mlp.experts." + std::to_string(e) + ".", H, c.moe_intermediate);
  if (c.n_shared_experts > 0) add_swiglu(out, p + "mlp.shared_experts.", H, c.moe_intermediate * c.n_shared_experts);
  return out;
}

std::vector<TensorSpec> model_tensors(const ModelConfig& c) {
  std::vector<TensorSpec> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab, c.hidden}, InitKind::Embedding});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    auto layer = layer_tensors(c, i);
    out.insert(out.end(), layer.begin(), layer.end());
  }
  out.push_back({"model.norm.weight", {c.hidden}, InitKind::Norm});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab, c.hidden}});
  return out;
}

TensorSpec tensor_spec(const ModelConfig& config, const std::string& name) {
  for (const TensorSpec& spec : model_tensors(config))
    if (spec.name == name) return spec;
  throw std::logic_error("no tensor spec named " + name);
}

}  // namespace lb
