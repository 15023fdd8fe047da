#pragma once
// Qwen3-MoE and DeepSeek-V3 under `check` and `bench` (harness/cli/run_family.h): a checkpoint
// directory or a preset (harness/model/model_config.h), run under the layouts of
// layouts/layouts.cpp by LayoutRank. Its check gathers every layer's output to rank 0 and compares
// it with the reference there (layouts/layout_check.h), per layer and, with --capture op, at every
// capture point; in bf16 the thresholds are calibrated from the measured noise floor. Its layouts
// keep a KV cache, so bench also times decode steps.
#include "harness/cli/run_family.h"

#include <memory>

namespace lb {

// The family, planned: the model, tokens, layouts (each split and sharding checked) and weights,
// and for check the reference dump. InputError on any bad input.
std::unique_ptr<RunFamily> open_layout_spec_family(const RunFlags& flags);

}  // namespace lb
