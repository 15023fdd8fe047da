#include "harness/cli/layout_spec_family.h"

#include "harness/cli/batch_limits.h"
#include "harness/cli/finite_outputs.h"
#include "harness/cli/layout_selection.h"
#include "harness/model/model_flops.h"
#include "harness/model/safetensors.h"
#include "harness/model/weights.h"
#include "harness/runtime/device.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"
#include "kernels/fused_moe.h"
#include "layouts/layout_check.h"
#include "layouts/layout_rank.h"
#include "layouts/row_check.h"
#include "reports/run_record.h"

#include <iostream>
#include <map>

namespace lb {

namespace {

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

class LayoutSpecCheck;
class LayoutSpecBench;

class LayoutSpecFamily : public RunFamily {
 public:
  explicit LayoutSpecFamily(const RunFlags& flags);

  Backend backend() const override { return backend_; }
  int ranks() const override { return ranks_; }
  const std::vector<RunLayout>& layouts() const override { return layouts_; }
  const TokenBatch& batch() const override { return batch_; }
  torch::ScalarType dtype() const override { return dtype_; }
  int64_t num_layers() const override { return config_.num_layers; }
  std::optional<double> prefill_flops() const override { return lb::prefill_flops(config_, batch_.seq_lens); }
  std::optional<int64_t> decode_positions() const override { return config_.max_position; }

  nlohmann::json record(const std::string& subcommand, const std::vector<std::string>& argv,
                        const std::string& device) const override;
  std::string check_summary() const override;
  std::string bench_header(const std::string& device, int repeats) const override;
  std::unique_ptr<RankCheck> start_check(RankContext& ctx, std::chrono::steady_clock::time_point start) const override;
  std::unique_ptr<RankBench> start_bench(RankContext& ctx) const override;


 private:
  friend class LayoutSpecCheck;  // they read the plan
  friend class LayoutSpecBench;
  ModelConfig config_;
  Backend backend_;
  torch::ScalarType dtype_;
  bool fused_ = false;
  int ranks_ = 0;
  TokenBatch batch_;
  std::vector<SelectedLayout> selected_;
  std::vector<RunLayout> layouts_;
  std::unique_ptr<WeightSource> weights_;
  std::string kernels_;
  uint64_t seed_ = 0;
  // check only
  double max_rel_l2_ = 0;
  bool calibrate_ = false;  // bf16/f16 without --max-rel-l2: thresholds from the noise floor
  std::string capture_;
  bool op_capture_ = false;
  Mutation mutation_ = Mutation::None;
  std::string mutation_name_;
  std::string reference_dump_;
  std::vector<torch::Tensor> dumped_;  // the reference's layer outputs, from --reference-dump
  bool row_verdicts_ = false;          // bf16/f16 with a measured floor and --row-verdicts on
  int decode_steps_ = 0;
};

// The reference is computed (or read from the dump) on rank 0, which compares every layout with it.
class LayoutSpecCheck : public RankCheck {
 public:
  LayoutSpecCheck(const LayoutSpecFamily& f, RankContext& ctx, std::chrono::steady_clock::time_point start)
      : f_(f),
        ctx_(ctx),
        layout_options_{f.dtype_, ctx.device(), f.fused_},  // the reference keeps the oracle path
        thresholds_(f.config_.num_layers, f.max_rel_l2_ > 0 ? f.max_rel_l2_ : kFp32MaxRelL2) {
    const ModelConfig& config = f.config_;
    const torch::ScalarType dtype = f.dtype_;
    op_check_.capture = f.op_capture_;
    op_check_.mutation = f.mutation_;
    op_check_.rows = f.row_verdicts_;
    decode_.steps = f.decode_steps_;
    decode_.thresholds.assign(size_t(config.num_layers), f.max_rel_l2_ > 0 ? f.max_rel_l2_ : kFp32MaxRelL2);
    // With a reference dump there is no f32 reference to judge flips on.
    decode_.flips = f.calibrate_ && f.reference_dump_.empty() && f.decode_steps_ > 0;
    if (ctx.rank() == 0 && !f.reference_dump_.empty()) {
      for (const torch::Tensor& t : f.dumped_) reference_.push_back(t.to(ctx.device()));
      require_finite_outputs("check: --reference-dump " + f.reference_dump_, reference_);
    } else if (ctx.rank() == 0) {
      // One reference model at a time: at real shape the two precisions do not fit side by side.
      ReferenceRun run, exact;
      {
        ReferenceModel model(config, *f.weights_, ReferenceOptions{dtype, ctx.device()});
        run = model.forward(f.batch_.ids, f.batch_.seq_lens, f.op_capture_);
        require_finite_outputs("check: the reference", run.layer_outputs);
        // The run-precision reference chooses the decode tokens; the f32 one and the layouts are fed them.
        if (f.decode_steps_ > 0) decode_trace_ = reference_decode(model, f.batch_, f.decode_steps_);
      }
      decode_.reference = f.decode_steps_ > 0 ? &decode_trace_ : nullptr;
      if (f.calibrate_) {
        ReferenceModel model(config, *f.weights_, {torch::kFloat32, ctx.device()});
        exact = model.forward(f.batch_.ids, f.batch_.seq_lens, f.op_capture_);
        require_finite_outputs("check: the f32 reference", exact.layer_outputs);
        if (f.decode_steps_ > 0) {
          exact_decode_trace_ = reference_decode(model, f.batch_, f.decode_steps_, &decode_trace_);
          decode_noise_ = decode_noise_floor(decode_trace_, exact_decode_trace_);
          decode_.exact = &exact_decode_trace_;
          std::cout << "decode noise floor (" << dtype_name(dtype) << " vs f32, worst step), relative L2 per layer:";
          for (size_t i = 0; i < decode_noise_.size(); ++i) {
            decode_.thresholds[i] = kNoiseFloorFactor * std::max(decode_noise_[i], kMinNoiseFloor);
            std::cout << " " << decode_noise_[i];
          }
          std::cout << "\n";
        }
      }
      reference_ = run.layer_outputs;
      reference_ops_ = std::move(run.captures);
      op_check_.reference = &reference_ops_;
      if (f.calibrate_ && f.op_capture_) {
        // Each capture point's threshold: the same factor over its own noise floor.
        std::cout << "noise floor per capture point (" << dtype_name(dtype) << " reference vs f32 reference):\n";
        for (int64_t i = 0; i < config.num_layers; ++i) {
          std::map<std::string, double> floor = capture_noise_floor(reference_ops_[i], exact.captures[i]);
          op_noise_floor_.push_back(floor);
          std::cout << "  layer " << i << ":";
          for (const std::string& op : capture_ops())
            if (floor.count(op)) std::cout << " " << op << "=" << floor.at(op);
          std::cout << "\n";
          for (auto& [op, value] : floor) value = kNoiseFloorFactor * std::max(value, kMinNoiseFloor);
          op_check_.thresholds.push_back(floor);
        }
      }
      if (f.calibrate_) {
        std::cout << "noise floor (" << dtype_name(dtype) << " reference vs f32 reference), relative L2 per layer:";
        for (int64_t i = 0; i < config.num_layers; ++i) {
          noise_floor_.push_back(compare_tensors(reference_[i], exact.layer_outputs[i]).rel_l2);
          thresholds_[i] = kNoiseFloorFactor * noise_floor_.back();
          std::cout << " " << noise_floor_.back();
        }
        std::cout << "\nthreshold per layer: " << kNoiseFloorFactor << " x noise floor (references took "
                  << seconds_since(start) << " s)\n";
      }
      if (f.row_verdicts_) {
        std::cout << "row verdicts: each row within " << kRowFloorFactor
                  << " x max(its own noise floor, the median row's); top-k flips left out\n";
        row_reference_.exact_layers = exact.layer_outputs;
        row_reference_.experts = run.chosen_experts;
        row_reference_.router_logits = run.router_logits;
        row_reference_.exact_router_logits = exact.router_logits;
        row_reference_.exact_captures = std::move(exact.captures);
        op_check_.row_reference = &row_reference_;
      }
    }
  }

  CheckedLayout check(size_t i) override {
    const SelectedLayout& l = f_.selected_.at(i);
    const LayoutCheck c = check_layout(ctx_, *l.spec, l.parallel, f_.config_, *f_.weights_, layout_options_, f_.batch_,
                                       reference_, thresholds_, op_check_, decode_);
    if (ctx_.rank() != 0) return {};
    worst_row_ratio_ = std::max(worst_row_ratio_, c.worst_row_ratio);
    return {c.pass, format_layout_check(c), to_json(c)};
  }

  nlohmann::json record_fields() const override {
    nlohmann::json j;
    j["thresholds"] = thresholds_;
    if (f_.calibrate_) {
      j["noise_floor"] = noise_floor_;
      j["noise_floor_factor"] = kNoiseFloorFactor;
      if (!op_noise_floor_.empty()) j["op_noise_floor"] = op_noise_floor_;
    }
    j["row_verdicts"] = f_.row_verdicts_;
    if (f_.row_verdicts_) {
      j["row_floor_factor"] = kRowFloorFactor;
      j["worst_row_ratio"] = worst_row_ratio_;
    }
    j["capture"] = f_.capture_;
    j["decode_steps"] = f_.decode_steps_;
    if (f_.decode_steps_ > 0) {
      j["decode_thresholds"] = decode_.thresholds;
      if (!decode_noise_.empty()) j["decode_noise_floor"] = decode_noise_;
    }
    if (!f_.reference_dump_.empty()) j["reference_dump"] = f_.reference_dump_;
    if (f_.mutation_ != Mutation::None) j["mutation"] = f_.mutation_name_;
    return j;
  }

 private:
  const LayoutSpecFamily& f_;
  RankContext& ctx_;
  ReferenceOptions layout_options_;
  std::vector<double> thresholds_;  // rank 0's are calibrated in bf16/f16
  std::vector<torch::Tensor> reference_;
  std::vector<LayerCapture> reference_ops_;
  OpCheckOptions op_check_;
  std::vector<double> noise_floor_;
  std::vector<std::map<std::string, double>> op_noise_floor_;
  RowReference row_reference_;  // rank 0, with row verdicts
  double worst_row_ratio_ = 0;  // over the layouts checked so far
  DecodeTrace decode_trace_;    // rank 0, with decode steps
  DecodeCheckOptions decode_;
  DecodeTrace exact_decode_trace_;  // rank 0, calibrated decode checks: the f32 reference's steps
  std::vector<double> decode_noise_;
};

// Every layout's LayoutRank, its token split and placement planned once, outside the timed prefills
// (decode, which replans, runs after them).
class LayoutSpecBench : public RankBench {
 public:
  LayoutSpecBench(const LayoutSpecFamily& f, RankContext& ctx) : f_(f) {
    const ReferenceOptions options{f.dtype_, ctx.device(), f.fused_};
    for (const SelectedLayout& l : f.selected_)
      ranks_.push_back(std::make_unique<LayoutRank>(ctx, *l.spec, l.parallel, f.config_, *f.weights_, options,
                                                    std::vector<int64_t>{}));
    ctx.quiesce();
    for (auto& r : ranks_) r->set_batch(f.batch_.seq_lens);
  }

  void prefill(size_t i) override {
    LayoutRank& r = *ranks_.at(i);
    torch::Tensor x = r.embed(f_.batch_.ids);
    for (int64_t layer = 0; layer < f_.config_.num_layers; ++layer) x = r.layer_forward(layer, x);
  }
  std::vector<Communicator*> communicators(size_t i) const override { return ranks_.at(i)->communicators(); }
  LayoutRank* decoder(size_t i) override { return ranks_.at(i).get(); }

 private:
  const LayoutSpecFamily& f_;
  std::vector<std::unique_ptr<LayoutRank>> ranks_;
};

// Every input is checked, and every layout's split and shards planned, before any rank starts.
LayoutSpecFamily::LayoutSpecFamily(const RunFlags& a) {
  const bool check = a.subcommand == "check";
  config_ = load_model_config(a.model);
  keep_first_layers(config_, a.layers);
  backend_ = parse_backend(a.backend);
  const torch::Device rank_device = backend_ == Backend::Nccl ? torch::Device(torch::kCUDA, 0) : torch::kCPU;
  dtype_ = parse_model_dtype(a.dtype.empty() ? default_dtype(backend_) : a.dtype, rank_device, /*collectives=*/true);
  fused_ = parse_fused_kernels(a.kernels);
  kernels_ = a.kernels;
  ranks_ = a.ranks;
  if (ranks_ < 1) throw InputError("--ranks/--gpus must be >= 1");
  const std::vector<int64_t> lengths = a.tokens > 0 ? std::vector<int64_t>{a.tokens} : parse_lengths(a.lengths, "--lengths");
  check_batch_fits(lengths, config_, dtype_, rank_device, a.tokens > 0 ? "--tokens" : "--lengths");
  batch_ = random_tokens(lengths, config_.vocab, a.seed);
  seed_ = a.seed;
  if (check) {
    reference_dump_ = a.reference_dump;
    const bool from_dump = !reference_dump_.empty();
    if (from_dump && dtype_ != torch::kFloat32 && a.max_rel_l2 <= 0)
      throw InputError("--reference-dump with --dtype " + a.dtype + " needs --max-rel-l2: the noise floor is "
                       "measured from two references computed here");
    if (from_dump && a.capture != "none")
      throw InputError("--reference-dump does not hold capture points: use --capture none");
    max_rel_l2_ = a.max_rel_l2;
    calibrate_ = dtype_ != torch::kFloat32 && a.max_rel_l2 <= 0;
    if (a.capture != "none" && a.capture != "op") throw InputError("--capture '" + a.capture + "': none or op");
    capture_ = a.capture;
    op_capture_ = a.capture == "op";
    mutation_ = find_mutation(a.mutation);
    mutation_name_ = a.mutation;
    if (a.row_verdicts != "on" && a.row_verdicts != "off")
      throw InputError("--row-verdicts '" + a.row_verdicts + "': on or off");
    // Rows are judged against their own noise floor: only where the floor is measured here.
    row_verdicts_ = calibrate_ && a.row_verdicts == "on";
    if (a.decode_steps < 0) throw InputError("--decode-steps must be >= 0");
    if (from_dump && a.decode_steps > 0)
      throw InputError("--reference-dump holds no decode steps: --decode-steps needs the reference computed here");
    decode_steps_ = a.decode_steps;
  }
  selected_ = select_layouts(a.layout, ranks_, config_, a.parallel, *a.sub);
  for (const SelectedLayout& l : selected_) {
    if (check) split_tokens(l.parallel, l.spec->split, batch_.seq_lens);  // throws on a split it cannot make
    layouts_.push_back({l.spec->name, l.spec->replaces, {{"parallel", l.parallel.to_json()}}});
  }
  weights_ = open_weights(config_, is_directory(a.model) ? a.model : "", a.seed);
  if (check && !reference_dump_.empty()) dumped_ = read_reference_dump(reference_dump_, config_, *weights_, batch_);
}

nlohmann::json LayoutSpecFamily::record(const std::string& subcommand, const std::vector<std::string>& argv,
                                        const std::string& device) const {
  nlohmann::json record = run_record(subcommand, argv, device);
  record["model"] = config_.to_json();
  record["weights"] = weights_->describe();
  record["weights_id"] = weights_->fingerprint();
  record["seed"] = seed_;
  record["backend"] = to_string(backend_);
  record["ranks"] = ranks_;
  record["kernels"] = kernels_;
  record["dtype"] = dtype_name(dtype_);
  record["seq_lens"] = batch_.seq_lens;
  return record;
}

std::string LayoutSpecFamily::check_summary() const {
  return std::to_string(config_.num_layers) + " layers, " + std::to_string(batch_.ids.size(0)) + " tokens, " +
         dtype_name(dtype_);
}

std::string LayoutSpecFamily::bench_header(const std::string& device, int repeats) const {
  return config_.name + ", " + std::to_string(config_.num_layers) + " layers, " + std::to_string(batch_.ids.size(0)) +
         " prefill tokens, " + dtype_name(dtype_) + ", kernels " + kernels_ + ", " + std::to_string(ranks_) +
         " ranks on " + device + " (medians of " + std::to_string(repeats) + ", layouts interleaved)";
}

std::unique_ptr<RankCheck> LayoutSpecFamily::start_check(RankContext& ctx,
                                                         std::chrono::steady_clock::time_point start) const {
  return std::make_unique<LayoutSpecCheck>(*this, ctx, start);
}

std::unique_ptr<RankBench> LayoutSpecFamily::start_bench(RankContext& ctx) const {
  return std::make_unique<LayoutSpecBench>(*this, ctx);
}

}  // namespace

std::unique_ptr<RunFamily> open_layout_spec_family(const RunFlags& flags) {
  return std::make_unique<LayoutSpecFamily>(flags);
}

}  // namespace lb
