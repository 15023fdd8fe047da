// `layoutbench check` on DeepSeek-V4 (harness/cli/deepseek_v4_run.h): each layout against the
// single-rank reference on the same weights and tokens, every layer's residual streams, the final
// norm and the logits, over every rank's rows at their original positions. Each layout runs twice:
// on the reference's indexer picks and experts (the verdict on its continuous math), and on its
// own, where a top-k near-tie may flip one way here and the other way in the reference.
#include "datasets/token_input.h"
#include "harness/cli/deepseek_v4_run.h"
#include "harness/runtime/device.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"
#include "harness/runtime/launch.h"
#include "layouts/choice_verdict.h"
#include "oracles/compare.h"
#include "reports/run_record.h"

#include <chrono>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace lb {

namespace {

const char* const kV4Choices = "indexer picks and experts";

struct V4LayoutCheck {
  V4LayoutChoice layout;
  ChoiceVerdict verdict;
  double layout_ms = 0;                   // own choices
  std::vector<CollectiveRecord> records;  // rank 0's, own choices
  int64_t rows_per_rank = 0;
};

std::string format(const V4LayoutCheck& c, double threshold) {
  std::ostringstream out;
  out << "layout " << c.layout.name << (c.layout.replaces.empty() ? "" : " (replaces " + c.layout.replaces + ")")
      << ": deepseek_v4 " << to_string(c.layout.layout) << ", " << c.rows_per_rank << " rows per rank\n"
      << format_choice_verdict(c.verdict, threshold, kV4Choices) << std::fixed << std::setprecision(2)
      << "  layers and head took " << c.layout_ms << " ms on rank 0 (each collective timed), " << c.records.size()
      << " collectives\n";
  return out.str();
}

nlohmann::json to_json(const V4LayoutCheck& c, int64_t num_layers, double threshold) {
  nlohmann::json j = to_json(c.verdict, num_layers, threshold, kV4Choices);
  j.update({{"layout", c.layout.name},
            {"v4_layout", to_string(c.layout.layout)},
            {"replaces", c.layout.replaces},
            {"rows_per_rank", c.rows_per_rank},
            {"layout_ms", c.layout_ms},
            {"collectives", summarize_collectives(c.records)}});
  return j;
}

}  // namespace

int run_check_deepseek_v4(const V4RunArgs& a, const std::vector<std::string>& argv) {
  // Every input is checked before any rank starts.
  const V4RunPlan plan = plan_v4_run(a);
  const V4Model& model = plan.model;
  const DeepseekV4Config& config = model.config;
  const Backend backend = plan.backend;
  const int64_t tokens = plan.tokens;
  const std::vector<V4LayoutChoice>& layouts = plan.layouts;
  const TokenBatch& batch = plan.batch;
  const Mutation mutation = find_mutation(a.mutation);
  const double threshold = a.max_rel_l2 > 0 ? a.max_rel_l2 : kFp32MaxRelL2;
  std::vector<std::string> output_names;
  for (int64_t l = 0; l < config.num_layers; ++l) output_names.push_back("layer " + std::to_string(l));
  output_names.push_back("final_norm");
  output_names.push_back("logits");

  std::vector<V4LayoutCheck> results;
  std::string device_label;
  double reference_ms = 0;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed_s = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  run_ranks(backend, a.ranks, [&](RankContext& ctx) {
    torch::NoGradGuard no_grad;
    const std::map<std::string, torch::Tensor> weights = model.weights(ctx.device());
    const torch::Tensor ids = batch.ids.to(ctx.device());
    // Every rank holds all the weights, so each computes the reference for its own rows' comparison.
    ctx.quiesce();
    const auto t_ref = std::chrono::steady_clock::now();
    DeepseekV4Choices choices;
    const DeepseekV4Output reference = deepseek_v4_forward(config, weights, ids, &choices);
    synchronize(ctx.device());
    if (ctx.rank() == 0) {
      device_label = device_name(ctx.device());
      reference_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_ref).count();
      std::cout << "weights and reference ready at " << std::fixed << std::setprecision(1) << elapsed_s() << " s\n"
                << std::flush;
    }
    ctx.quiesce();
    Communicator& world = ctx.world();
    // One layout run compared with the reference at every layer, the final norm and the logits.
    auto compare = [&](const DeepseekV4LayoutOutput& out) {
      std::vector<torch::Tensor> actual = out.layers, ref = reference.layers;
      actual.push_back(out.final_norm);
      ref.push_back(reference.final_norm);
      actual.push_back(out.logits);
      ref.push_back(reference.logits);
      return compare_rows(world, output_names, actual, ref, out.tokens, threshold);
    };
    for (const V4LayoutChoice& l : layouts) {
      V4LayoutCheck c{l, {}, 0, {}, 0};
      // On the reference's choices: the continuous math, judged at the fp32 threshold.
      std::vector<OutputVerdict> on_reference =
          compare(deepseek_v4_forward_layout(config, weights, ids, ctx, l.layout, mutation, &choices));
      ctx.quiesce();
      // On its own choices, timed.
      world.barrier();
      world.clear_records();
      world.set_timing(true);
      const auto t0 = std::chrono::steady_clock::now();
      const DeepseekV4LayoutOutput own = deepseek_v4_forward_layout(config, weights, ids, ctx, l.layout, mutation);
      synchronize(ctx.device());
      c.layout_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      world.set_timing(false);
      c.records = world.records();
      c.rows_per_rank = own.tokens.size(0);
      std::vector<OutputVerdict> on_own = compare(own);
      if (ctx.rank() == 0) {
        c.verdict = two_pass_verdict(std::move(on_reference), std::move(on_own));
        std::cout << format(c, threshold) << "  done at " << std::fixed << std::setprecision(1) << elapsed_s()
                  << " s\n" << std::flush;
        results.push_back(std::move(c));
      }
      ctx.quiesce();
    }
  }, std::chrono::seconds(a.timeout_s));
  if (results.empty()) return 0;  // not rank 0 of an mpirun launch

  bool pass = true;
  for (const auto& r : results) pass = pass && r.verdict.pass;
  std::cout << (pass ? "all layouts match the reference" : "DIVERGENCE: see the rows marked above") << " ("
            << results.size() << " layout(s), deepseek_v4, " << config.num_layers << " layers, " << tokens
            << " tokens, f32)\n";
  if (!a.json.empty()) {
    nlohmann::json record = v4_run_record("check", argv, device_label, model, to_string(backend), a.ranks, tokens);
    record["threshold"] = threshold;
    record["reference_ms"] = reference_ms;
    if (mutation != Mutation::None) record["mutation"] = a.mutation;
    record["pass"] = pass;
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : results) j.push_back(to_json(r, config.num_layers, threshold));
    record["layouts"] = j;
    write_json(a.json, record);
    std::cout << "record written to " << a.json << "\n";
  }
  return pass ? 0 : 1;
}

}  // namespace lb
