#pragma once
// Two run records of the same subcommand, compared: what got worse past a threshold, what got
// better, and what only changed shape (layouts or rows added). `layoutbench diff` exits 1 on a
// regression, so a CI job can hold a new commit's record against a committed one. Rules by
// subcommand: check (a layout or layer that passed and fails, rel_l2 growth, layout time),
// collectives (time, busbw, wrong elements per row), reference (prefill tokens/s), bench (per
// layout prefill tokens/s, time per prefill collective, decode step per batch size; per new layout
// its prefill and decode speedups over its baseline; all by max_slowdown), gsm8k (per run: accuracy
// only when the new 95% interval lies wholly below or above the old one, agreement with the
// reference past max_agreement_drop, decode and prefill tokens/s by max_slowdown, and each question
// whose answer changed: correct -> wrong a regression, the reverse an improvement, else info; 20
// listed per run, the rest counted). A row, layout, batch or run that is gone is a regression; a new
// one is info.
#include "reports/run_record.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lb {

struct DiffThresholds {
  // rel_l2 of a layer may grow by this factor before it is a regression ...
  double max_rel_l2_growth = 2.0;
  // ... and only counts above this floor: fp32 layouts differ from the reference by summation
  // order alone (~1e-7), where a factor of 2 is noise, not a change in the math.
  double rel_l2_floor = 1e-6;
  // Times (layout_ms, time_us, prefill) and rates (tokens/s) may be this fraction worse.
  double max_slowdown = 0.10;
  // busbw of a collectives row may drop by this fraction.
  double max_busbw_drop = 0.10;
  // A gsm8k layout's share of answers identical to the reference's may drop by this much: greedy
  // decoding is deterministic for a given build and device, so any drop is a change of the math
  // (or of a near-tie), and worth a look.
  double max_agreement_drop = 0.0;
};

struct DiffLine {
  std::string subject;  // "layout tp, layer 3", "all_reduce 1048576 B balanced", "prefill"
  std::string change;   // "passed, now fails (rel_l2 1.2e-07 -> 4.0e-03, threshold 1.0e-05)"
};

struct DiffResult {
  std::vector<DiffLine> regressions;
  std::vector<DiffLine> improvements;
  std::vector<DiffLine> info;  // changes that are neither: a new layout, a different command
  bool regressed() const { return !regressions.empty(); }
};

// Whether two records made from different inputs (tokens, seed, ranks, parallel config) may be
// compared: by default they are refused, since their numbers are not the same measurement.
enum class DiffInputs { MustMatch, MayDiffer };

// Throws InputError when the records cannot be compared: a "schema" missing, different or not
// ours, different subcommands, models (compared by content: config without its name, and the
// weights' fingerprint, so one checkpoint at two paths matches), dtypes, or, unless `inputs` is
// MayDiffer, different inputs (then listed under info instead); or when a bench or gsm8k entry that
// is matched across the runs (layout, decode batch, ratio, run, question) lacks its key or shares
// it with another entry. A run that ended with an error,
// an interrupt or before completing is a regression of the new run (an info line of the old).
DiffResult diff_runs(const nlohmann::json& old_run, const nlohmann::json& new_run, const DiffThresholds& t = {},
                     DiffInputs inputs = DiffInputs::MustMatch);

// Why two records are not of the same model ("" when they are): the config without its name, then
// the weights' fingerprint ("weights_id"), or, for random weights, their seed.
std::string model_difference(const nlohmann::json& old_run, const nlohmann::json& new_run);
// The inputs two records differ in (tokens, seq_lens, seed, ranks, backend, parallel, group, and each
// layout's parallel config), one line each; empty when they agree on all they both hold.
std::vector<std::string> input_differences(const nlohmann::json& old_run, const nlohmann::json& new_run);

// "regressions (2):\n  subject: change\n..." then improvements and info; empty sections left out.
std::string format_diff(const DiffResult& d);


}  // namespace lb
