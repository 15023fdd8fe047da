#include "harness/runtime/errors.h"
#include "harness/model/model_config.h"
#include "harness/model/model_tensors.h"

#include <gtest/gtest.h>

namespace lb {
namespace {

nlohmann::json qwen_hub_config() {
  return nlohmann::json::parse(R"({
    "model_type": "qwen3_moe", "vocab_size": 151936, "hidden_size": 2048, "num_hidden_layers": 48,
    "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "rope_scaling": null, "num_experts": 128, "num_experts_per_tok": 8,
    "moe_intermediate_size": 768, "intermediate_size": 6144, "norm_topk_prob": true,
    "decoder_sparse_step": 1, "mlp_only_layers": [], "max_position_embeddings": 40960,
    "tie_word_embeddings": false, "hidden_act": "silu"})");
}

TEST(ModelConfig, HubAndTransformers5KeysAgree) {
  nlohmann::json hub = qwen_hub_config();
  nlohmann::json v5 = hub;
  v5.erase("num_experts");
  v5.erase("rope_theta");
  v5.erase("rope_scaling");
  v5["num_local_experts"] = 128;
  v5["rope_parameters"] = {{"rope_theta", 1000000.0}, {"rope_type", "default"}};
  ModelConfig a = parse_model_config(hub, "hub.json"), b = parse_model_config(v5, "v5.json");
  EXPECT_EQ(a.to_json(), b.to_json());
  ModelConfig preset = *find_preset("qwen3-30b-a3b");
  a.name = preset.name;
  EXPECT_EQ(a.to_json(), preset.to_json());
}

TEST(ModelConfig, DeepseekYarnFromEitherSpelling) {
  nlohmann::json base = nlohmann::json::parse(R"({
    "model_type": "deepseek_v3", "vocab_size": 129280, "hidden_size": 7168, "num_hidden_layers": 61,
    "num_attention_heads": 128, "num_key_value_heads": 128, "q_lora_rank": 1536, "kv_lora_rank": 512,
    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 256,
    "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4,
    "routed_scaling_factor": 2.5, "moe_intermediate_size": 2048, "intermediate_size": 18432,
    "first_k_dense_replace": 3, "norm_topk_prob": true, "max_position_embeddings": 163840,
    "rope_theta": 10000, "scoring_func": "sigmoid",
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}})");
  ModelConfig hub = parse_model_config(base, "config.json");
  nlohmann::json v5 = base;
  v5.erase("rope_scaling");
  v5.erase("rope_theta");
  v5.erase("n_routed_experts");
  v5["num_local_experts"] = 256;
  v5["rope_parameters"] = base["rope_scaling"];
  v5["rope_parameters"].erase("type");
  v5["rope_parameters"]["rope_type"] = "yarn";
  v5["rope_parameters"]["rope_theta"] = 10000;
  ModelConfig b = parse_model_config(v5, "config.json");
  for (const ModelConfig* c : {&hub, &b}) {
    EXPECT_EQ(c->rope.type, "yarn");
    EXPECT_DOUBLE_EQ(c->rope.factor, 40);
    EXPECT_EQ(c->rope.original_max_position, 4096);
    EXPECT_EQ(c->num_experts, 256);
    EXPECT_EQ(c->fp8_block_rows, 128);
    EXPECT_TRUE(c->rope_interleave);
  }
  nlohmann::json preset = find_preset("deepseek-v3")->to_json();
  preset["name"] = "";
  EXPECT_EQ(hub.to_json(), preset);
  EXPECT_FALSE(hub.is_moe_layer(2));
  EXPECT_TRUE(hub.is_moe_layer(3));
}

void expect_error(const nlohmann::json& j, const std::string& needle) {
  try {
    parse_model_config(j, "some/config.json");
    ADD_FAILURE() << "no error for " << needle;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("some/config.json"), std::string::npos) << e.what();
  }
}

TEST(ModelConfig, BadConfigsNameTheKey) {
  nlohmann::json j = qwen_hub_config();
  j.erase("hidden_size");
  expect_error(j, "'hidden_size'");
  j = qwen_hub_config();
  j.erase("num_experts");
  expect_error(j, "'num_experts'");
  j = qwen_hub_config();
  j["model_type"] = "llama";
  expect_error(j, "model_type 'llama'");
  j = qwen_hub_config();
  j["num_key_value_heads"] = 5;
  expect_error(j, "num_key_value_heads");
  j = qwen_hub_config();
  j["num_experts_per_tok"] = 129;
  expect_error(j, "num_experts_per_tok");
  j = qwen_hub_config();
  j["hidden_size"] = "2048";
  expect_error(j, "'hidden_size' must be an integer");
  j = qwen_hub_config();
  j["rope_scaling"] = {{"rope_type", "longrope"}};
  expect_error(j, "longrope");
}

TEST(ModelConfig, UnknownPresetListsPresets) {
  try {
    load_model_config("qwen4-mystery");
    FAIL() << "no error";
  } catch (const InputError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("qwen4-mystery"), std::string::npos);
    EXPECT_NE(what.find("tiny-qwen3-moe"), std::string::npos);
  }
}

TEST(ModelConfig, RealShapesHaveTheRightParameterCounts) {
  auto count = [](const ModelConfig& c) {
    double n = 0;
    for (const auto& t : model_tensors(c)) {
      double e = 1;
      for (int64_t s : t.shape) e *= double(s);
      n += e;
    }
    return n;
  };
  // Exact, summed here by hand from the published configs. Qwen3-30B-A3B (48 layers, untied head):
  // attention 2048 x (4096 + 512 + 512) + 4096 x 2048, q/k norms 2 x 128, two layer norms 2 x 2048;
  // router 128 x 2048 and 128 experts of 3 x 768 x 2048; embeddings and head 2 x 151936 x 2048, final
  // norm 2048.
  const double qwen_layer = 2048.0 * 5120 + 4096.0 * 2048 + 2 * 128 + 2 * 2048 + 128.0 * 2048 + 128.0 * 3 * 768 * 2048;
  EXPECT_EQ(count(*find_preset("qwen3-30b-a3b")), 48 * qwen_layer + 2 * 151936.0 * 2048 + 2048);
  EXPECT_EQ(count(*find_preset("qwen3-30b-a3b")), 30532122624.0);  // transformers' count of the checkpoint
  // DeepSeek-V3 without its multi-token-prediction layer (61 layers, 3 dense): MLA q_a 1536 x 7168,
  // q_a norm 1536, q_b 128 x 192 x 1536, kv_a (512 + 64) x 7168, kv_a norm 512, kv_b 128 x 256 x 512,
  // o 7168 x 128 x 128, two layer norms; dense MLP 3 x 7168 x 18432; MoE: router 256 x 7168 and its
  // correction bias 256, 256 routed and one shared expert of 3 x 7168 x 2048; embeddings and head
  // 2 x 129280 x 7168, final norm 7168.
  const double mla = 1536.0 * 7168 + 1536 + 128.0 * 192 * 1536 + 576.0 * 7168 + 512 + 128.0 * 256 * 512 +
                     7168.0 * 128 * 128 + 2 * 7168;
  const double dense = mla + 3.0 * 7168 * 18432;
  const double moe = mla + 256.0 * 7168 + 256 + 257.0 * 3 * 7168 * 2048;
  EXPECT_EQ(count(*find_preset("deepseek-v3")), 3 * dense + 58 * moe + 2 * 129280.0 * 7168 + 7168);
  EXPECT_EQ(count(*find_preset("deepseek-v3")), 671026419200.0);  // 671B, MTP layer aside
  for (const auto& name : preset_names()) EXPECT_NO_THROW(find_preset(name)->validate()) << name;
}

}  // namespace
}  // namespace lb
