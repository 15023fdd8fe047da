#pragma once
// A run whose outputs hold NaN or inf has no numbers to report or compare against: `reference`
// would print them and exit 0, and `check` would judge every layout against them. Both stop at
// the first non-finite layer instead, naming it.
#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

namespace lb {

// The index of the first tensor holding NaN or inf, if any.
std::optional<size_t> first_non_finite(const std::vector<torch::Tensor>& tensors);

// Throws std::runtime_error "<who>: layer N's output holds NaN or inf (...)" for the first such
// layer, or names `logits` when only they are non-finite (an undefined `logits` is skipped).
void require_finite_outputs(const std::string& who, const std::vector<torch::Tensor>& layer_outputs,
                            const torch::Tensor& logits = {});

}  // namespace lb
