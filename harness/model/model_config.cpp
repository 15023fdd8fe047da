#include "harness/model/model_config.h"

#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace lb {

const char* to_string(ModelFamily family) {
  switch (family) {
    case ModelFamily::Qwen3Moe: return "qwen3_moe";
    case ModelFamily::DeepseekV3: return "deepseek_v3";
  }
  return "?";
}

bool ModelConfig::is_moe_layer(int64_t layer) const {
  if (num_experts == 0) return false;
  if (family == ModelFamily::DeepseekV3) return layer >= first_k_dense_replace;
  for (int64_t dense : mlp_only_layers)
    if (dense == layer) return false;
  return (layer + 1) % decoder_sparse_step == 0;
}

static double yarn_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

double ModelConfig::attention_scale() const {
  if (family == ModelFamily::Qwen3Moe) return 1.0 / std::sqrt(double(head_dim));
  double scale = 1.0 / std::sqrt(double(qk_head_dim()));
  // DeepSeek folds YaRN's mscale into the softmax scale (squared: once for q, once for k).
  if (rope.type != "default" && rope.mscale_all_dim != 0.0) {
    double m = yarn_mscale(rope.factor, rope.mscale_all_dim);
    scale *= m * m;
  }
  return scale;
}

static void require(bool ok, const std::string& field, const std::string& why) {
  if (!ok) throw InputError("model config: " + field + " " + why);
}

void ModelConfig::validate() const {
  require(vocab > 0, "vocab_size", "must be > 0");
  require(hidden > 0, "hidden_size", "must be > 0");
  require(num_layers > 0, "num_hidden_layers", "must be > 0");
  require(num_heads > 0, "num_attention_heads", "must be > 0");
  require(rms_eps > 0, "rms_norm_eps", "must be > 0");
  require(rope.theta > 0, "rope_theta", "must be > 0");
  require(rope.type == "default" || rope.type == "yarn", "rope type",
          "'" + rope.type + "' is not supported (default, yarn)");
  if (rope.type == "yarn") require(rope.original_max_position > 0, "original_max_position_embeddings", "must be > 0 for yarn");
  if (num_experts > 0) {
    require(experts_per_token > 0 && experts_per_token <= num_experts, "num_experts_per_tok",
            "must be in [1, num_experts=" + std::to_string(num_experts) + "]");
    require(moe_intermediate > 0, "moe_intermediate_size", "must be > 0");
  }
  if (family == ModelFamily::Qwen3Moe) {
    require(head_dim > 0 && head_dim % 2 == 0, "head_dim", "must be even and > 0");
    require(num_kv_heads > 0 && num_heads % num_kv_heads == 0, "num_key_value_heads",
            "must divide num_attention_heads=" + std::to_string(num_heads));
    require(decoder_sparse_step > 0, "decoder_sparse_step", "must be > 0");
    bool has_dense = num_experts == 0 || decoder_sparse_step > 1 || !mlp_only_layers.empty();
    if (has_dense) require(intermediate > 0, "intermediate_size", "must be > 0 when a layer is dense");
  } else {
    require(kv_lora_rank > 0, "kv_lora_rank", "must be > 0");
    require(qk_nope_head_dim > 0, "qk_nope_head_dim", "must be > 0");
    require(qk_rope_head_dim > 0 && qk_rope_head_dim % 2 == 0, "qk_rope_head_dim", "must be even and > 0");
    require(v_head_dim > 0, "v_head_dim", "must be > 0");
    require(n_group > 0 && num_experts % n_group == 0, "n_group",
            "must divide n_routed_experts=" + std::to_string(num_experts));
    require(topk_group > 0 && topk_group <= n_group, "topk_group", "must be in [1, n_group]");
    require(num_experts / n_group >= 2, "n_group", "leaves fewer than 2 experts per group (group score is a top-2 sum)");
    require(experts_per_token <= topk_group * (num_experts / n_group), "num_experts_per_tok",
            "exceeds the experts in topk_group groups");
    if (first_k_dense_replace > 0) require(intermediate > 0, "intermediate_size", "must be > 0 for dense layers");
    require(q_lora_rank >= 0, "q_lora_rank", "must be >= 0");
    require(n_shared_experts >= 0, "n_shared_experts", "must be >= 0");
    require(first_k_dense_replace >= 0, "first_k_dense_replace", "must be >= 0");
  }
  require(max_position > 0, "max_position_embeddings", "must be > 0");
  // Sizes past any real model: they overflow the shape arithmetic, or enumerate billions of
  // tensors before anything is loaded (a fuzzed num_experts of 2^50 hung there).
  constexpr int64_t kMaxSize = int64_t(1) << 31;
  for (const auto& [field, value] :
       {std::pair<const char*, int64_t>{"vocab_size", vocab}, {"hidden_size", hidden}, {"num_hidden_layers", num_layers},
        {"num_attention_heads", num_heads}, {"head_dim", head_dim}, {"num_experts", num_experts},
        {"moe_intermediate_size", moe_intermediate}, {"intermediate_size", intermediate},
        {"max_position_embeddings", max_position}, {"q_lora_rank", q_lora_rank}, {"kv_lora_rank", kv_lora_rank},
        {"qk_nope_head_dim", qk_nope_head_dim}, {"qk_rope_head_dim", qk_rope_head_dim}, {"v_head_dim", v_head_dim},
        {"n_shared_experts", n_shared_experts}})
    require(value < kMaxSize, field, "is " + std::to_string(value) + ", past any model (at most 2^31 - 1)");
  constexpr int64_t kMaxExpertLayers = int64_t(1) << 18;  // ten times the largest MoE today
  require(num_layers * std::max<int64_t>(num_experts, 1) <= kMaxExpertLayers, "num_experts",
          "times num_hidden_layers is past any model (at most 2^18 expert weight sets)");
}

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j = {{"family", to_string(family)}, {"name", name}, {"vocab", vocab}, {"hidden", hidden},
                      {"num_layers", num_layers}, {"num_heads", num_heads}, {"num_kv_heads", num_kv_heads},
                      {"head_dim", head_dim}, {"num_experts", num_experts},
                      {"experts_per_token", experts_per_token}, {"moe_intermediate", moe_intermediate},
                      {"intermediate", intermediate}, {"rope_type", rope.type}, {"rope_theta", rope.theta}};
  if (family == ModelFamily::DeepseekV3) {
    j["q_lora_rank"] = q_lora_rank;
    j["kv_lora_rank"] = kv_lora_rank;
    j["qk_nope_head_dim"] = qk_nope_head_dim;
    j["qk_rope_head_dim"] = qk_rope_head_dim;
    j["v_head_dim"] = v_head_dim;
    j["n_shared_experts"] = n_shared_experts;
    j["first_k_dense_replace"] = first_k_dense_replace;
  }
  return j;
}

// ---- config.json parsing ----

namespace {

struct Reader {
  const nlohmann::json& j;
  const std::string& source;

  bool has(const char* key) const { return j.contains(key) && !j.at(key).is_null(); }
  const nlohmann::json& at(const char* key) const {
    if (!has(key)) throw InputError(source + ": missing required key '" + key + "'");
    return j.at(key);
  }
  int64_t integer(const char* key) const {
    const auto& v = at(key);
    if (!v.is_number_integer()) throw InputError(source + ": key '" + key + "' must be an integer");
    return v.get<int64_t>();
  }
  int64_t integer_or(const char* key, int64_t fallback) const { return has(key) ? integer(key) : fallback; }
  double number(const char* key) const {
    const auto& v = at(key);
    if (!v.is_number()) throw InputError(source + ": key '" + key + "' must be a number");
    return v.get<double>();
  }
  double number_or(const char* key, double fallback) const { return has(key) ? number(key) : fallback; }
  std::string text(const char* key) const {
    const auto& v = at(key);
    if (!v.is_string()) throw InputError(source + ": key '" + key + "' must be a string");
    return v.get<std::string>();
  }
  std::vector<int64_t> integers(const char* key) const {
    const auto& v = at(key);
    const bool ok = v.is_array() && std::all_of(v.begin(), v.end(), [](const nlohmann::json& e) {
      return e.is_number_integer();
    });
    if (!ok) throw InputError(source + ": key '" + key + "' must be a list of integers");
    return v.get<std::vector<int64_t>>();
  }
  bool boolean_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j.at(key).is_boolean()) throw InputError(source + ": key '" + key + "' must be true or false");
    return j.at(key).get<bool>();
  }
  // First present key of several spellings (hub vs transformers 5).
  const char* either(std::initializer_list<const char*> keys) const {
    for (const char* k : keys)
      if (has(k)) return k;
    std::string names;
    for (const char* k : keys) names += std::string(names.empty() ? "'" : " or '") + k + "'";
    throw InputError(source + ": missing required key " + names);
  }
};

RopeConfig parse_rope(const Reader& r, int64_t max_position) {
  RopeConfig rope;
  // transformers 5: rope_parameters holds theta and the scaling; the hub: rope_theta + rope_scaling.
  nlohmann::json params = nlohmann::json::object();
  if (r.has("rope_parameters")) params = r.j.at("rope_parameters");
  if (!params.is_object()) throw InputError(r.source + ": 'rope_parameters' must be an object");
  if (r.has("rope_scaling")) {
    if (!r.j.at("rope_scaling").is_object()) throw InputError(r.source + ": 'rope_scaling' must be an object");
    for (auto& [k, v] : r.j.at("rope_scaling").items()) params[k] = v;
  }
  Reader p{params, r.source};
  if (p.has("rope_theta")) rope.theta = p.number("rope_theta");
  else rope.theta = r.number("rope_theta");
  if (p.has("rope_type")) rope.type = p.text("rope_type");
  else if (p.has("type")) rope.type = p.text("type");
  if (rope.type == "yarn") {
    rope.original_max_position = p.integer("original_max_position_embeddings");
    rope.factor = p.has("factor") ? p.number("factor") : double(max_position) / double(rope.original_max_position);
    rope.beta_fast = p.number_or("beta_fast", 32.0);
    rope.beta_slow = p.number_or("beta_slow", 1.0);
    rope.mscale = p.number_or("mscale", 0.0);
    rope.mscale_all_dim = p.number_or("mscale_all_dim", 0.0);
    if (p.has("attention_factor")) rope.attention_factor = p.number("attention_factor");
    rope.truncate = p.boolean_or("truncate", true);
  } else if (rope.type != "default") {
    throw InputError(r.source + ": rope type '" + rope.type + "' is not supported (default, yarn)");
  }
  return rope;
}

}  // namespace

ModelConfig parse_model_config(const nlohmann::json& config, const std::string& source) {
  if (!config.is_object()) throw InputError(source + ": not a JSON object");
  Reader r{config, source};
  ModelConfig c;
  std::string type = r.at("model_type").is_string() ? r.at("model_type").get<std::string>() : "";
  if (type == "qwen3_moe") c.family = ModelFamily::Qwen3Moe;
  else if (type == "deepseek_v3") c.family = ModelFamily::DeepseekV3;
  else throw InputError(source + ": model_type '" + type + "' is not supported (qwen3_moe, deepseek_v3)");

  c.vocab = r.integer("vocab_size");
  c.hidden = r.integer("hidden_size");
  c.num_layers = r.integer("num_hidden_layers");
  c.num_heads = r.integer("num_attention_heads");
  c.num_kv_heads = r.integer_or("num_key_value_heads", c.num_heads);
  c.rms_eps = r.number_or("rms_norm_eps", 1e-6);
  c.max_position = r.integer_or("max_position_embeddings", 4096);
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", false);
  c.rope = parse_rope(r, c.max_position);
  c.num_experts = r.integer(r.either({"num_experts", "num_local_experts", "n_routed_experts"}));
  c.experts_per_token = r.integer("num_experts_per_tok");
  c.moe_intermediate = r.integer("moe_intermediate_size");
  c.intermediate = r.integer_or("intermediate_size", 0);
  if (r.has("hidden_act") && r.text("hidden_act") != "silu")
    throw InputError(source + ": hidden_act '" + r.text("hidden_act") + "' is not supported (silu)");
  if (r.boolean_or("attention_bias", false)) throw InputError(source + ": attention_bias true is not supported");

  if (c.family == ModelFamily::Qwen3Moe) {
    c.head_dim = r.integer_or("head_dim", c.num_heads > 0 ? c.hidden / c.num_heads : 0);  // validate() names 0
    c.norm_topk_prob = r.boolean_or("norm_topk_prob", false);
    c.decoder_sparse_step = r.integer_or("decoder_sparse_step", 1);
    if (r.has("mlp_only_layers")) c.mlp_only_layers = r.integers("mlp_only_layers");
  } else {
    c.q_lora_rank = r.integer_or("q_lora_rank", 0);
    c.kv_lora_rank = r.integer("kv_lora_rank");
    c.qk_nope_head_dim = r.integer("qk_nope_head_dim");
    c.qk_rope_head_dim = r.integer("qk_rope_head_dim");
    c.v_head_dim = r.integer("v_head_dim");
    c.head_dim = c.qk_rope_head_dim;  // rotary size, as transformers defines it for DeepSeek
    c.n_shared_experts = r.integer_or("n_shared_experts", 0);
    c.n_group = r.integer_or("n_group", 1);
    c.topk_group = r.integer_or("topk_group", 1);
    c.first_k_dense_replace = r.integer_or("first_k_dense_replace", 0);
    c.routed_scaling_factor = r.number_or("routed_scaling_factor", 1.0);
    c.norm_topk_prob = r.boolean_or("norm_topk_prob", true);
    c.rope_interleave = r.boolean_or("rope_interleave", true);
    if (r.has("scoring_func") && r.text("scoring_func") != "sigmoid")
      throw InputError(source + ": scoring_func '" + r.text("scoring_func") + "' is not supported (sigmoid)");
  }
  if (r.has("quantization_config")) {
    Reader q{r.at("quantization_config"), source};
    const std::string method = q.text("quant_method");
    if (method != "fp8") throw InputError(source + ": quant_method '" + method + "' is not supported (fp8)");
    const std::vector<int64_t> block = q.integers("weight_block_size");
    if (block.size() != 2 || block[0] <= 0 || block[1] <= 0)
      throw InputError(source + ": weight_block_size must be two positive integers");
    c.fp8_block_rows = block[0];
    c.fp8_block_cols = block[1];
  }
  try {
    c.validate();
  } catch (const InputError& e) {
    throw InputError(source + ": " + e.what());
  }
  return c;
}

// ---- presets ----

namespace {

ModelConfig qwen3_30b_a3b() {
  ModelConfig c;
  c.family = ModelFamily::Qwen3Moe;
  c.name = "qwen3-30b-a3b";
  c.shared_tokenizer = "tokenizers/qwen3/tokenizer.json";
  c.vocab = 151936;
  c.hidden = 2048;
  c.num_layers = 48;
  c.num_heads = 32;
  c.num_kv_heads = 4;
  c.head_dim = 128;
  c.max_position = 40960;
  c.rope.theta = 1e6;
  c.num_experts = 128;
  c.experts_per_token = 8;
  c.moe_intermediate = 768;
  c.intermediate = 6144;
  c.norm_topk_prob = true;
  return c;
}

ModelConfig deepseek_v3() {
  ModelConfig c;
  c.family = ModelFamily::DeepseekV3;
  c.name = "deepseek-v3";
  c.shared_tokenizer = "tokenizers/deepseek-v3/tokenizer.json";
  c.vocab = 129280;
  c.hidden = 7168;
  c.num_layers = 61;
  c.num_heads = 128;
  c.num_kv_heads = 128;
  c.max_position = 163840;
  c.q_lora_rank = 1536;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.head_dim = 64;
  c.v_head_dim = 128;
  c.num_experts = 256;
  c.n_shared_experts = 1;
  c.experts_per_token = 8;
  c.n_group = 8;
  c.topk_group = 4;
  c.routed_scaling_factor = 2.5;
  c.moe_intermediate = 2048;
  c.intermediate = 18432;
  c.first_k_dense_replace = 3;
  c.norm_topk_prob = true;
  c.rope_interleave = true;
  c.rope.type = "yarn";
  c.rope.theta = 10000;
  c.rope.factor = 40;
  c.rope.original_max_position = 4096;
  c.rope.beta_fast = 32;
  c.rope.beta_slow = 1;
  c.rope.mscale = 1.0;
  c.rope.mscale_all_dim = 1.0;
  return c;
}

// Tiny presets keep the real structure (GQA with heads*head_dim != hidden, dense and MoE
// layers, YaRN) at sizes a 2-core CI runs in seconds, and split over 2 or 4 ranks (heads,
// intermediate sizes and experts divide by 4; Qwen's 2 KV heads are replicated at attention TP 4).
ModelConfig tiny_qwen3_moe() {
  ModelConfig c = qwen3_30b_a3b();
  c.name = "tiny-qwen3-moe";
  c.shared_tokenizer.clear();
  c.vocab = 211;
  c.hidden = 48;
  c.num_layers = 4;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 12;
  c.max_position = 4096;
  c.rope.theta = 10000;
  c.num_experts = 8;
  c.experts_per_token = 3;
  c.moe_intermediate = 20;
  c.intermediate = 40;
  return c;
}

ModelConfig tiny_deepseek_v3() {
  ModelConfig c = deepseek_v3();
  c.name = "tiny-deepseek-v3";
  c.shared_tokenizer.clear();
  c.vocab = 199;
  c.hidden = 64;
  c.num_layers = 4;
  c.num_heads = 4;
  c.num_kv_heads = 4;
  c.max_position = 4096;
  c.q_lora_rank = 32;
  c.kv_lora_rank = 24;
  c.qk_nope_head_dim = 16;
  c.qk_rope_head_dim = 8;
  c.head_dim = 8;
  c.v_head_dim = 12;
  c.num_experts = 16;
  c.experts_per_token = 4;
  c.n_group = 4;
  c.topk_group = 2;
  c.moe_intermediate = 16;
  c.intermediate = 48;
  c.first_k_dense_replace = 1;
  c.rope.original_max_position = 64;
  return c;
}

struct Preset {
  const char* name;
  ModelConfig (*make)();
};
const Preset kPresets[] = {{"qwen3-30b-a3b", qwen3_30b_a3b},
                           {"deepseek-v3", deepseek_v3},
                           {"tiny-qwen3-moe", tiny_qwen3_moe},
                           {"tiny-deepseek-v3", tiny_deepseek_v3}};

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& p : kPresets) names.push_back(p.name);
  return names;
}

std::optional<ModelConfig> find_preset(const std::string& name) {
  for (const auto& p : kPresets)
    if (name == p.name) return p.make();
  return std::nullopt;
}

ModelConfig load_model_config(const std::string& model) {
  if (is_directory(model)) {
    const std::string path = join_path(model, "config.json");
    std::ifstream in(path);
    if (!in) throw InputError(path + ": cannot open (a checkpoint directory needs config.json)");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(path + ": not valid JSON (" + e.what() + ")");
    }
    ModelConfig c = parse_model_config(j, path);
    c.name = model;
    return c;
  }
  if (auto preset = find_preset(model)) return *preset;
  std::string names;
  for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
  throw InputError("--model '" + model + "': no such checkpoint directory and not a preset (presets: " + names + ")");
}

void keep_first_layers(ModelConfig& config, int64_t layers) {
  if (layers == 0) return;
  if (layers < 0 || layers > config.num_layers)
    throw InputError("--layers " + std::to_string(layers) + ": the model has " + std::to_string(config.num_layers) +
                     " layers");
  config.num_layers = layers;
}

}  // namespace lb
