#include "harness/cli/cmd_bench.h"

#include "harness/cli/batch_limits.h"
#include "harness/cli/flag_checks.h"
#include "harness/bench/bench_collectives.h"
#include "harness/cli/deepseek_v4_run.h"
#include "datasets/token_input.h"
#include "harness/runtime/device.h"
#include "harness/bench/device_peaks.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"
#include "harness/runtime/launch.h"
#include "harness/cli/layout_selection.h"
#include "harness/model/model_flops.h"
#include "harness/runtime/timing.h"
#include "kernels/fused_moe.h"
#include "layouts/generation.h"
#include "reports/run_record.h"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <stdexcept>

namespace lb {

namespace {

struct BenchArgs {
  std::string model;
  std::string layout;
  std::string backend;
  int ranks = 0;
  ParallelFlags parallel;
  int64_t layers = 0;
  int64_t tokens = 0;
  std::string lengths = "2048,2048,2048,2048";
  std::string decode_batch = "1,8,32";
  int64_t decode_context = 512;
  int decode_steps = 8;
  std::string dtype;
  std::string kernels = "reference";
  int repeats = 5;
  uint64_t seed = 0;
  int timeout_s = 600;
  std::string json;
  CLI::App* sub = nullptr;
};

// One layout's numbers (rank 0's clock; every step ends with a device wait and a barrier).
struct LayoutBench {
  std::vector<double> prefill_ms;
  std::map<int64_t, std::vector<double>> decode_step_ms;  // batch -> per-step times
  std::vector<CollectiveRecord> prefill_records;          // one prefill with per-call timing
  std::map<int64_t, std::vector<CollectiveRecord>> decode_records;
};

int run_bench(const BenchArgs& a, const std::vector<std::string>& argv) {
  if (is_deepseek_v4_model(a.model)) {
    V4RunArgs v4;
    v4.model = a.model, v4.layout = a.layout, v4.backend = a.backend, v4.ranks = a.ranks;
    v4.layers = a.layers, v4.tokens = a.tokens, v4.seed = a.seed;
    v4.repeats = a.repeats;
    v4.timeout_s = a.timeout_s;
    v4.json = a.json;
    apply_v4_flags(*a.sub, a.lengths, v4);
    return run_bench_deepseek_v4(v4, argv);
  }
  ModelConfig config = load_model_config(a.model);
  keep_first_layers(config, a.layers);
  const Backend backend = parse_backend(a.backend);
  const torch::Device rank_device = backend == Backend::Nccl ? torch::Device(torch::kCUDA, 0) : torch::kCPU;
  const torch::ScalarType dtype =
      parse_model_dtype(a.dtype.empty() ? default_dtype(backend) : a.dtype, rank_device, /*collectives=*/true);
  const bool fused = parse_fused_kernels(a.kernels);
  if (a.ranks < 1) throw InputError("--ranks/--gpus must be >= 1");
  if (a.repeats < 1) throw InputError("--repeats must be >= 1");
  if (a.decode_steps < 1) throw InputError("--decode-steps must be >= 1");
  if (a.decode_context < 1) throw InputError("--decode-context must be >= 1");
  const std::vector<int64_t> lengths = a.tokens > 0 ? std::vector<int64_t>{a.tokens} : parse_lengths(a.lengths, "--lengths");
  check_batch_fits(lengths, config, dtype, rank_device, a.tokens > 0 ? "--tokens" : "--lengths");
  const TokenBatch batch = random_tokens(lengths, config.vocab, a.seed);
  const std::vector<int64_t> decode_batches = a.decode_batch.empty() || a.decode_batch == "none"
                                                  ? std::vector<int64_t>{}
                                                  : parse_lengths(a.decode_batch, "--decode-batch");
  if (a.decode_context + a.decode_steps + 1 > config.max_position)
    throw InputError("--decode-context " + std::to_string(a.decode_context) + " passes the model's " +
                     std::to_string(config.max_position) + " positions");
  const std::vector<SelectedLayout> layouts = select_layouts(a.layout, a.ranks, config, a.parallel, *a.sub);
  std::unique_ptr<WeightSource> weights = open_weights(config, is_directory(a.model) ? a.model : "", a.seed);

  std::vector<LayoutBench> results(layouts.size());
  std::string device_label;
  DevicePeaks peaks;
  run_ranks(backend, a.ranks, [&](RankContext& ctx) {
    torch::NoGradGuard no_grad;
    const ReferenceOptions options{dtype, ctx.device(), fused};
    if (ctx.rank() == 0) {
      device_label = device_name(ctx.device());
      peaks = measure_peaks(ctx.device(), dtype, 3);  // rank 0's device, before any layout loads
    }
    ctx.quiesce();
    std::vector<std::unique_ptr<LayoutRank>> ranks;
    for (const SelectedLayout& l : layouts) {
      ranks.push_back(std::make_unique<LayoutRank>(ctx, *l.spec, l.parallel, config, *weights, options,
                                                   std::vector<int64_t>{}));
    }
    ctx.quiesce();
    auto set_timing = [&](LayoutRank& r, bool on) {
      for (Communicator* c : r.communicators()) c->set_timing(on), c->clear_records();
    };
    auto records = [&](LayoutRank& r) {
      std::vector<CollectiveRecord> out;
      for (Communicator* c : r.communicators()) out.insert(out.end(), c->records().begin(), c->records().end());
      return out;
    };
    auto timed = [&](const std::function<void()>& fn) {
      ctx.world().barrier();
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      synchronize(ctx.device());
      ctx.world().barrier();
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    };
    // The token split and placement are planned once, outside the timed prefills (decode, which
    // replans, runs after them).
    for (auto& r : ranks) r->set_batch(batch.seq_lens, std::vector<int64_t>(batch.seq_lens.size(), 0));
    auto prefill = [&](LayoutRank& r) {
      torch::Tensor x = r.embed(batch.ids);
      for (int64_t i = 0; i < config.num_layers; ++i) x = r.layer_forward(i, x);
    };
    // Decode: `b` sequences with decode_context tokens in the cache, then one token each per step.
    auto decode = [&](LayoutRank& r, int64_t b, bool record) {
      LayoutStepModel step(ctx, r, config.num_layers);
      step.start_batch(b);
      step.step(std::vector<std::vector<int64_t>>(b, std::vector<int64_t>(a.decode_context, 1)));
      std::vector<double> ms;
      for (int s = 0; s < a.decode_steps; ++s) {
        if (record && s == a.decode_steps - 1) set_timing(r, true);
        ms.push_back(timed([&] { step.step(std::vector<std::vector<int64_t>>(b, {2})); }));
      }
      return ms;
    };
    for (size_t i = 0; i < layouts.size(); ++i) {  // warm-up, untimed
      set_timing(*ranks[i], false);
      prefill(*ranks[i]);
    }
    // Interleaved: every repeat runs each layout once, so drift hits all alike.
    for (int rep = 0; rep < a.repeats; ++rep)
      for (size_t i = 0; i < layouts.size(); ++i) {
        set_timing(*ranks[i], false);
        const double ms = timed([&] { prefill(*ranks[i]); });
        if (ctx.rank() == 0) results[i].prefill_ms.push_back(ms);
      }
    // Per-collective times: more prefills with each call timed on its own (barrier, device waits),
    // the median per call.
    std::vector<std::vector<std::vector<CollectiveRecord>>> timed_calls(layouts.size());
    for (int rep = 0; rep < a.repeats; ++rep)
      for (size_t i = 0; i < layouts.size(); ++i) {
        set_timing(*ranks[i], true);
        prefill(*ranks[i]);
        timed_calls[i].push_back(records(*ranks[i]));
      }
    if (ctx.rank() == 0)
      for (size_t i = 0; i < layouts.size(); ++i) results[i].prefill_records = median_records(timed_calls[i]);
    for (int64_t b : decode_batches)
      for (size_t i = 0; i < layouts.size(); ++i) {
        set_timing(*ranks[i], false);
        std::vector<double> ms = decode(*ranks[i], b, /*record=*/true);
        if (ctx.rank() == 0) {
          ms.pop_back();  // the last step ran with per-call timing
          results[i].decode_step_ms[b] = ms;
          results[i].decode_records[b] = records(*ranks[i]);
        }
      }
    ctx.quiesce();  // nothing in flight while the layouts free their weights and communicators
  }, std::chrono::seconds(a.timeout_s));
  if (results.empty() || results[0].prefill_ms.empty()) return 0;  // not rank 0 of an mpirun launch

  const int64_t tokens = batch.ids.size(0);
  // Achieved TFLOP/s: the prefill's arithmetic (harness/model/model_flops.h) over its time, per GPU.
  const double flops = prefill_flops(config, batch.seq_lens);
  std::cout << config.name << ", " << config.num_layers << " layers, " << tokens << " prefill tokens, "
            << dtype_name(dtype) << ", kernels " << a.kernels << ", " << a.ranks << " ranks on " << device_label
            << " (medians of " << a.repeats << ", layouts interleaved)\n";
  nlohmann::json record = run_record("bench", argv, device_label);
  record["model"] = config.to_json();
  record["weights"] = weights->describe();
  record["backend"] = to_string(backend);
  record["ranks"] = a.ranks;
  record["dtype"] = dtype_name(dtype);
  record["kernels"] = a.kernels;
  record["seq_lens"] = batch.seq_lens;
  record["decode_context"] = a.decode_context;
  record["prefill_flops"] = flops;
  record["peak_matmul_tflops"] = peaks.matmul_tflops;
  record["peak_copy_gbps"] = peaks.copy_gbps;
  nlohmann::json out = nlohmann::json::array();
  std::map<std::string, double> prefill_of;
  std::map<std::string, nlohmann::json> collectives_of;
  std::map<std::string, std::map<int64_t, double>> decode_of;
  for (size_t i = 0; i < layouts.size(); ++i) {
    const LayoutBench& r = results[i];
    const std::string& name = layouts[i].spec->name;
    const double pms = median(r.prefill_ms);
    prefill_of[name] = pms;
    collectives_of[name] = summarize_collectives(r.prefill_records);
    std::cout << "  " << std::left << std::setw(16) << name << std::right << std::fixed << std::setprecision(2)
              << " prefill " << std::setw(9) << pms << " ms = " << std::setprecision(0) << std::setw(8)
              << tokens / (pms / 1000) << " tok/s, " << std::setprecision(1)
              << flops / (pms * 1e-3) / a.ranks / 1e12 << " TFLOP/s per rank (" << std::setprecision(0)
              << 100 * flops / (pms * 1e-3) / a.ranks / 1e12 / peaks.matmul_tflops << "% of peak); collectives " << std::setprecision(2) << total_ms(r.prefill_records)
              << " ms";
    nlohmann::json decode = nlohmann::json::array();
    for (const auto& [b, ms] : r.decode_step_ms) {
      const double step = median(ms);
      decode_of[name][b] = step;
      std::cout << "; decode b=" << b << " " << step << " ms/step";
      decode.push_back({{"batch", b}, {"step_ms", step}, {"tokens_per_s", b / (step / 1000)},
                        {"collectives", summarize_collectives(r.decode_records.at(b))}});
    }
    std::cout << "\n";
    out.push_back({{"layout", name}, {"replaces", layouts[i].spec->replaces},
                   {"parallel", layouts[i].parallel.to_json()}, {"prefill_ms", pms},
                   {"prefill_ms_all", r.prefill_ms}, {"prefill_tokens_per_s", tokens / (pms / 1000)},
                   {"prefill_tflops_per_rank", flops / (pms * 1e-3) / a.ranks / 1e12},
                   {"prefill_share_of_matmul_peak", flops / (pms * 1e-3) / a.ranks / 1e12 / peaks.matmul_tflops},
                   {"prefill_collectives", collectives_of[name]}, {"decode", decode}});
  }
  // New against the baseline it replaced, where both ran.
  nlohmann::json ratios = nlohmann::json::array();
  for (const SelectedLayout& l : layouts) {
    const std::string& base = l.spec->replaces;
    if (base.empty() || !prefill_of.count(base)) continue;
    nlohmann::json j = {{"layout", l.spec->name}, {"baseline", base},
                        {"prefill_speedup", prefill_of[base] / prefill_of[l.spec->name]}};
    std::cout << "  " << l.spec->name << " vs " << base << ": prefill " << std::setprecision(3)
              << prefill_of[base] / prefill_of[l.spec->name] << "x";
    j["changed_collectives"] = changed_collectives(collectives_of[l.spec->name], collectives_of[base]);
    std::cout << describe_changed_collectives(j["changed_collectives"]);
    for (const auto& [b, ms] : decode_of[l.spec->name]) {
      const double speedup = decode_of[base][b] / ms;
      j["decode_speedup_b" + std::to_string(b)] = speedup;
      std::cout << ", decode b=" << b << " " << speedup << "x";
    }
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

}  // namespace

std::function<int()> add_bench_command(CLI::App& app, const std::vector<std::string>& argv) {
  auto a = std::make_shared<BenchArgs>();
  a->backend = to_string(default_backend());
  CLI::App* sub = app.add_subcommand("bench", "Layouts side by side (interleaved, one process): prefill tokens/s, "
                                              "decode step latency, time and bytes per collective, new/baseline ratios");
  a->sub = sub;
  sub->add_option("--model", a->model, "Checkpoint directory or preset; DeepSeek-V4 (deepseek-v4-flash, tiny-deepseek-v4, a deepseek_v4 checkpoint) runs its own layouts tp and cp-fused-moe, prefill of one sequence in f32")->required();
  sub->add_option("--layout", a->layout, "Layout names, comma-separated (a layout and its baseline give a ratio), or all")
      ->required();
  sub->add_option("--backend", a->backend, "cpu (CPU ranks) or nccl (one GPU per rank); default nccl in CUDA builds");
  sub->add_option("--ranks,--gpus", a->ranks, "Number of ranks")->required()->check(positive_integer());
  add_parallel_flags(*sub, a->parallel);
  sub->add_option("--layers", a->layers, "Run only the first N decoder layers")->check(positive_integer());
  sub->add_option("--tokens", a->tokens, "Prefill one sequence of N tokens (instead of --lengths)")
      ->check(positive_integer());
  sub->add_option("--lengths", a->lengths, "Prefill sequences of these lengths");
  sub->add_option("--decode-batch", a->decode_batch, "Decode batch sizes, comma-separated, or none");
  sub->add_option("--decode-context", a->decode_context, "Tokens already in each decoding sequence's cache");
  sub->add_option("--decode-steps", a->decode_steps, "Timed decode steps per batch size");
  sub->add_option("--dtype", a->dtype, "f32, bf16 or f16 (default bf16 on GPUs, f32 on CPU ranks)");
  sub->add_option("--kernels", a->kernels, "reference (plain LibTorch) or fused");
  sub->add_option("--repeats", a->repeats,
                  "Timed prefills per layout, and again with each collective timed (medians are reported)")
      ->check(positive_integer());
  sub->add_option("--seed", a->seed, "Seed of the random weights and tokens")->check(seed_value());
  sub->add_option("--timeout", a->timeout_s, "Seconds before a collective that does not finish is an error")
      ->check(positive_integer());
  sub->add_option("--json", a->json, "Write the record")->check(output_file());
  return [a, argv] { return run_bench(*a, argv); };
}

}  // namespace lb
