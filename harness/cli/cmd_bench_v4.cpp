// `layoutbench bench` on DeepSeek-V4 (harness/cli/deepseek_v4_run.h): the layouts' prefill of one
// sequence (the decoder layers, as for the other models) side by side in one process, interleaved,
// with the median time of each collective.
#include "datasets/token_input.h"
#include "harness/bench/bench_collectives.h"
#include "harness/cli/deepseek_v4_run.h"
#include "harness/runtime/device.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"
#include "harness/runtime/launch.h"
#include "reports/run_record.h"
#include "harness/runtime/timing.h"

#include <chrono>
#include <iomanip>
#include <iostream>

namespace lb {

int run_bench_deepseek_v4(const V4RunArgs& a, const std::vector<std::string>& argv) {
  if (a.repeats < 1) throw InputError("--repeats must be >= 1");
  const V4RunPlan plan = plan_v4_run(a);
  const V4Model& model = plan.model;
  const DeepseekV4Config& config = model.config;
  const Backend backend = plan.backend;
  const int64_t tokens = plan.tokens;
  const std::vector<V4LayoutChoice>& layouts = plan.layouts;
  const TokenBatch& batch = plan.batch;

  std::vector<std::vector<double>> prefill_ms(layouts.size());
  std::vector<std::vector<CollectiveRecord>> prefill_records(layouts.size());
  std::string device_label;
  run_ranks(backend, a.ranks, [&](RankContext& ctx) {
    torch::NoGradGuard no_grad;
    const std::map<std::string, torch::Tensor> weights = model.weights(ctx.device());
    const torch::Tensor ids = batch.ids.to(ctx.device());
    if (ctx.rank() == 0) device_label = device_name(ctx.device());
    ctx.quiesce();
    Communicator& world = ctx.world();
    // The layout's collectives go to `calls`, each timed on its own when `time_calls` (the barriers
    // around the prefill are not among them).
    std::vector<CollectiveRecord> calls;
    auto prefill = [&](const V4LayoutChoice& l, bool time_calls) {
      world.barrier();
      world.clear_records();
      world.set_timing(time_calls);
      const auto t0 = std::chrono::steady_clock::now();
      deepseek_v4_layers_layout(config, weights, ids, ctx, l.layout);
      synchronize(ctx.device());
      world.set_timing(false);
      calls = world.records();
      world.barrier();
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    };
    for (const V4LayoutChoice& l : layouts) prefill(l, false);  // warm-up
    // Interleaved: every repeat runs each layout once, so drift hits all alike.
    for (int rep = 0; rep < a.repeats; ++rep)
      for (size_t i = 0; i < layouts.size(); ++i) {
        const double ms = prefill(layouts[i], false);
        if (ctx.rank() == 0) prefill_ms[i].push_back(ms);
      }
    // Per-collective times: more prefills with each call timed on its own, the median per call.
    std::vector<std::vector<std::vector<CollectiveRecord>>> timed_calls(layouts.size());
    for (int rep = 0; rep < a.repeats; ++rep)
      for (size_t i = 0; i < layouts.size(); ++i) {
        prefill(layouts[i], true);
        timed_calls[i].push_back(calls);
      }
    if (ctx.rank() == 0)
      for (size_t i = 0; i < layouts.size(); ++i) prefill_records[i] = median_records(timed_calls[i]);
    ctx.quiesce();  // nothing in flight while the weights are freed
  }, std::chrono::seconds(a.timeout_s));
  if (prefill_ms[0].empty()) return 0;  // not rank 0 of an mpirun launch

  std::cout << model.name << " (deepseek_v4), " << config.num_layers << " layers, " << tokens
            << " prefill tokens, f32, " << a.ranks << " ranks on " << device_label << " (medians of " << a.repeats
            << ", layouts interleaved; prefill only: V4 has no cache here)\n";
  nlohmann::json record = v4_run_record("bench", argv, device_label, model, to_string(backend), a.ranks, tokens);
  record["kernels"] = "reference";
  nlohmann::json out = nlohmann::json::array();
  std::map<std::string, double> prefill_of;
  std::map<std::string, nlohmann::json> collectives_of;
  for (size_t i = 0; i < layouts.size(); ++i) {
    const std::string& name = layouts[i].name;
    const double ms = median(prefill_ms[i]);
    prefill_of[name] = ms;
    collectives_of[name] = summarize_collectives(prefill_records[i]);
    std::cout << "  " << std::left << std::setw(16) << name << std::right << std::fixed << std::setprecision(2)
              << " prefill " << std::setw(9) << ms << " ms = " << std::setprecision(0) << std::setw(8)
              << tokens / (ms / 1000) << " tok/s; collectives " << std::setprecision(2)
              << total_ms(prefill_records[i]) << " ms\n";
    out.push_back({{"layout", name}, {"v4_layout", to_string(layouts[i].layout)}, {"replaces", layouts[i].replaces},
                   {"prefill_ms", ms}, {"prefill_ms_all", prefill_ms[i]},
                   {"prefill_tokens_per_s", tokens / (ms / 1000)}, {"prefill_collectives", collectives_of[name]},
                   {"decode", nlohmann::json::array()}});
  }
  nlohmann::json ratios = nlohmann::json::array();
  for (const V4LayoutChoice& l : layouts) {
    if (l.replaces.empty() || !prefill_of.count(l.replaces)) continue;
    nlohmann::json j = {{"layout", l.name}, {"baseline", l.replaces},
                        {"prefill_speedup", prefill_of[l.replaces] / prefill_of[l.name]},
                        {"changed_collectives", changed_collectives(collectives_of[l.name], collectives_of[l.replaces])}};
    std::cout << "  " << l.name << " vs " << l.replaces << ": prefill " << std::setprecision(3)
              << j["prefill_speedup"].get<double>() << "x";
    std::cout << describe_changed_collectives(j["changed_collectives"]);
    std::cout << "\n";
    ratios.push_back(j);
  }
  record["layouts"] = out;
  record["ratios"] = ratios;
  if (!a.json.empty()) {
    write_json(a.json, record);
    std::cout << "record written to " << a.json << "\n";
  }
  return 0;
}

}  // namespace lb
