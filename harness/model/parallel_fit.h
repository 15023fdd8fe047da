#pragma once
// Whether a parallel config fits a model: the rules of harness/runtime/parallel_config.h plus the
// ones that need the model's shapes. They live here, not in the runtime, because the runtime sits
// below model I/O and must not know about models.
#include "harness/model/model_config.h"
#include "harness/runtime/parallel_config.h"

namespace lb {

// Throws InputError naming the first violated rule: the sizes alone first, then experts over EP
// ranks and attention heads over attention TP ranks.
void validate(const ParallelConfig& p, const ModelConfig& model);

}  // namespace lb
