#include "harness/cli/cmd_check.h"

#include "harness/cli/batch_limits.h"
#include "harness/cli/finite_outputs.h"
#include "harness/cli/flag_checks.h"
#include "datasets/token_input.h"
#include "harness/cli/deepseek_v4_run.h"
#include "harness/runtime/device.h"
#include "kernels/fused_moe.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"
#include "harness/runtime/launch.h"
#include "harness/cli/layout_selection.h"
#include "harness/cli/parallel_flags.h"
#include "harness/runtime/progress.h"
#include "harness/model/safetensors.h"
#include "layouts/layout_check.h"
#include "reports/record_file.h"
#include "reports/run_record.h"

#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

namespace lb {

namespace {

struct CheckArgs {
  std::string model;
  std::string layout = "all";
  std::string backend;
  int ranks = 0;
  ParallelFlags parallel;
  int64_t layers = 0;
  int64_t tokens = 0;
  std::string lengths = "37,9,64,18";  // 128 tokens: divides by 2, 4, 8 for round-robin CP
  std::string dtype = "f32";
  uint64_t seed = 0;
  double max_rel_l2 = 0;
  int timeout_s = 600;
  std::string json;
  std::string capture = "none";
  std::string reference_dump;
  std::string mutation;
  std::string kernels = "reference";
  CLI::App* sub = nullptr;
};

// In bf16/f16 the threshold is calibrated per layer from the measured noise floor: the distance
// between the low-precision reference and the fp32 reference on the same weights and tokens. A
// layout computes the same model with its sums in another order, so its own rounding error is of
// that size; its distance to the low-precision reference is then up to about sqrt(2) times it
// (independent errors) and a wrong layout is far past it.
constexpr double kNoiseFloorFactor = 3.0;
// A capture point computed identically in both precisions (none today) still gets a usable threshold.
constexpr double kMinNoiseFloor = 1e-6;

// The reference's layer outputs from a `layoutbench reference --dump` file, after checking that
// it was made on the same model, weights and tokens (and has every layer this check needs).
std::vector<torch::Tensor> read_reference_dump(const std::string& path, const ModelConfig& config,
                                               const WeightSource& weights, const TokenBatch& batch) {
  SafetensorsFile file(path);
  const auto& meta = file.metadata();
  auto meta_of = [&](const char* key) { return meta.count(key) ? meta.at(key) : std::string("(not recorded)"); };
  if (meta_of("format") != "layoutbench.reference_dump/1")
    throw InputError("--reference-dump " + path + ": not a layoutbench reference dump (format " + meta_of("format") +
                     ")");
  if (meta_of("model") != config.name || meta_of("weights") != weights.describe())
    throw InputError("--reference-dump " + path + ": made for model " + meta_of("model") + " with weights " +
                     meta_of("weights") + ", this check runs " + config.name + " with " + weights.describe());
  const torch::Tensor ids = file.read("input_ids", torch::kInt64);
  const torch::Tensor lens = file.read("seq_lens", torch::kInt64);
  const bool same_lens = lens.numel() == int64_t(batch.seq_lens.size()) &&
                         torch::equal(lens, torch::tensor(batch.seq_lens, torch::kInt64));
  if (!same_lens || !torch::equal(ids, batch.ids.to(torch::kInt64)))
    throw InputError("--reference-dump " + path + ": its input_ids or seq_lens differ from this check's tokens "
                     "(use the same --model, --seed and --tokens/--lengths as the reference run)");
  std::vector<torch::Tensor> layers;
  for (int64_t i = 0; i < config.num_layers; ++i)
    layers.push_back(file.read("layers." + std::to_string(i) + ".output", torch::kFloat32));
  return layers;
}

int run_check(const CheckArgs& a, const std::vector<std::string>& argv) {
  if (is_deepseek_v4_model(a.model)) {
    V4RunArgs v4;
    v4.model = a.model, v4.layout = a.layout, v4.backend = a.backend, v4.ranks = a.ranks;
    v4.layers = a.layers, v4.tokens = a.tokens, v4.seed = a.seed, v4.max_rel_l2 = a.max_rel_l2;
    v4.timeout_s = a.timeout_s;
    v4.json = a.json;
    v4.mutation = a.mutation;
    apply_v4_flags(*a.sub, a.lengths, v4);
    return run_check_deepseek_v4(v4, argv);
  }
  // Every input is checked, and every layout's split and shards planned, before any rank starts.
  ModelConfig config = load_model_config(a.model);
  keep_first_layers(config, a.layers);
  const Backend backend = parse_backend(a.backend);
  const torch::Device rank_device = backend == Backend::Nccl ? torch::Device(torch::kCUDA, 0) : torch::kCPU;
  const torch::ScalarType dtype = parse_model_dtype(a.dtype, rank_device, /*collectives=*/true);
  if (a.ranks < 1) throw InputError("--ranks/--gpus must be >= 1");
  const std::vector<int64_t> lengths = a.tokens > 0 ? std::vector<int64_t>{a.tokens} : parse_lengths(a.lengths, "--lengths");
  check_batch_fits(lengths, config, dtype, rank_device, a.tokens > 0 ? "--tokens" : "--lengths");
  const TokenBatch batch = random_tokens(lengths, config.vocab, a.seed);
  const bool from_dump = !a.reference_dump.empty();
  if (from_dump && dtype != torch::kFloat32 && a.max_rel_l2 <= 0)
    throw InputError("--reference-dump with --dtype " + a.dtype + " needs --max-rel-l2: the noise floor is measured "
                     "from two references computed here");
  if (from_dump && a.capture != "none")
    throw InputError("--reference-dump does not hold capture points: use --capture none");
  const bool calibrate = dtype != torch::kFloat32 && a.max_rel_l2 <= 0;
  if (a.capture != "none" && a.capture != "op") throw InputError("--capture '" + a.capture + "': none or op");
  const bool op_capture = a.capture == "op";
  const Mutation mutation = find_mutation(a.mutation);
  const bool fused = parse_fused_kernels(a.kernels);
  std::vector<double> thresholds(config.num_layers, a.max_rel_l2 > 0 ? a.max_rel_l2 : kFp32MaxRelL2);

  std::vector<const LayoutSpec*> layouts;
  std::vector<ParallelConfig> parallels;
  for (const SelectedLayout& l : select_layouts(a.layout, a.ranks, config, a.parallel, *a.sub)) {
    layouts.push_back(l.spec);
    parallels.push_back(l.parallel);
    split_tokens(l.parallel, l.spec->split, batch.seq_lens);  // throws on a split it cannot make
  }
  std::unique_ptr<WeightSource> weights = open_weights(config, is_directory(a.model) ? a.model : "", a.seed);
  std::vector<torch::Tensor> dumped;
  if (from_dump) dumped = read_reference_dump(a.reference_dump, config, *weights, batch);

  // On disk from here on, rewritten after every layout: a failure (run_ranks passes it on), a
  // timeout or a signal keeps what finished.
  nlohmann::json header = run_record("check", argv, "");
  header["model"] = config.to_json();
  header["weights"] = weights->describe();
  header["weights_id"] = weights->fingerprint();
  header["seed"] = a.seed;
  header["backend"] = to_string(backend);
  header["ranks"] = a.ranks;
  header["kernels"] = a.kernels;
  header["dtype"] = dtype_name(dtype);
  header["seq_lens"] = batch.seq_lens;
  header["capture"] = a.capture;
  if (from_dump) header["reference_dump"] = a.reference_dump;
  if (mutation != Mutation::None) header["mutation"] = a.mutation;
  header["layouts"] = nlohmann::json::array();
  RecordFile record(a.json, header);

  std::vector<LayoutCheck> results;
  std::vector<double> noise_floor;
  std::vector<std::map<std::string, double>> op_noise_floor;
  std::string device_label;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed_s = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  run_ranks(backend, a.ranks, [&](RankContext& ctx) {
    ReferenceOptions options{dtype, ctx.device()};
    ReferenceOptions layout_options{dtype, ctx.device(), fused};  // the reference keeps the oracle path
    std::vector<torch::Tensor> reference;
    std::vector<LayerCapture> reference_ops;
    OpCheckOptions op_check;
    op_check.capture = op_capture;
    op_check.mutation = mutation;
    if (ctx.rank() == 0 && from_dump) {
      device_label = device_name(ctx.device());
      for (const torch::Tensor& t : dumped) reference.push_back(t.to(ctx.device()));
      require_finite_outputs("check: --reference-dump " + a.reference_dump, reference);
    } else if (ctx.rank() == 0) {
      device_label = device_name(ctx.device());
      ReferenceRun exact;
      if (calibrate) {
        ReferenceModel model(config, *weights, {torch::kFloat32, ctx.device()});
        exact = model.forward(batch.ids, batch.seq_lens, op_capture);
        require_finite_outputs("check: the f32 reference", exact.layer_outputs);
      }
      ReferenceModel model(config, *weights, options);
      ReferenceRun run = model.forward(batch.ids, batch.seq_lens, op_capture);
      require_finite_outputs("check: the reference", run.layer_outputs);
      reference = run.layer_outputs;
      reference_ops = std::move(run.captures);
      op_check.reference = &reference_ops;
      if (calibrate && op_capture) {
        // Each capture point's threshold: the same factor over its own noise floor.
        std::cout << "noise floor per capture point (" << dtype_name(dtype) << " reference vs f32 reference):\n";
        for (int64_t i = 0; i < config.num_layers; ++i) {
          std::map<std::string, double> floor = capture_noise_floor(reference_ops[i], exact.captures[i]);
          op_noise_floor.push_back(floor);
          std::cout << "  layer " << i << ":";
          for (const std::string& op : capture_ops())
            if (floor.count(op)) std::cout << " " << op << "=" << floor.at(op);
          std::cout << "\n";
          for (auto& [op, f] : floor) f = kNoiseFloorFactor * std::max(f, kMinNoiseFloor);
          op_check.thresholds.push_back(floor);
        }
      }
      const std::vector<torch::Tensor>& exact_layers = exact.layer_outputs;
      if (calibrate) {
        std::cout << "noise floor (" << dtype_name(dtype) << " reference vs f32 reference), relative L2 per layer:";
        for (int64_t i = 0; i < config.num_layers; ++i) {
          noise_floor.push_back(compare_tensors(reference[i], exact_layers[i]).rel_l2);
          thresholds[i] = kNoiseFloorFactor * noise_floor.back();
          std::cout << " " << noise_floor.back();
        }
        std::cout << "\nthreshold per layer: " << kNoiseFloorFactor << " x noise floor (references took "
                  << elapsed_s() << " s)\n";
      }
    }
    if (ctx.rank() == 0)
      record.update([&](nlohmann::json& r) {
        r["device"] = device_label;
        r["thresholds"] = thresholds;
        if (!calibrate) return;
        r["noise_floor"] = noise_floor;
        r["noise_floor_factor"] = kNoiseFloorFactor;
        if (!op_noise_floor.empty()) r["op_noise_floor"] = op_noise_floor;
      });
    ctx.quiesce();  // rank 0's references are done (and their memory released) before any layout
    std::optional<Progress> progress;
    if (ctx.rank() == 0) progress.emplace("check: layouts", int64_t(layouts.size()));
    for (size_t i = 0; i < layouts.size(); ++i) {
      LayoutCheck c = check_layout(ctx, *layouts[i], parallels[i], config, *weights, layout_options, batch, reference,
                                   thresholds, op_check);
      ctx.quiesce();  // every rank has freed the layout before the next one's collectives
      if (progress) progress->step(layouts[i]->name);
      if (ctx.rank() == 0) {
        if (progress) progress->clear();
        std::cout << format_layout_check(c) << "  done at " << elapsed_s() << " s (setup included)\n" << std::flush;
        record.update([&](nlohmann::json& r) { r["layouts"].push_back(to_json(c)); });
        results.push_back(std::move(c));
      }
    }
  }, std::chrono::seconds(a.timeout_s));
  if (results.empty()) return 0;  // not rank 0 of an mpirun launch

  bool pass = true;
  for (const auto& r : results) pass = pass && r.pass;
  std::cout << (pass ? "all layouts match the reference" : "DIVERGENCE: see the rows marked above") << " (" << results.size()
            << " layout(s), " << config.num_layers << " layers, " << batch.ids.size(0) << " tokens, "
            << dtype_name(dtype) << ")\n";
  record.update([&](nlohmann::json& r) { r["pass"] = pass; });
  record.finish();
  if (record.writes()) std::cout << "record written to " << a.json << "\n";
  return pass ? 0 : 1;
}

}  // namespace

std::function<int()> add_check_command(CLI::App& app, const std::vector<std::string>& argv) {
  auto a = std::make_shared<CheckArgs>();
  a->backend = to_string(default_backend());
  CLI::App* sub = app.add_subcommand("check", "Run a layout (or all) and the single-device reference on the same "
                                              "weights and tokens; compare every layer in original token order");
  a->sub = sub;
  sub->add_option("--model", a->model, "Checkpoint directory or preset; DeepSeek-V4 (deepseek-v4-flash, tiny-deepseek-v4, a deepseek_v4 checkpoint) runs its own layouts tp and cp-fused-moe on one sequence in f32")->required();
  sub->add_option("--layout", a->layout, "Layout names (comma-separated), or all (every layout and baseline)");
  sub->add_option("--backend", a->backend, "cpu (CPU ranks) or nccl (one GPU per rank); default nccl in CUDA builds");
  sub->add_option("--ranks,--gpus", a->ranks, "Number of ranks")->required()->check(positive_integer());
  add_parallel_flags(*sub, a->parallel);
  sub->add_option("--layers", a->layers, "Run only the first N decoder layers")->check(positive_integer());
  sub->add_option("--tokens", a->tokens, "One random sequence of N tokens (instead of --lengths)")->check(positive_integer());
  sub->add_option("--lengths", a->lengths, "Random sequences of these lengths, comma-separated");
  sub->add_option("--dtype", a->dtype, "f32 or bf16 (reference and layout alike)");
  sub->add_option("--kernels", a->kernels, "The layouts' kernels: reference (plain LibTorch) or fused (sorted pairs and grouped GEMMs for the "
                  "MoE experts); the reference keeps the plain path");
  sub->add_option("--seed", a->seed, "Seed of the random weights and tokens")->check(seed_value());
  sub->add_option("--max-rel-l2", a->max_rel_l2,
                  "Verdict threshold on relative L2 per layer (default: 1e-5 in f32; in bf16/f16, 3x the measured "
                  "noise floor of each layer, the low-precision reference against the f32 reference)")
      ->check(positive_number());
  sub->add_option("--timeout", a->timeout_s, "Seconds before a collective that does not finish is an error")
      ->check(positive_integer());
  sub->add_option("--capture", a->capture,
                  "none, or op: also compare every capture point inside each layer (post-norm input, q, k/latent, "
                  "attention output, o_proj, residual, router logits, top-k experts and weights, MLP output) and "
                  "name the first (layer, op) that diverges with its ranks and token ranges");
  std::string mutations;
  for (const auto& m : all_mutations()) mutations += (mutations.empty() ? "" : ", ") + m.name;
  sub->add_option("--mutation", a->mutation,
                  "Plant a known layout bug, to test the oracle (" + mutations + ")");
  sub->add_option("--reference-dump", a->reference_dump,
                  "Judge the layout against the layer outputs of a `layoutbench reference --dump` file (same model, "
                  "weights, --seed and tokens; checked) instead of computing the reference here, for models whose "
                  "reference does not fit next to the layout")
      ->check(input_file());
  sub->add_option("--json", a->json, "Write the per-layer verdicts and the run's command, commit and device")
      ->check(output_file());
  return [a, argv] { return run_check(*a, argv); };
}

}  // namespace lb
