#include "harness/cli/deepseek_v4_family.h"

#include "harness/cli/deepseek_v4_run.h"
#include "harness/runtime/device.h"
#include "layouts/choice_verdict.h"
#include "layouts/deepseek_v4_layouts.h"
#include "oracles/compare.h"

#include <iomanip>
#include <iostream>
#include <sstream>

namespace lb {

namespace {

// What the first pass of the check takes from the reference (layouts/choice_verdict.h).
const char* const kV4Choices = "indexer picks and experts";

class DeepseekV4Family : public RunFamily {
 public:
  explicit DeepseekV4Family(const RunFlags& flags);

  Backend backend() const override { return plan_.backend; }
  int ranks() const override { return ranks_; }
  const std::vector<RunLayout>& layouts() const override { return layouts_; }
  const TokenBatch& batch() const override { return plan_.batch; }
  torch::ScalarType dtype() const override { return torch::kFloat32; }
  int64_t num_layers() const override { return plan_.model.config.num_layers; }
  std::optional<double> prefill_flops() const override { return std::nullopt; }  // not counted for V4
  std::optional<int64_t> decode_positions() const override { return std::nullopt; }  // no cache

  nlohmann::json record(const std::string& subcommand, const std::vector<std::string>& argv,
                        const std::string& device) const override;
  std::string check_summary() const override;
  std::string bench_header(const std::string& device, int repeats) const override;
  std::unique_ptr<RankCheck> start_check(RankContext& ctx, std::chrono::steady_clock::time_point start) const override;
  std::unique_ptr<RankBench> start_bench(RankContext& ctx) const override;

  const V4Model& model() const { return plan_.model; }
  const std::vector<V4LayoutChoice>& choices() const { return plan_.layouts; }
  double threshold() const { return threshold_; }
  Mutation mutation() const { return mutation_; }
  const std::string& mutation_name() const { return mutation_name_; }

 private:
  V4RunPlan plan_;
  int ranks_ = 0;
  std::vector<RunLayout> layouts_;
  double threshold_ = 0;
  Mutation mutation_ = Mutation::None;
  std::string mutation_name_;
};

// Every rank holds all the weights, so each computes the reference for its own rows' comparison.
class DeepseekV4Check : public RankCheck {
 public:
  DeepseekV4Check(const DeepseekV4Family& family, RankContext& ctx, std::chrono::steady_clock::time_point start)
      : family_(family), ctx_(ctx), config_(family.model().config) {
    torch::NoGradGuard no_grad;
    weights_ = family.model().weights(ctx.device());
    ids_ = family.batch().ids.to(ctx.device());
    ctx.quiesce();
    const auto t_ref = std::chrono::steady_clock::now();
    reference_ = deepseek_v4_forward(config_, weights_, ids_, &choices_);
    synchronize(ctx.device());
    if (ctx.rank() == 0) {
      reference_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_ref).count();
      std::cout << "weights and reference ready at " << std::fixed << std::setprecision(1) << seconds_since(start)
                << " s\n" << std::flush;
    }
    for (int64_t l = 0; l < config_.num_layers; ++l) outputs_.push_back("layer " + std::to_string(l));
    outputs_.push_back("final_norm");
    outputs_.push_back("logits");
  }

  CheckedLayout check(size_t i) override {
    torch::NoGradGuard no_grad;
    const V4LayoutChoice& l = family_.choices().at(i);
    Communicator& world = ctx_.world();
    // On the reference's choices: the continuous math, judged at the threshold.
    std::vector<OutputVerdict> on_reference = compare(
        deepseek_v4_forward_layout(config_, weights_, ids_, ctx_, l.layout, family_.mutation(), &choices_));
    ctx_.quiesce();
    // On its own choices, timed.
    world.barrier();
    world.clear_records();
    world.set_timing(true);
    const auto t0 = std::chrono::steady_clock::now();
    const DeepseekV4LayoutOutput own =
        deepseek_v4_forward_layout(config_, weights_, ids_, ctx_, l.layout, family_.mutation());
    synchronize(ctx_.device());
    const double layout_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    world.set_timing(false);
    const std::vector<CollectiveRecord> records = world.records();
    const int64_t rows_per_rank = own.tokens.size(0);
    std::vector<OutputVerdict> on_own = compare(own);
    CheckedLayout out;
    if (ctx_.rank() != 0) return out;
    const ChoiceVerdict v = two_pass_verdict(std::move(on_reference), std::move(on_own));
    const double threshold = family_.threshold();
    std::ostringstream text;
    text << "layout " << l.name << (l.replaces.empty() ? "" : " (replaces " + l.replaces + ")")
         << ": deepseek_v4 " << to_string(l.layout) << ", " << rows_per_rank << " rows per rank\n"
         << format_choice_verdict(v, threshold, kV4Choices) << std::fixed << std::setprecision(2)
         << "  layers and head took " << layout_ms << " ms on rank 0 (each collective timed), " << records.size()
         << " collectives\n";
    out.pass = v.pass;
    out.text = text.str();
    out.record = to_json(v, config_.num_layers, threshold, kV4Choices);
    out.record.update({{"layout", l.name},
                       {"v4_layout", to_string(l.layout)},
                       {"replaces", l.replaces},
                       {"rows_per_rank", rows_per_rank},
                       {"layout_ms", layout_ms},
                       {"collectives", summarize_collectives(records)}});
    return out;
  }

  nlohmann::json record_fields() const override {
    nlohmann::json j = {{"threshold", family_.threshold()}, {"reference_ms", reference_ms_}};
    if (family_.mutation() != Mutation::None) j["mutation"] = family_.mutation_name();
    return j;
  }

 private:
  // The comparison points: every layer's residual streams, the final norm and the logits.
  std::vector<OutputVerdict> compare(const DeepseekV4LayoutOutput& out) {
    std::vector<torch::Tensor> actual = out.layers, reference = reference_.layers;
    actual.push_back(out.final_norm);
    reference.push_back(reference_.final_norm);
    actual.push_back(out.logits);
    reference.push_back(reference_.logits);
    return compare_rows(ctx_.world(), outputs_, actual, reference, out.tokens, family_.threshold());
  }

  const DeepseekV4Family& family_;
  RankContext& ctx_;
  const DeepseekV4Config& config_;
  std::map<std::string, torch::Tensor> weights_;
  torch::Tensor ids_;
  DeepseekV4Choices choices_;
  DeepseekV4Output reference_;
  double reference_ms_ = 0;
  std::vector<std::string> outputs_;
};

// bench times the decoder layers, as for the other families.
class DeepseekV4Bench : public RankBench {
 public:
  DeepseekV4Bench(const DeepseekV4Family& family, RankContext& ctx)
      : family_(family),
        ctx_(ctx),
        weights_(family.model().weights(ctx.device())),
        ids_(family.batch().ids.to(ctx.device())) {}

  void prefill(size_t i) override {
    deepseek_v4_layers_layout(family_.model().config, weights_, ids_, ctx_, family_.choices().at(i).layout);
  }
  std::vector<Communicator*> communicators(size_t) const override { return {&ctx_.world()}; }

 private:
  const DeepseekV4Family& family_;
  RankContext& ctx_;
  std::map<std::string, torch::Tensor> weights_;
  torch::Tensor ids_;
};

// Every input is checked before any rank starts.
DeepseekV4Family::DeepseekV4Family(const RunFlags& flags) {
  plan_ = plan_v4_run(flags);
  ranks_ = flags.ranks;
  for (const V4LayoutChoice& l : plan_.layouts)
    layouts_.push_back({l.name, l.replaces, {{"v4_layout", to_string(l.layout)}}});
  threshold_ = flags.max_rel_l2 > 0 ? flags.max_rel_l2 : kFp32MaxRelL2;
  mutation_ = find_mutation(flags.mutation);
  mutation_name_ = flags.mutation;
}

nlohmann::json DeepseekV4Family::record(const std::string& subcommand, const std::vector<std::string>& argv,
                                        const std::string& device) const {
  nlohmann::json record = v4_run_record(subcommand, argv, device, plan_.model, to_string(plan_.backend), ranks_,
                                        plan_.tokens);
  if (subcommand == "bench") record["kernels"] = "reference";
  return record;
}

std::string DeepseekV4Family::check_summary() const {
  return "deepseek_v4, " + std::to_string(plan_.model.config.num_layers) + " layers, " +
         std::to_string(plan_.tokens) + " tokens, f32";
}

std::string DeepseekV4Family::bench_header(const std::string& device, int repeats) const {
  return plan_.model.name + " (deepseek_v4), " + std::to_string(plan_.model.config.num_layers) + " layers, " +
         std::to_string(plan_.tokens) + " prefill tokens, f32, " + std::to_string(ranks_) + " ranks on " +
         device + " (medians of " + std::to_string(repeats) +
         ", layouts interleaved; prefill only: V4 has no cache here)";
}

std::unique_ptr<RankCheck> DeepseekV4Family::start_check(RankContext& ctx,
                                                         std::chrono::steady_clock::time_point start) const {
  return std::make_unique<DeepseekV4Check>(*this, ctx, start);
}

std::unique_ptr<RankBench> DeepseekV4Family::start_bench(RankContext& ctx) const {
  return std::make_unique<DeepseekV4Bench>(*this, ctx);
}

}  // namespace

std::unique_ptr<RunFamily> open_deepseek_v4_family(const RunFlags& flags) {
  return std::make_unique<DeepseekV4Family>(flags);
}

}  // namespace lb
