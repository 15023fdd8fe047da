#include "harness/cli/cmd_bench_layer.h"

#include "harness/cli/batch_limits.h"
#include "harness/cli/flag_checks.h"
#include "harness/runtime/device.h"
#include "harness/runtime/errors.h"
#include "harness/model/model_config.h"
#include "harness/runtime/timing.h"
#include "harness/model/weights.h"
#include "kernels/fused_moe.h"
#include "kernels/fused_routing.h"
#include "kernels/rmsnorm.h"
#include "datasets/token_input.h"
#include "harness/runtime/parallel_config.h"
#include "layouts/shard.h"
#include "oracles/qwen3_moe_layer.h"
#include "reports/record_file.h"
#include "reports/run_record.h"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>

namespace lb {

namespace {

struct BenchLayerArgs {
  std::string model = "qwen3-30b-a3b";
  int64_t tokens = 4096;
  std::string lengths;   // several packed sequences instead of one of `tokens`
  std::string parallel;  // time the shard of the layer that `rank` of this layout holds
  int rank = 0;
  std::string dtype = "bf16";
  std::string device;
  int repeats = 5;
  std::string json;
};

int run_bench_layer(const BenchLayerArgs& a, const std::vector<std::string>& argv) {
  ModelConfig config = load_model_config(a.model);
  if (config.family != ModelFamily::Qwen3Moe) throw InputError("bench-layer: --model must be a Qwen3-MoE model");
  config.num_layers = 1;
  const torch::Device device = parse_device(a.device.empty() ? (torch::cuda::is_available() ? "cuda" : "cpu") : a.device);
  const torch::ScalarType dtype = parse_model_dtype(a.dtype, device, /*collectives=*/false);
  const std::vector<int64_t> lengths = a.lengths.empty() ? std::vector<int64_t>{a.tokens} : parse_lengths(a.lengths, "--lengths");
  int64_t total = 0;
  for (int64_t n : lengths) total += n;
  check_batch_fits(lengths, config, dtype, device, a.lengths.empty() ? "--tokens" : "--lengths");
  // A rank's shard: what one GPU of a layout computes in a layer, less the collectives, so that
  // its kernels at the shard's shapes are timed on one GPU. Checked before any weight is made.
  std::optional<ParallelConfig> parallel;
  if (!a.parallel.empty()) {
    parallel = parse_parallel_config(a.parallel);
    validate(*parallel);
    if (a.rank < 0 || a.rank >= parallel->world())
      throw InputError("--rank " + std::to_string(a.rank) + ": the layout has ranks 0-" +
                       std::to_string(parallel->world() - 1));
    check_shardable(config, *parallel);
  }
  torch::NoGradGuard no_grad;
  auto weights = open_weights(config, "", 0);
  LayerWeights w = load_layer(config, *weights, 0, dtype, device);
  if (parallel) w = shard_layer(config, w, shard_plan(*parallel, a.rank));
  const Rope rope = make_rope(config);
  const torch::Tensor x = torch::randn({total, config.hidden}, torch::TensorOptions().device(device).dtype(dtype));
  const TokenPlacement tokens = packed_placement(lengths, device);

  // Each step on the output of the one before, so the shapes and values are the layer's own.
  const torch::Tensor normed = rmsnorm(x, w["input_layernorm.weight"], config.rms_eps);
  const QkvStates s = qwen3_qkv(config, w, rope, normed, tokens.pos);
  const torch::Tensor attn = causal_attention(s.q, s.k, s.v, tokens, tokens, config.attention_scale());
  const torch::Tensor o = torch::linear(attn.flatten(1), w["self_attn.o_proj.weight"]);
  const torch::Tensor h = x + o;
  const torch::Tensor post = rmsnorm(h, w["post_attention_layernorm.weight"], config.rms_eps);
  const torch::Tensor router = torch::linear(post, w["mlp.gate.weight"]);
  const Routing routing = route_softmax_topk(router, config.experts_per_token, config.norm_topk_prob);

  std::vector<std::pair<std::string, std::function<void()>>> steps = {
      {"input_layernorm", [&] { rmsnorm(x, w["input_layernorm.weight"], config.rms_eps); }},
      {"qkv + q/k norm + rope", [&] { qwen3_qkv(config, w, rope, normed, tokens.pos); }},
      {"attention (plain)", [&] { causal_attention(s.q, s.k, s.v, tokens, tokens, config.attention_scale()); }},
      {"attention (fused)",
       [&] { causal_attention(s.q, s.k, s.v, tokens, tokens, config.attention_scale(), /*fused=*/true); }},
      {"o_proj", [&] { torch::linear(attn.flatten(1), w["self_attn.o_proj.weight"]); }},
      {"post_attention_layernorm", [&] { rmsnorm(h, w["post_attention_layernorm.weight"], config.rms_eps); }},
      {"router + top-k (plain)", [&] {
         route_softmax_topk(torch::linear(post, w["mlp.gate.weight"]), config.experts_per_token, config.norm_topk_prob);
       }},
      {"router + top-k (fused)", [&] {
         fused_route_softmax_topk(torch::linear(post, w["mlp.gate.weight"]), config.experts_per_token,
                                  config.norm_topk_prob);
       }},
      {"experts (plain)", [&] { moe_experts(post, routing, w.experts); }},
      {"experts (fused)", [&] { fused_moe_experts(post, routing, w.experts); }},
      {"whole layer (plain)", [&] { qwen3_layer(config, w, rope, x, tokens); }},
  };
  LayerWeights fused = w;
  fused.fused_kernels = true;
  fuse_qkv(fused);  // as the layouts' ranks hold a fused layer
  steps.push_back({"whole layer (fused)", [&] { qwen3_layer(config, fused, rope, x, tokens); }});

  nlohmann::json header = run_record("bench-layer", argv, device_name(device));
  header["model"] = config.to_json();
  header["tokens"] = total;
  header["lengths"] = lengths;
  if (parallel) {
    header["parallel"] = parallel->to_json();
    header["rank"] = a.rank;
  }
  header["dtype"] = dtype_name(dtype);
  header["repeats"] = a.repeats;
  header["steps"] = nlohmann::json::array();
  RecordFile record(a.json, header);  // rewritten after every step
  std::cout << config.name << " layer 0, " << total << " tokens in " << lengths.size() << " sequence(s), "
            << dtype_name(dtype) << " on " << device_name(device)
            << (parallel ? ", rank " + std::to_string(a.rank) + "'s shard of " + a.parallel : std::string()) << "\n";
  for (const auto& [name, fn] : steps) {
    const double ms = median_ms(fn, device, a.repeats);
    std::cout << "  " << std::left << std::setw(28) << name << std::right << std::fixed << std::setprecision(3)
              << std::setw(10) << ms << " ms\n";
    record.update([&](nlohmann::json& r) { r["steps"].push_back({{"step", name}, {"ms", ms}}); });
  }
  record.finish();
  if (record.writes()) std::cout << "record written to " << a.json << "\n";
  return 0;
}

}  // namespace

std::function<int()> add_bench_layer_command(CLI::App& app, const std::vector<std::string>& argv) {
  auto a = std::make_shared<BenchLayerArgs>();
  CLI::App* sub = app.add_subcommand("bench-layer", "One Qwen3-MoE decoder layer step by step, plain and fused "
                                                    "kernels (random weights, one sequence)");
  sub->add_option("--model", a->model, "Qwen3-MoE preset or checkpoint directory (its shape)");
  CLI::Option* tokens = sub->add_option("--tokens", a->tokens, "Tokens in the sequence")->check(positive_integer());
  sub->add_option("--lengths", a->lengths, "Several packed sequences instead, e.g. 2048,2048 (their sum is the tokens)")
      ->excludes(tokens);
  sub->add_option("--parallel", a->parallel,
                  "Time the shard of the layer one rank of this layout holds, without its collectives, e.g. tp=2 "
                  "(its attention heads over attn_tp, every expert's intermediate over moe_tp, the experts over "
                  "moe_ep; the tokens as given, so a CP or DP rank's attention and its gathered MoE tokens are two "
                  "runs)");
  sub->add_option("--rank", a->rank, "The rank whose shard --parallel times (default 0)");
  sub->add_option("--dtype", a->dtype, "bf16, f16 or f32");
  sub->add_option("--device", a->device, "cuda or cpu (default cuda when there is one)");
  sub->add_option("--repeats", a->repeats, "Timed runs per step (the median is reported)")->check(positive_integer());
  sub->add_option("--json", a->json, "Write the step times and the command, commit and device")
      ->check(output_file());
  return [a, argv] { return run_bench_layer(*a, argv); };
}

}  // namespace lb
