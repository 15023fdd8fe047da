#include "harness/cli/cmd_reference.h"

#include "harness/cli/batch_limits.h"
#include "harness/cli/finite_outputs.h"
#include "harness/cli/flag_checks.h"
#include "datasets/token_input.h"
#include "harness/runtime/device.h"
#include "kernels/fused_moe.h"
#include "harness/runtime/error_text.h"
#include "harness/runtime/file_util.h"
#include "harness/runtime/progress.h"
#include "harness/runtime/timing.h"
#include "harness/model/safetensors.h"
#include "oracles/reference_model.h"
#include "reports/record_file.h"
#include "reports/run_record.h"

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <memory>

namespace lb {

namespace {

struct ReferenceArgs {
  std::string model;
  std::string kernels = "reference";
  int64_t layers = 0;
  int64_t tokens = 0;
  std::string lengths;
  std::string input;
  std::string dtype = "f32";
  std::string device = "cpu";
  uint64_t seed = 0;
  std::string dump;
  std::string json;
  int repeats = 1;
};

double rms(const torch::Tensor& x) { return x.to(torch::kFloat64).pow(2).mean().sqrt().item<double>(); }

void dump_run(const std::string& path, const TokenBatch& batch, const ReferenceRun& run, const ModelConfig& config,
              const WeightSource& weights, torch::ScalarType dtype) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  auto f32 = [](const torch::Tensor& t) { return t.to(torch::kCPU, torch::kFloat32).contiguous(); };
  tensors.push_back({"input_ids", batch.ids});
  tensors.push_back({"seq_lens", torch::tensor(batch.seq_lens, torch::kInt64)});
  tensors.push_back({"embeddings", f32(run.embeddings)});
  for (size_t i = 0; i < run.layer_outputs.size(); ++i)
    tensors.push_back({"layers." + std::to_string(i) + ".output", f32(run.layer_outputs[i])});
  tensors.push_back({"final_norm", f32(run.final_norm)});
  tensors.push_back({"logits", f32(run.logits)});
  // What `check --reference-dump` verifies before judging a layout against these outputs.
  write_safetensors(path, tensors,
                    {{"format", "layoutbench.reference_dump/1"}, {"model", config.name},
                     {"weights", weights.describe()}, {"dtype", dtype_name(dtype)}});
}

// The forward passes, the printed summary and the --dump file; returns the record's "metrics".
nlohmann::json measure(const ReferenceArgs& a, const ModelConfig& config, const WeightSource& weights,
                       const TokenBatch& batch, torch::Device device, torch::ScalarType dtype) {
  const int64_t T = batch.ids.size(0);
  std::cout << "model " << config.name << " (" << to_string(config.family) << "), " << config.num_layers
            << " layers, weights " << weights.describe() << ", " << dtype_name(dtype) << " on "
            << device_name(device) << "\n"
            << "tokens " << T << " in " << batch.seq_lens.size() << " sequence(s)\n";
  ReferenceModel model(config, weights, {dtype, device, parse_fused_kernels(a.kernels)});
  std::cout << "weights loaded: " << std::fixed << std::setprecision(2) << model.weight_bytes() / double(1 << 30)
            << " GiB\n";

  // GPU timings get one untimed warm-up run; repeats report the median.
  const int passes = a.repeats + (device.is_cuda() ? 1 : 0);
  auto progress = std::make_unique<Progress>("reference: layers", passes * config.num_layers);
  auto on_layer = [&](int64_t) { progress->step(); };
  if (device.is_cuda()) model.forward(batch.ids, batch.seq_lens, false, on_layer);
  reset_peak_memory(device);
  std::vector<double> forward_ms;
  ReferenceRun run;
  for (int r = 0; r < a.repeats; ++r) {
    run = model.forward(batch.ids, batch.seq_lens, false, on_layer);
    forward_ms.push_back(run.forward_ms);
  }
  progress.reset();  // the summary below prints on a clean line
  require_finite_outputs("reference", run.layer_outputs, run.logits);
  const double ms = median(forward_ms);
  // Read before the summary below allocates its own temporaries.
  const int64_t peak_bytes = peak_memory_bytes(device);

  std::cout << "layer  kind   time_ms    rms(out)   max|out|\n";
  nlohmann::json layers = nlohmann::json::array();
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const torch::Tensor& out = run.layer_outputs[i];
    const double r = rms(out), m = out.abs().max().to(torch::kFloat64).item<double>();
    const char* kind = config.is_moe_layer(i) ? "moe" : "dense";
    std::cout << std::setw(5) << i << "  " << std::setw(5) << std::left << kind << std::right << std::setw(10)
              << std::setprecision(3) << run.layer_ms[i] << std::setw(12) << std::setprecision(5) << r
              << std::setw(11) << std::setprecision(4) << m << "\n";
    layers.push_back({{"layer", i}, {"kind", kind}, {"ms", run.layer_ms[i]}, {"rms", r}, {"max_abs", m}});
  }
  const double tokens_per_s = T / (ms / 1000.0);
  const double peak_gib = peak_bytes / double(1 << 30);
  std::cout << "logits [" << run.logits.size(0) << ", " << run.logits.size(1) << "], rms " << std::setprecision(5)
            << rms(run.logits) << "\n"
            << "prefill " << std::setprecision(2) << ms << " ms (median of " << a.repeats << "), "
            << std::setprecision(0) << tokens_per_s << " tokens/s, peak memory " << std::setprecision(2) << peak_gib
            << " GiB\n";

  if (!a.dump.empty()) {
    dump_run(a.dump, batch, run, config, weights, dtype);
    std::cout << "dump written to " << a.dump << "\n";
  }
  return {{"prefill_ms", ms}, {"prefill_ms_all", forward_ms}, {"prefill_tokens_per_s", tokens_per_s},
          {"peak_memory_bytes", peak_bytes}, {"weight_bytes", model.weight_bytes()}, {"layers", layers}};
}

int run_reference(const ReferenceArgs& a, const std::vector<std::string>& argv) {
  // Everything the user gave is checked before any weight is made or any GPU work starts (the
  // flags' ranges and files by the parser, flag_checks.h).
  ModelConfig config = load_model_config(a.model);
  keep_first_layers(config, a.layers);
  const torch::Device device = parse_device(a.device);
  const torch::ScalarType dtype = parse_model_dtype(a.dtype, device, /*collectives=*/false);
  const std::string tokens_flag = !a.input.empty() ? "--input" : !a.lengths.empty() ? "--lengths" : "--tokens";
  TokenBatch batch;
  if (!a.input.empty()) {
    batch = read_token_file(a.input, config.vocab);
    check_batch_fits(batch.seq_lens, config, dtype, device, tokens_flag);
  } else {
    const std::vector<int64_t> lengths = a.lengths.empty() ? std::vector<int64_t>{a.tokens}
                                                           : parse_lengths(a.lengths, "--lengths");
    check_batch_fits(lengths, config, dtype, device, tokens_flag);
    batch = random_tokens(lengths, config.vocab, a.seed);
  }
  const bool is_checkpoint = is_directory(a.model);
  std::unique_ptr<WeightSource> weights = open_weights(config, is_checkpoint ? a.model : "", a.seed);

  nlohmann::json header = run_record("reference", argv, device_name(device));
  header["config"] = config.to_json();
  header["weights"] = weights->describe();
  header["weights_id"] = weights->fingerprint();
  header["seed"] = a.seed;
  header["kernels"] = a.kernels;
  header["dtype"] = dtype_name(dtype);
  header["tokens"] = batch.ids.size(0);
  header["seq_lens"] = batch.seq_lens;
  RecordFile record(a.json, header);
  try {
    const nlohmann::json metrics = measure(a, config, *weights, batch, device, dtype);
    record.update([&](nlohmann::json& r) { r["metrics"] = metrics; });
  } catch (const std::exception& e) {
    record.fail(error_text(e));
    throw;
  }
  record.finish();
  if (record.writes()) std::cout << "record written to " << a.json << "\n";
  return 0;
}

}  // namespace

std::function<int()> add_reference_command(CLI::App& app, const std::vector<std::string>& argv) {
  auto args = std::make_shared<ReferenceArgs>();
  CLI::App* cmd = app.add_subcommand("reference", "Run the single-device reference model and summarize each layer");
  cmd->add_option("--model", args->model,
                  "HF checkpoint directory (config.json + safetensors) or a preset: qwen3-30b-a3b, deepseek-v3, "
                  "tiny-qwen3-moe, tiny-deepseek-v3 (presets use deterministic random weights)")
      ->required();
  cmd->add_option("--layers", args->layers, "Run only the first N decoder layers (default: all)")->check(positive_integer());
  auto* tokens = cmd->add_option("--tokens", args->tokens, "One sequence of N random tokens (default 64)")->check(positive_integer());
  auto* lengths = cmd->add_option("--lengths", args->lengths, "Several sequences of random tokens, e.g. 37,5,64");
  auto* input = cmd->add_option("--input", args->input, "JSON file of token ids: [ids] or [[ids], [ids], ...]")->check(input_file());
  tokens->excludes(lengths)->excludes(input);
  lengths->excludes(input);
  cmd->add_option("--kernels", args->kernels, "reference (plain LibTorch) or fused (sorted pairs and grouped GEMMs for the MoE experts)");
  cmd->add_option("--dtype", args->dtype, "Weights and activations: f32 or bf16 (norms and routers run in fp32)")
      ->capture_default_str();
  cmd->add_option("--device", args->device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--seed", args->seed, "Seed of random weights and random tokens")->capture_default_str()->check(seed_value());
  cmd->add_option("--dump", args->dump, "Write every layer's output, the final norm and the logits (fp32 safetensors)")
      ->check(output_file());
  cmd->add_option("--json", args->json, "Write the run record (command, commit, device, timings, memory) as JSON")
      ->check(output_file());
  cmd->add_option("--repeats", args->repeats, "Timed forward passes; the median is reported")->capture_default_str()
      ->check(positive_integer());
  args->tokens = 64;
  return [args, argv] { return run_reference(*args, argv); };
}

}  // namespace lb
