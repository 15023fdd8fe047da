#pragma once
// The one interface through which `check` and `bench` run every model family. The commands own
// what all families share: the ranks, the layout loop, the timing and interleaving, the
// collective records, the ratios, the printing and the record. A family supplies what differs:
//   - which flags apply, and the model, weights, tokens and layouts it plans from them before any
//     rank starts (open_run_family: refused flags and bad input are InputError there);
//   - the layer math and what a layout gathers: RankBench runs each layout's prefill on a rank;
//   - the comparison points and their verdict: RankCheck judges each layout on a rank;
//   - the two-pass verdict on discrete choices (layouts/choice_verdict.h): a step of a family's
//     RankCheck, which DeepSeek-V4 takes and any family whose layouts can run on the reference's
//     choices can take.
// Families: the LayoutSpec models, Qwen3-MoE and DeepSeek-V3 (harness/cli/layout_spec_family.h),
// and DeepSeek-V4 with its own layouts (harness/cli/deepseek_v4_family.h).
#include "datasets/token_input.h"
#include "harness/cli/parallel_flags.h"
#include "harness/runtime/communicator.h"
#include "harness/runtime/launch.h"
#include "harness/runtime/rank_context.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lb {

class LayoutRank;

// The flags of `check` and `bench` that reach a family, as given.
struct RunFlags {
  std::string subcommand;  // "check" or "bench"
  std::string model;
  std::string layout;
  std::string backend;
  int ranks = 0;
  ParallelFlags parallel;
  int64_t layers = 0;
  int64_t tokens = 0;
  std::string lengths;
  std::string dtype;  // "": the backend's default
  std::string kernels = "reference";
  uint64_t seed = 0;
  // check only
  double max_rel_l2 = 0;  // 0: the family's default
  std::string capture = "none";
  std::string reference_dump;
  std::string mutation;
  int decode_steps = 0;             // the decode oracle's steps after the prefill
  std::string row_verdicts = "on";  // bf16/f16: every row against its own bound
  const CLI::App* sub = nullptr;  // which flags were given
};

// A layout of the run, as the record and the ratios name it.
struct RunLayout {
  std::string name;
  std::string replaces;   // the baseline it is measured against ("" for a baseline)
  nlohmann::json fields;  // how it runs, for bench's record: {"parallel": ...} or {"v4_layout": ...}
};

// One layout's check as rank 0 holds it.
struct CheckedLayout {
  bool pass = false;
  std::string text;       // the table `check` prints
  nlohmann::json record;  // the layout's entry in the record
};

// A check on one rank: made (collectively, with the reference) by RunFamily::start_check.
class RankCheck {
 public:
  virtual ~RankCheck() = default;
  // Collective over every rank; rank 0's result holds the verdict.
  virtual CheckedLayout check(size_t layout) = 0;
  // What the record keeps of the reference and the thresholds; rank 0, after the layouts.
  virtual nlohmann::json record_fields() const = 0;
};

// Every layout of a bench, built on one rank by RunFamily::start_bench.
class RankBench {
 public:
  virtual ~RankBench() = default;
  // Collective: the decoder layers of the layout over the run's tokens.
  virtual void prefill(size_t layout) = 0;
  // Every communicator the layout uses, for the collective records.
  virtual std::vector<Communicator*> communicators(size_t layout) const = 0;
  // The layout's runner with a KV cache, for the decode steps; nullptr in a family without one.
  virtual LayoutRank* decoder(size_t layout) { return nullptr; }
};

class RunFamily {
 public:
  virtual ~RunFamily() = default;

  // What was planned before any rank starts.
  virtual Backend backend() const = 0;
  virtual int ranks() const = 0;
  virtual const std::vector<RunLayout>& layouts() const = 0;
  virtual const TokenBatch& batch() const = 0;
  virtual torch::ScalarType dtype() const = 0;
  virtual int64_t num_layers() const = 0;  // decoder layers run (after --layers)
  // The prefill's arithmetic (harness/model/model_flops.h), where the family counts it.
  virtual std::optional<double> prefill_flops() const = 0;
  // The positions a decoding sequence may reach; none in a family that does not decode.
  virtual std::optional<int64_t> decode_positions() const = 0;

  // The start of the record: run_record's fields, the model, weights, ranks, dtype and tokens.
  virtual nlohmann::json record(const std::string& subcommand, const std::vector<std::string>& argv,
                                const std::string& device) const = 0;
  // check's summary, inside its parentheses: "2 layers, 128 tokens, f32".
  virtual std::string check_summary() const = 0;
  // bench's first line: the model, tokens, dtype, ranks and device.
  virtual std::string bench_header(const std::string& device, int repeats) const = 0;

  // On every rank, inside run_ranks. `start` is when the command started, for progress lines.
  virtual std::unique_ptr<RankCheck> start_check(RankContext& ctx,
                                                 std::chrono::steady_clock::time_point start) const = 0;
  virtual std::unique_ptr<RankBench> start_bench(RankContext& ctx) const = 0;
};

// The family of `flags.model`, planned: InputError on a flag it does not take or any bad input.
std::unique_ptr<RunFamily> open_run_family(const RunFlags& flags);

// Seconds since `start`.
double seconds_since(std::chrono::steady_clock::time_point start);

}  // namespace lb
