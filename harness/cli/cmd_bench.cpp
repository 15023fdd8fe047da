#include "harness/cli/cmd_bench.h"

#include "harness/bench/bench_collectives.h"
#include "harness/cli/flag_checks.h"
#include "harness/cli/run_family.h"
#include "datasets/token_input.h"
#include "harness/runtime/device.h"
#include "harness/bench/device_peaks.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/host_trace.h"
#include "harness/runtime/timing.h"
#include "kernels/chained_launch.h"
#include "kernels/device_burst.h"
#include "kernels/fused_moe.h"
#include "layouts/generation.h"
#include "reports/record_file.h"
#include "reports/run_record.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace lb {

namespace {

struct BenchArgs {
  RunFlags run;  // what reaches the family
  std::string decode_batch = "1,8,32";
  int64_t decode_context = 512;
  int decode_steps = 8;
  std::string cuda_graphs = "auto";
  int repeats = 5;
  int timeout_s = 600;
  std::string json;
  std::string trace_prefill;  // a folder: one traced prefill per layout
  std::string trace_decode;   // a folder: one traced burst of decode steps per layout and batch
};

// Decode steps timed together (see `decode` in run_bench).
constexpr int kDecodeBurst = 8;

// One layout's numbers (rank 0's clock; every step ends with a device wait and a barrier).
struct LayoutBench {
  std::vector<double> prefill_ms;
  std::vector<double> prefill_in_collectives_ms;  // rank 0's time inside collectives, per timed prefill
  std::map<int64_t, std::vector<double>> decode_step_ms;  // batch -> per-step times (device, held bursts)
  std::map<int64_t, std::vector<double>> decode_step_wall_ms;   // batch -> per-step times (host clock)
  std::map<int64_t, std::vector<double>> decode_step_queue_ms;  // batch -> the host's queueing per step
  std::map<int64_t, bool> decode_held;  // batch -> whether every held burst ran held (else step = wall)
  std::vector<CollectiveRecord> prefill_records;          // one prefill with per-call timing
  std::map<int64_t, std::vector<CollectiveRecord>> decode_records;
  std::map<int64_t, int64_t> decode_read_bytes;  // batch -> bytes rank 0 must read per step
};

struct BenchSummary {
  nlohmann::json layouts, ratios;
};

// The layouts' numbers so far (layouts without a prefill yet are left out) and the new/baseline
// ratios where both ran, with the table on `os`.
BenchSummary summarize(const std::vector<RunLayout>& layouts, const std::vector<LayoutBench>& results, int64_t tokens,
                       const std::optional<double>& flops, const DevicePeaks& peaks, int ranks, std::ostream& os) {
  nlohmann::json out = nlohmann::json::array();
  std::map<std::string, std::vector<double>> prefill_rounds_of;  // each layout's timed prefills, round by round
  std::map<std::string, nlohmann::json> collectives_of;
  std::map<std::string, std::map<int64_t, double>> decode_of;
  for (size_t i = 0; i < layouts.size(); ++i) {
    const LayoutBench& r = results[i];
    if (r.prefill_ms.empty()) continue;
    const std::string& name = layouts[i].name;
    const double pms = median(r.prefill_ms);
    prefill_rounds_of[name] = r.prefill_ms;
    collectives_of[name] = summarize_collectives(r.prefill_records);
    os << "  " << std::left << std::setw(16) << name << std::right << std::fixed << std::setprecision(2)
       << " prefill " << std::setw(9) << pms << " ms = " << std::setprecision(0) << std::setw(8)
       << tokens / (pms / 1000) << " tok/s";
    nlohmann::json j = {{"layout", name}, {"replaces", layouts[i].replaces}, {"prefill_ms", pms},
                        {"prefill_ms_all", r.prefill_ms}, {"prefill_tokens_per_s", tokens / (pms / 1000)},
                        {"prefill_collectives", collectives_of[name]}};
    j.update(layouts[i].fields);
    if (flops) {
      const double tflops = *flops / (pms * 1e-3) / ranks / 1e12;
      os << ", " << std::setprecision(1) << tflops << " TFLOP/s per rank (" << std::setprecision(0)
         << 100 * tflops / peaks.matmul_tflops << "% of peak)";
      j["prefill_tflops_per_rank"] = tflops;
      j["prefill_share_of_matmul_peak"] = tflops / peaks.matmul_tflops;
    }
    os << "; collectives " << std::setprecision(2) << total_ms(r.prefill_records) << " ms";
    if (!r.prefill_in_collectives_ms.empty()) {
      // Rank 0's prefill split: outside any collective (its kernels, and the host's gaps between
      // launches); inside them, the collectives' own time (each timed alone after a barrier) and the
      // rest, waiting for members still computing.
      const double inside = std::min(pms, median(r.prefill_in_collectives_ms));
      const double own = std::min(inside, total_ms(r.prefill_records));
      const double compute = pms - inside, waiting = inside - own;
      j["prefill_time_split"] = {{"compute_ms", compute}, {"communication_ms", own}, {"waiting_ms", waiting},
                                 {"compute_share", compute / pms}, {"communication_share", own / pms},
                                 {"waiting_share", waiting / pms}};
      os << " (time: compute " << std::setprecision(0) << 100 * compute / pms << "%, communication "
         << 100 * own / pms << "%, waiting " << 100 * waiting / pms << "%)" << std::setprecision(2);
    }
    nlohmann::json decode = nlohmann::json::array();
    for (const auto& [b, ms] : r.decode_step_ms) {
      const double step = median(ms), wall = median(r.decode_step_wall_ms.at(b));
      const bool held = r.decode_held.at(b);
      decode_of[name][b] = step;
      // The memory-traffic floor: what rank 0 must read per step at the copy bandwidth measured here.
      const int64_t read = r.decode_read_bytes.at(b);
      const double floor_ms = double(read) / (peaks.copy_gbps * 1e9) * 1e3;
      os << "; decode b=" << b << " " << std::setprecision(3) << step << " ms/step (" << (held ? "device" : "wall")
         << ", wall " << wall << "; " << std::setprecision(0) << 100 * floor_ms / step << "% of the memory floor)"
         << std::setprecision(2);
      decode.push_back({{"batch", b}, {"step_ms", step}, {"step_ms_all", ms},
                        {"step_timing", held ? "device, held bursts" : "wall"}, {"step_ms_wall", wall},
                        {"step_ms_wall_all", r.decode_step_wall_ms.at(b)},
                        {"queue_ms_per_step", median(r.decode_step_queue_ms.at(b))},
                        {"tokens_per_s", b / (step / 1000)}, {"read_bytes_rank0", read}, {"memory_floor_ms", floor_ms},
                        {"share_of_memory_floor", floor_ms / step},
                        {"collectives", summarize_collectives(r.decode_records.at(b))}});
    }
    os << "\n";
    j["decode"] = decode;
    out.push_back(j);
  }
  // New against the baseline it replaced, where both ran.
  nlohmann::json ratios = nlohmann::json::array();
  for (const RunLayout& l : layouts) {
    const std::string& base = l.replaces;
    if (base.empty() || !prefill_rounds_of.count(base) || !prefill_rounds_of.count(l.name)) continue;
    // Per round, not medians over ratios of medians: a round times every layout back to back, and
    // whole rounds drifted 10-20% on 2 H200s (6204bd2), which moved the ratio of medians up to 14%
    // between two runs.
    const double prefill_speedup = median_round_speedup(prefill_rounds_of[base], prefill_rounds_of[l.name]);
    nlohmann::json j = {{"layout", l.name}, {"baseline", base}, {"prefill_speedup", prefill_speedup}};
    os << "  " << l.name << " vs " << base << ": prefill " << std::setprecision(3) << prefill_speedup << "x";
    j["changed_collectives"] = changed_collectives(collectives_of[l.name], collectives_of[base]);
    os << describe_changed_collectives(j["changed_collectives"]);
    for (const auto& [b, ms] : decode_of[l.name]) {
      if (!decode_of[base].count(b)) continue;
      const double speedup = decode_of[base][b] / ms;
      j["decode_speedup_b" + std::to_string(b)] = speedup;
      os << ", decode b=" << b << " " << speedup << "x";
    }
    os << "\n";
    ratios.push_back(j);
  }
  return {out, ratios};
}

int run_bench(const BenchArgs& a, const std::vector<std::string>& argv) {
  if (a.repeats < 1) throw InputError("--repeats must be >= 1");
  // Every input is checked, and every layout planned, before any rank starts.
  const std::unique_ptr<RunFamily> family = open_run_family(a.run);
  const std::vector<RunLayout>& layouts = family->layouts();
  const TokenBatch& batch = family->batch();
  const std::optional<double> flops = family->prefill_flops();
  // Decode steps, in a family with a KV cache.
  std::vector<int64_t> decode_batches;
  if (const std::optional<int64_t> positions = family->decode_positions()) {
    if (a.decode_steps < 1) throw InputError("--decode-steps must be >= 1");
    if (a.decode_context < 1) throw InputError("--decode-context must be >= 1");
    if (a.decode_batch.empty() || a.decode_batch == "none") decode_batches = {};
    else decode_batches = parse_lengths(a.decode_batch, "--decode-batch");
    if (a.decode_context + (2 * a.decode_steps + (a.trace_decode.empty() ? 0 : 1)) * kDecodeBurst + 3 > *positions)
      throw InputError("--decode-context " + std::to_string(a.decode_context) + " passes the model's " +
                       std::to_string(*positions) + " positions");
  }

  for (const auto& [flag, folder] : {std::pair<const char*, std::string>{"--trace-prefill", a.trace_prefill},
                                      {"--trace-decode", a.trace_decode}}) {
    if (folder.empty()) continue;
    std::string why;
    if (!HostTrace::available(&why)) throw InputError(std::string(flag) + ": " + why);
    std::error_code made;
    std::filesystem::create_directories(folder, made);
    if (made) throw InputError(std::string(flag) + " " + folder + ": " + made.message());
  }

  const DecodeOptions decode_options{
      parse_cuda_graphs(a.cuda_graphs, parse_fused_kernels(a.run.kernels), family->backend() == Backend::Nccl)};

  // On disk from here on (an unwritable path fails now), rewritten after the prefills and after every
  // decode batch of every layout: a failure, a timeout or a signal keeps what finished.
  nlohmann::json header = family->record("bench", argv, "");
  if (family->decode_positions()) {
    header["decode_context"] = a.decode_context;
    header["cuda_graphs"] = decode_options.cuda_graphs;
    header["chained_launches"] = parse_fused_kernels(a.run.kernels) && family->backend() == Backend::Nccl &&
                                 chained_launches_on(torch::Device(torch::kCUDA, 0));
    header["decode_burst"] = kDecodeBurst;
  }
  if (flops) header["prefill_flops"] = *flops;  // against the prefill's time: achieved TFLOP/s per GPU
  header["layouts"] = nlohmann::json::array();
  header["ratios"] = nlohmann::json::array();
  RecordFile record(a.json, header);

  std::vector<LayoutBench> results(layouts.size());
  std::string device_label;
  DevicePeaks peaks;
  auto save_so_far = [&] {  // rank 0
    std::ostringstream unprinted;
    const BenchSummary s = summarize(layouts, results, batch.ids.size(0), flops, peaks, family->ranks(), unprinted);
    record.update([&](nlohmann::json& r) {
      r["layouts"] = s.layouts;
      r["ratios"] = s.ratios;
    });
  };
  run_ranks(family->backend(), family->ranks(), [&](RankContext& ctx) {
    torch::NoGradGuard no_grad;
    if (ctx.rank() == 0) {
      device_label = device_name(ctx.device());
      // rank 0's device, before any layout loads; against it, the achieved TFLOP/s
      if (flops || !decode_batches.empty()) peaks = measure_peaks(ctx.device(), family->dtype(), 3);
      record.update([&](nlohmann::json& r) {
        r["device"] = device_label;
        if (flops) r["peak_matmul_tflops"] = peaks.matmul_tflops;
        if (flops || !decode_batches.empty()) r["peak_copy_gbps"] = peaks.copy_gbps;
      });
    }
    ctx.quiesce();
    const std::unique_ptr<RankBench> bench = family->start_bench(ctx);
    ctx.quiesce();
    auto set_timing = [&](size_t i, bool on) {
      for (Communicator* c : bench->communicators(i)) c->set_timing(on), c->clear_records();
    };
    // This rank's time inside the layout's collectives (one after the other on its stream) while
    // spans are on, kept as events that take_spans reads after the timed run waited for the device.
    auto set_spans = [&](size_t i, bool on) {
      for (Communicator* c : bench->communicators(i)) c->set_spans(on);
    };
    auto take_spans = [&](size_t i) {
      double total = 0;
      for (Communicator* c : bench->communicators(i)) total += c->take_span_ms();
      return total;
    };
    auto records = [&](size_t i) {
      std::vector<CollectiveRecord> out;
      for (Communicator* c : bench->communicators(i)) out.insert(out.end(), c->records().begin(), c->records().end());
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
    // `fn` once more under LibTorch's profiler, started and saved to `path` by rank 0: its thread's
    // ops and runtime calls, and every GPU's kernels in this process (the barriers of `timed` keep
    // the other ranks' work inside the span).
    auto traced = [&](const std::string& path, const std::function<void()>& fn) {
      std::optional<HostTrace> trace;
      ctx.world().barrier();
      if (ctx.rank() == 0) trace.emplace();
      timed(fn);
      if (ctx.rank() == 0) trace->save(path);
    };
    // Decode: `b` sequences with decode_context tokens in the cache, then one token each per step
    // (replayed CUDA graphs when on). Steps run back to back in bursts of kDecodeBurst with one wait
    // at the end, as an engine that schedules ahead runs them. Each round times two bursts: one
    // queued behind a closed gate and timed on the device (kernels/device_burst.h: the time per step
    // is the device's, without the host's round trip or its start-up latency), then one timed on
    // the host's clock from the first launch to the last wait (wall; the step time where a burst
    // could not run held). Prompts and step tokens are seeded random ids, different per
    // sequence, so that a batch's rows choose experts as real traffic does (identical rows would all
    // read the same few experts). One more step, eager, times each collective on its own and
    // records the experts the step chose, for the bytes it must read.
    const char* profile_env = std::getenv("LB_PROFILE_DECODE_BATCH");  // one step under `ncu --profile-from-start off`
    const int64_t profile_batch = profile_env ? std::atoll(profile_env) : 0;
    auto decode = [&](size_t i, int64_t b) {
      LayoutRank& r = *bench->decoder(i);
      const int64_t traced_steps = a.trace_decode.empty() ? 0 : kDecodeBurst;
      const int64_t vocab = r.config().vocab, steps = 2 * a.decode_steps * kDecodeBurst + traced_steps + 1;
      const uint64_t seed = a.run.seed * 1000003u + uint64_t(b);
      const TokenBatch prompts = random_tokens(std::vector<int64_t>(size_t(b), a.decode_context), vocab, seed);
      const torch::Tensor step_tokens =
          random_tokens({steps * b}, vocab, seed + 1).ids.view({steps, b}).to(ctx.device());
      LayoutStepModel step(r, ctx.device(), decode_options);
      step.start_batch(b, a.decode_context + steps + 2);
      std::vector<std::vector<int64_t>> prompt_ids;
      const int64_t* id = prompts.ids.data_ptr<int64_t>();
      for (int64_t s = 0; s < b; ++s) prompt_ids.emplace_back(id + s * a.decode_context, id + (s + 1) * a.decode_context);
      step.prefill(prompt_ids);
      std::vector<double> ms, wall_ms, queue_ms;
      bool held = true;
      int64_t next = 0;
      const auto burst = [&] {
        for (int k = 0; k < kDecodeBurst; ++k) step.decode(step_tokens[next++]);
      };
      for (int s = 0; s < a.decode_steps; ++s) {
        ctx.world().barrier();  // before the stream is held: the world's barrier runs on the device
        const BurstTime t = time_held_burst(burst, ctx.device());
        if (t.device_ms) ms.push_back(*t.device_ms / kDecodeBurst);
        held = held && t.device_ms.has_value();
        queue_ms.push_back(t.queue_ms / kDecodeBurst);
        wall_ms.push_back(timed(burst) / kDecodeBurst);
      }
      // One more burst traced: each graphed step's kernels on the device's clock, overlaps
      // included, for scripts/decode_trace_summary.py.
      if (traced_steps > 0)
        traced((std::filesystem::path(a.trace_decode) / ("decode_" + layouts[i].name + "_b" + std::to_string(b) + ".json"))
                   .string(),
               burst);
      if (profile_batch == b) {
        synchronize(ctx.device());
        cuda_profiler_range(true);
        step.decode(step_tokens[next]);
        synchronize(ctx.device());
        cuda_profiler_range(false);
      }
      set_timing(i, true);
      std::vector<LayerCapture> captures;
      torch::Tensor last = step_tokens[next];
      if (decode_rows(decode_options, b) > b)  // the graph's padded rows, as the timed steps ran them
        last = torch::cat({last, torch::zeros({decode_rows(decode_options, b) - b}, last.options())});
      r.decode(last, nullptr, &captures);
      synchronize(ctx.device());
      if (ctx.rank() == 0) {
        results[i].decode_step_ms[b] = held ? ms : wall_ms;
        results[i].decode_step_wall_ms[b] = wall_ms;
        results[i].decode_step_queue_ms[b] = queue_ms;
        results[i].decode_held[b] = held;
        results[i].decode_records[b] = records(i);
        results[i].decode_read_bytes[b] = r.decode_read_bytes(captures);
      }
      set_timing(i, false);
    };
    for (size_t i = 0; i < layouts.size(); ++i) {  // warm-up, untimed
      set_timing(i, false);
      bench->prefill(i);
    }
    // Interleaved: every repeat runs each layout once, so drift hits all alike.
    for (int rep = 0; rep < a.repeats; ++rep)
      for (size_t i = 0; i < layouts.size(); ++i) {
        set_timing(i, false);
        const double ms = timed([&] {
          set_spans(i, true);
          bench->prefill(i);
          set_spans(i, false);  // before timed's closing barrier
        });
        const double in_collectives = take_spans(i);
        if (ctx.rank() == 0) results[i].prefill_ms.push_back(ms), results[i].prefill_in_collectives_ms.push_back(in_collectives);
      }
    // One more prefill of the layout LB_PROFILE_PREFILL names, between cudaProfilerStart and Stop on
    // rank 0 (a process-wide capture range for `nsys profile --capture-range=cudaProfilerApi`):
    // every rank's kernels and NCCL calls of one prefill, for scripts/nsys_prefill_summary.py.
    const char* profile_prefill = std::getenv("LB_PROFILE_PREFILL");
    for (size_t i = 0; profile_prefill && i < layouts.size(); ++i) {
      if (layouts[i].name != profile_prefill) continue;
      set_timing(i, false);
      if (ctx.rank() == 0) cuda_profiler_range(true);
      timed([&] { bench->prefill(i); });  // ends with every rank's device done and a barrier
      if (ctx.rank() == 0) cuda_profiler_range(false);
    }
    // One more prefill of every layout traced.
    for (size_t i = 0; !a.trace_prefill.empty() && i < layouts.size(); ++i) {
      set_timing(i, false);
      traced((std::filesystem::path(a.trace_prefill) / ("prefill_" + layouts[i].name + ".json")).string(),
             [&] { bench->prefill(i); });
    }
    // Per-collective times: more prefills with each call timed on its own (barrier, device waits),
    // the median per call.
    std::vector<std::vector<std::vector<CollectiveRecord>>> timed_calls(layouts.size());
    for (int rep = 0; rep < a.repeats; ++rep)
      for (size_t i = 0; i < layouts.size(); ++i) {
        set_timing(i, true);
        bench->prefill(i);
        timed_calls[i].push_back(records(i));
      }
    if (ctx.rank() == 0) {
      for (size_t i = 0; i < layouts.size(); ++i) results[i].prefill_records = median_records(timed_calls[i]);
      save_so_far();
    }
    for (int64_t b : decode_batches)
      for (size_t i = 0; i < layouts.size(); ++i) {
        set_timing(i, false);
        decode(i, b);
        if (ctx.rank() == 0) save_so_far();
      }
    ctx.quiesce();  // nothing in flight while the layouts free their weights and communicators
  }, std::chrono::seconds(a.timeout_s));
  if (results.empty() || results[0].prefill_ms.empty()) return 0;  // not rank 0 of an mpirun launch

  std::cout << family->bench_header(device_label, a.repeats) << "\n";
  const BenchSummary summary = summarize(layouts, results, batch.ids.size(0), flops, peaks, family->ranks(), std::cout);
  record.update([&](nlohmann::json& r) {
    r["layouts"] = summary.layouts;
    r["ratios"] = summary.ratios;
  });
  record.finish();
  if (record.writes()) std::cout << "record written to " << a.json << "\n";
  return 0;
}

}  // namespace

std::function<int()> add_bench_command(CLI::App& app, const std::vector<std::string>& argv) {
  auto a = std::make_shared<BenchArgs>();
  RunFlags& run = a->run;
  run.subcommand = "bench";
  run.backend = to_string(default_backend());
  run.lengths = "2048,2048,2048,2048";
  CLI::App* sub = app.add_subcommand("bench", "Layouts side by side (interleaved, one process): prefill tokens/s, "
                                              "decode step latency, time and bytes per collective, new/baseline ratios");
  run.sub = sub;
  sub->add_option("--model", run.model, "Checkpoint directory or preset; DeepSeek-V4 (deepseek-v4-flash, tiny-deepseek-v4, a deepseek_v4 checkpoint) runs its own layouts tp and cp-fused-moe, prefill of one sequence in f32")->required();
  sub->add_option("--layout", run.layout, "Layout names, comma-separated (a layout and its baseline give a ratio), or all")
      ->required();
  sub->add_option("--backend", run.backend, "cpu (CPU ranks) or nccl (one GPU per rank); default nccl in CUDA builds");
  sub->add_option("--ranks,--gpus", run.ranks, "Number of ranks")->required()->check(positive_integer());
  add_parallel_flags(*sub, run.parallel);
  sub->add_option("--layers", run.layers, "Run only the first N decoder layers")->check(positive_integer());
  sub->add_option("--tokens", run.tokens, "Prefill one sequence of N tokens (instead of --lengths)")
      ->check(positive_integer());
  sub->add_option("--lengths", run.lengths, "Prefill sequences of these lengths");
  sub->add_option("--decode-batch", a->decode_batch, "Decode batch sizes, comma-separated, or none");
  sub->add_option("--decode-context", a->decode_context, "Tokens already in each decoding sequence's cache");
  sub->add_option("--decode-steps", a->decode_steps,
                  "Rounds per batch size of two timed bursts of 8 back-to-back decode steps, one held and timed on the "
                  "device, one on the host's clock (the median burst's time per step)");
  sub->add_option("--dtype", run.dtype, "f32, bf16 or f16 (default bf16 on GPUs, f32 on CPU ranks)");
  sub->add_option("--kernels", run.kernels, "reference (plain LibTorch) or fused");
  sub->add_option("--cuda-graphs", a->cuda_graphs,
                  "on, off or auto (default: on with fused kernels on GPUs): each decode step captured once per "
                  "batch bucket and replayed");
  sub->add_option("--repeats", a->repeats,
                  "Timed prefills per layout, and again with each collective timed (medians are reported)")
      ->check(positive_integer());
  sub->add_option("--seed", run.seed, "Seed of the random weights and tokens")->check(seed_value());
  sub->add_option("--timeout", a->timeout_s, "Seconds before a collective that does not finish is an error")
      ->check(positive_integer());
  sub->add_option("--json", a->json, "Write the record")->check(output_file());
  sub->add_option("--trace-prefill", a->trace_prefill,
                  "Folder: one more prefill of each layout traced by LibTorch's profiler (rank 0's host thread, "
                  "every GPU of its process), written as prefill_<layout>.json (Chrome trace; "
                  "scripts/nsys_prefill_summary.py reads it)");
  sub->add_option("--trace-decode", a->trace_decode,
                  "Folder: one more burst of decode steps of each layout and batch traced the same way, written as "
                  "decode_<layout>_b<batch>.json (scripts/decode_trace_summary.py reads it: what each kernel adds "
                  "to a step, overlaps counted once)");
  return [a, argv] { return run_bench(*a, argv); };
}

}  // namespace lb
