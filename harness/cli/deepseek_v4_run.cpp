#include "harness/cli/deepseek_v4_run.h"

#include "datasets/token_input.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"
#include "oracles/deepseek_v4_presets.h"
#include "oracles/deepseek_v4_weights.h"
#include "reports/run_record.h"

#include <fstream>
#include <sstream>

namespace lb {

namespace {

std::string config_path(const std::string& dir) { return join_path(dir, "config.json"); }

// The flags of check/bench that V4 runs do not take: InputError naming the first one given, and
// why. `--lengths` is taken when it holds one sequence: the token count.
int64_t refuse_flags_and_count_tokens(const RunFlags& flags) {
  const CLI::App& sub = *flags.sub;
  struct Refused {
    const char* flag;
    const char* allowed;  // the one value V4 takes, given or not (nullptr: none)
    const char* why;
  };
  const Refused refused[] = {
      {"--tp", nullptr, "the V4 layouts span every rank"},
      {"--dp", nullptr, "the V4 layouts span every rank"},
      {"--attn-cp", nullptr, "the V4 layouts span every rank"},
      {"--moe-dp", nullptr, "the V4 layouts span every rank"},
      {"--moe-ep", nullptr, "the V4 layouts span every rank"},
      {"--moe-dense-tp", nullptr, "V4 has no dense layers"},
      {"--nnodes", nullptr, "the V4 layouts span every rank"},
      {"--kernels", "reference", "V4 runs the plain LibTorch path"},
      {"--dtype", "f32", "V4 runs in f32 only (its reference is verified in f32)"},
      {"--capture", nullptr, "V4 is compared per layer only"},
      {"--reference-dump", nullptr, "V4 computes its reference on every rank"},
      {"--decode-batch", nullptr, "V4 runs prefill only (no KV or compressor cache)"},
      {"--decode-context", nullptr, "V4 runs prefill only (no KV or compressor cache)"},
      {"--decode-steps", nullptr, "V4 runs prefill only (no KV or compressor cache)"},
      {"--cuda-graphs", nullptr, "V4 runs prefill only (no KV or compressor cache)"},
      {"--row-verdicts", nullptr, "V4 runs in f32, where the per-layer threshold already sees a one-row bug"},
  };
  for (const Refused& r : refused) {
    const auto* option = sub.get_option_no_throw(r.flag);
    if (option == nullptr || option->count() == 0) continue;
    if (r.allowed != nullptr && option->as<std::string>() == r.allowed) continue;
    throw InputError(std::string(r.flag) + " does not apply to DeepSeek-V4 models: " + r.why);
  }
  int64_t tokens = flags.tokens;
  const auto* lengths_option = sub.get_option_no_throw("--lengths");
  if (lengths_option != nullptr && lengths_option->count() > 0) {
    const std::string& lengths = flags.lengths;
    if (lengths.find(',') != std::string::npos)
      throw InputError("--lengths '" + lengths + "': DeepSeek-V4 runs one sequence (give one length, or --tokens)");
    if (tokens == 0) tokens = parse_lengths(lengths, "--lengths").at(0);
  }
  return tokens > 0 ? tokens : kDefaultV4Tokens;
}

}  // namespace

bool is_deepseek_v4_model(const std::string& model) {
  if (find_deepseek_v4_preset(model)) return true;
  if (!is_directory(model)) return false;
  std::ifstream in(config_path(model));
  if (!in) return false;
  // A config that is not JSON is for the generic loader to report.
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return j.is_object() && j.value("model_type", std::string()) == "deepseek_v4";
}

V4Model open_deepseek_v4_model(const std::string& model, int64_t layers, uint64_t seed) {
  V4Model m;
  m.name = model;
  m.seed = seed;
  if (auto preset = find_deepseek_v4_preset(model)) {
    m.config = *preset;
  } else {
    m.config = read_deepseek_v4_config(config_path(model));
    m.checkpoint_dir = model;
  }
  keep_first_v4_layers(m.config, layers);
  return m;
}

std::string V4Model::describe_weights() const {
  return checkpoint_dir.empty() ? "random(seed=" + std::to_string(seed) + ")" : checkpoint_dir;
}

std::map<std::string, torch::Tensor> V4Model::weights(torch::Device device) const {
  return checkpoint_dir.empty() ? random_deepseek_v4_weights(config, seed, device)
                                : load_deepseek_v4_weights(config, checkpoint_dir, device);
}

nlohmann::json V4Model::to_json() const {
  const DeepseekV4Config& c = config;
  nlohmann::json attention = nlohmann::json::array(), routing = nlohmann::json::array();
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const V4Attention kind = c.attention[size_t(l)];
    attention.push_back(kind == V4Attention::Sliding          ? "sliding"
                        : kind == V4Attention::CompressedSparse ? "compressed_sparse"
                                                                : "heavily_compressed");
    routing.push_back(c.hash_routed[size_t(l)] ? "hash" : "top-k");
  }
  return {{"name", name},
          {"family", "deepseek_v4"},
          {"num_layers", c.num_layers},
          {"hidden", c.hidden},
          {"vocab", c.vocab},
          {"num_heads", c.num_heads},
          {"head_dim", c.head_dim},
          {"q_lora_rank", c.q_lora_rank},
          {"o_groups", c.o_groups},
          {"o_lora_rank", c.o_lora_rank},
          {"sliding_window", c.sliding_window},
          {"csa_rate", c.csa_rate},
          {"hca_rate", c.hca_rate},
          {"index_heads", c.index_heads},
          {"index_topk", c.index_topk},
          {"hc_mult", c.hc_mult},
          {"num_experts", c.num_experts},
          {"experts_per_token", c.experts_per_token},
          {"moe_intermediate", c.moe_intermediate},
          {"shared_intermediate", c.shared_intermediate},
          {"attention", attention},
          {"routing", routing}};
}

nlohmann::json v4_run_record(const std::string& subcommand, const std::vector<std::string>& argv,
                             const std::string& device, const V4Model& model, const std::string& backend, int ranks,
                             int64_t tokens) {
  nlohmann::json record = run_record(subcommand, argv, device);
  record["model"] = model.to_json();
  record["weights"] = model.describe_weights();
  record["backend"] = backend;
  record["ranks"] = ranks;
  record["dtype"] = "f32";
  record["seq_lens"] = {tokens};
  return record;
}

V4RunPlan plan_v4_run(const RunFlags& a) {
  V4RunPlan plan;
  plan.tokens = refuse_flags_and_count_tokens(a);
  plan.model = open_deepseek_v4_model(a.model, a.layers, a.seed);
  plan.backend = parse_backend(a.backend);
  if (a.ranks < 1) throw InputError("--ranks/--gpus must be >= 1");
  plan.layouts = select_v4_layouts(a.layout);
  for (const V4LayoutChoice& l : plan.layouts)
    check_deepseek_v4_layout(plan.model.config, l.layout, a.ranks, plan.tokens);
  plan.batch = random_tokens({plan.tokens}, plan.model.config.vocab, a.seed);
  return plan;
}

std::vector<V4LayoutChoice> select_v4_layouts(const std::string& list) {
  const V4LayoutChoice tp{"tp", V4Layout::TensorParallel, ""};
  const V4LayoutChoice a{"cp-fused-moe", V4Layout::ContextParallelFusedMoe, "tp"};
  if (list.empty() || list == "all") return {tp, a};
  std::vector<V4LayoutChoice> out;
  std::stringstream in(list);
  std::string name;
  while (std::getline(in, name, ',')) {
    if (name == "tp") out.push_back(tp);
    else if (name == "cp-fused-moe" || name == "A") out.push_back(a);
    else throw InputError("--layout '" + name + "': DeepSeek-V4 runs tp and cp-fused-moe (layout A), or all");
  }
  return out;
}

}  // namespace lb
