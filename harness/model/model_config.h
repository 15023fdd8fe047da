#pragma once
// What a model is: its family and shapes, parsed from a HF config.json or taken from a preset.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lb {

enum class ModelFamily { Qwen3Moe, DeepseekV3 };
const char* to_string(ModelFamily family);

// RoPE as transformers computes it: "default" (theta^(-2i/d)) or "yarn" (DeepSeek-V3).
struct RopeConfig {
  std::string type = "default";
  double theta = 10000.0;
  double factor = 1.0;
  int64_t original_max_position = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 0.0;          // 0 means absent
  double mscale_all_dim = 0.0;  // 0 means absent
  std::optional<double> attention_factor;
  bool truncate = true;
};

struct ModelConfig {
  ModelFamily family = ModelFamily::Qwen3Moe;
  std::string name;  // preset name or checkpoint directory
  // A preset's default tokenizer.json, relative to ../shared (datasets/shared_files.h). Empty for a
  // checkpoint, which carries its own, and for the tiny presets, whose vocabularies are a few
  // hundred ids.
  std::string shared_tokenizer;
  int64_t vocab = 0;
  int64_t hidden = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // Qwen: per-head q/k/v size (q_proj out = heads * head_dim, may differ from hidden)
  double rms_eps = 1e-6;
  int64_t max_position = 0;
  bool tie_word_embeddings = false;
  RopeConfig rope;

  // Routed experts (both families).
  int64_t num_experts = 0;
  int64_t experts_per_token = 0;
  int64_t moe_intermediate = 0;
  bool norm_topk_prob = true;
  int64_t intermediate = 0;  // dense MLP layers

  // Qwen3-MoE: which layers are dense.
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;

  // DeepSeek-V3: MLA and the grouped sigmoid router.
  int64_t q_lora_rank = 0;  // 0: plain q_proj (no low-rank query)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t n_shared_experts = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  int64_t first_k_dense_replace = 0;
  double routed_scaling_factor = 1.0;
  bool rope_interleave = false;

  // FP8 block-scaled checkpoints: block size [rows, cols] of weight_scale_inv, 0 when not quantized.
  int64_t fp8_block_rows = 0;
  int64_t fp8_block_cols = 0;

  bool is_moe_layer(int64_t layer) const;
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Softmax scale of attention, including DeepSeek's YaRN mscale^2.
  double attention_scale() const;
  // Throws InputError naming the first inconsistent field.
  void validate() const;
  nlohmann::json to_json() const;
};

// Parse a HF config.json object; `source` names the file in errors. Accepts the hub keys
// (num_experts, rope_theta, rope_scaling) and the transformers 5 keys (num_local_experts,
// n_routed_experts, rope_parameters).
ModelConfig parse_model_config(const nlohmann::json& config, const std::string& source);

// Presets at real shapes ("qwen3-30b-a3b", "deepseek-v3") and tiny ones for tests.
std::vector<std::string> preset_names();
std::optional<ModelConfig> find_preset(const std::string& name);

// `model` is a checkpoint directory (holding config.json) or a preset name.
ModelConfig load_model_config(const std::string& model);

// `--layers N`: keeps the first N decoder layers (0 keeps all); InputError when N is out of range.
void keep_first_layers(ModelConfig& config, int64_t layers);

}  // namespace lb
