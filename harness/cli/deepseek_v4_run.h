#pragma once
// What `check` and `bench` settle for DeepSeek-V4 before any rank starts (its family, behind the
// shared path, is harness/cli/deepseek_v4_family.h): a deepseek_v4 checkpoint directory or a
// preset (oracles/deepseek_v4_presets.h), the flags V4 takes, V4's own layouts
// (layouts/deepseek_v4_layouts.h: "tp", and layout A as "cp-fused-moe") and one sequence of
// tokens (prefill, no cache, float32).
#include "datasets/token_input.h"
#include "harness/cli/run_family.h"
#include "harness/runtime/launch.h"
#include "layouts/deepseek_v4_layouts.h"

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

namespace lb {

constexpr int64_t kDefaultV4Tokens = 128;

// True for a V4 preset name or a directory whose config.json says model_type deepseek_v4.
bool is_deepseek_v4_model(const std::string& model);

struct V4Model {
  std::string name;  // preset name or checkpoint directory
  DeepseekV4Config config;
  std::string checkpoint_dir;  // empty: random weights
  uint64_t seed = 0;

  std::string describe_weights() const;  // the checkpoint directory, or random(seed=N)
  std::map<std::string, torch::Tensor> weights(torch::Device device) const;
  nlohmann::json to_json() const;
};

// The start of a check or bench record: run_record's fields, the model, weights, ranks and tokens.
nlohmann::json v4_run_record(const std::string& subcommand, const std::vector<std::string>& argv,
                             const std::string& device, const V4Model& model, const std::string& backend, int ranks,
                             int64_t tokens);

// The model (first `layers` decoder layers; 0 keeps all). InputError on a bad config.
V4Model open_deepseek_v4_model(const std::string& model, int64_t layers, uint64_t seed);

struct V4LayoutChoice {
  std::string name;  // as reports name it: tp, cp-fused-moe
  V4Layout layout;
  std::string replaces;  // the baseline it is measured against ("" for the baseline)
};
// "all", or names from tp, cp-fused-moe (A); InputError naming an unknown one.
std::vector<V4LayoutChoice> select_v4_layouts(const std::string& list);

// The model, the backend, the token count, the layouts (each checked against the rank count) and
// the tokens. InputError on a flag V4 runs do not take (named, with why; --lengths is taken when it
// holds one sequence), or any bad input. Without --tokens or --lengths: kDefaultV4Tokens.
struct V4RunPlan {
  V4Model model;
  Backend backend;
  int64_t tokens = 0;
  std::vector<V4LayoutChoice> layouts;
  TokenBatch batch;
};
V4RunPlan plan_v4_run(const RunFlags& flags);

}  // namespace lb
