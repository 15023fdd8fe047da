#include "oracles/deepseek_v4_presets.h"

#include "harness/runtime/errors.h"

namespace lb {

namespace {

nlohmann::json v4_flash() {
  // deepseek-ai/DeepSeek-V4-Flash config.json: compress_ratios [0, 0, 4, 128, 4, 128, ..., 4]
  // (the 44th entry is the MTP block), num_hash_layers 3, rope_scaling yarn (factor 16, original
  // 65536) on the compressed layers only, with unit magnitude (no mscale).
  nlohmann::json layer_types = nlohmann::json::array(), mlp_layer_types = nlohmann::json::array();
  for (int l = 0; l < 43; ++l) {
    layer_types.push_back(l < 2        ? "sliding_attention"
                          : l % 2 == 0 ? "compressed_sparse_attention"
                                       : "heavily_compressed_attention");
    mlp_layer_types.push_back(l < 3 ? "hash_moe" : "moe");
  }
  return {{"model_type", "deepseek_v4"},
          {"vocab_size", 129280},
          {"hidden_size", 4096},
          {"num_hidden_layers", 43},
          {"num_attention_heads", 64},
          {"head_dim", 512},
          {"qk_rope_head_dim", 64},
          {"q_lora_rank", 1024},
          {"sliding_window", 128},
          {"o_groups", 8},
          {"o_lora_rank", 1024},
          {"index_n_heads", 64},
          {"index_head_dim", 128},
          {"index_topk", 512},
          {"hc_mult", 4},
          {"hc_sinkhorn_iters", 20},
          {"n_routed_experts", 256},
          {"n_shared_experts", 1},
          {"num_experts_per_tok", 6},
          {"moe_intermediate_size", 2048},
          {"rms_norm_eps", 1e-6},
          {"hc_eps", 1e-6},
          {"routed_scaling_factor", 1.5},
          {"swiglu_limit", 10.0},
          {"scoring_func", "sqrtsoftplus"},
          {"compress_rates", {{"compressed_sparse_attention", 4}, {"heavily_compressed_attention", 128}}},
          {"layer_types", layer_types},
          {"mlp_layer_types", mlp_layer_types},
          {"rope_parameters",
           {{"main", {{"rope_type", "default"}, {"rope_theta", 10000.0}}},
            {"compress",
             {{"rope_type", "yarn"},
              {"rope_theta", 160000.0},
              {"factor", 16.0},
              {"original_max_position_embeddings", 65536},
              {"beta_fast", 32.0},
              {"beta_slow", 1.0},
              {"attention_factor", 1.0}}}}}};
}

nlohmann::json tiny_v4() {
  return {{"model_type", "deepseek_v4"},
          {"vocab_size", 256},
          {"hidden_size", 64},
          {"num_hidden_layers", 5},
          {"num_attention_heads", 4},
          {"head_dim", 32},
          {"qk_rope_head_dim", 8},
          {"q_lora_rank", 32},
          {"sliding_window", 8},
          {"o_groups", 4},
          {"o_lora_rank", 16},
          {"index_n_heads", 8},
          {"index_head_dim", 16},
          {"index_topk", 3},
          {"hc_mult", 4},
          {"hc_sinkhorn_iters", 20},
          {"n_routed_experts", 8},
          {"n_shared_experts", 1},
          {"num_experts_per_tok", 2},
          {"moe_intermediate_size", 32},
          {"rms_norm_eps", 1e-6},
          {"hc_eps", 1e-6},
          {"routed_scaling_factor", 1.5},
          {"swiglu_limit", 10.0},
          {"scoring_func", "sqrtsoftplus"},
          {"compress_rates", {{"compressed_sparse_attention", 4}, {"heavily_compressed_attention", 8}}},
          {"layer_types",
           {"sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention",
            "compressed_sparse_attention", "heavily_compressed_attention"}},
          {"mlp_layer_types", {"hash_moe", "hash_moe", "moe", "moe", "moe"}},
          {"rope_parameters",
           {{"main", {{"rope_type", "default"}, {"rope_theta", 10000.0}}},
            {"compress",
             {{"rope_type", "yarn"},
              {"rope_theta", 160000.0},
              {"factor", 4.0},
              {"original_max_position_embeddings", 64},
              {"beta_fast", 32.0},
              {"beta_slow", 1.0},
              {"attention_factor", 1.0}}}}}};
}

}  // namespace

std::vector<std::string> deepseek_v4_preset_names() { return {"deepseek-v4-flash", "tiny-deepseek-v4"}; }

std::optional<DeepseekV4Config> find_deepseek_v4_preset(const std::string& name) {
  if (name == "deepseek-v4-flash") return deepseek_v4_config_from_json(v4_flash(), "preset " + name);
  if (name == "tiny-deepseek-v4") return deepseek_v4_config_from_json(tiny_v4(), "preset " + name);
  return std::nullopt;
}

void keep_first_v4_layers(DeepseekV4Config& c, int64_t layers) {
  if (layers == 0) return;
  if (layers < 0 || layers > c.num_layers)
    throw InputError("--layers " + std::to_string(layers) + ": the model has " + std::to_string(c.num_layers) +
                     " decoder layers");
  c.num_layers = layers;
  c.attention.resize(size_t(layers));
  c.hash_routed.resize(size_t(layers));
}

}  // namespace lb
