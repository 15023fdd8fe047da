#pragma once
// DeepSeek-V4 under `check` and `bench` (harness/cli/run_family.h): a deepseek_v4 checkpoint
// directory or a preset (oracles/deepseek_v4_presets.h). Its layouts are V4's own
// (layouts/deepseek_v4_layouts.h: "tp", and layout A as "cp-fused-moe") over every rank of the
// run, on one sequence (prefill, no cache), in float32, on CPU ranks or one GPU per rank. Every
// rank holds all the weights and takes its share when it computes. Its check compares every
// layer's residual streams, the final norm and the logits, and takes the two-pass verdict on
// discrete choices (layouts/choice_verdict.h): the indexer's picks and the routed experts.
#include "harness/cli/run_family.h"

#include <memory>

namespace lb {

// The family, planned from V4's inputs (harness/cli/deepseek_v4_run.h). InputError on a flag V4
// does not take (named, with why), several sequences, or any bad input.
std::unique_ptr<RunFamily> open_deepseek_v4_family(const RunFlags& flags);

}  // namespace lb
