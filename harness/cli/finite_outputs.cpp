#include "harness/cli/finite_outputs.h"

#include <stdexcept>

namespace lb {

namespace {

bool all_finite(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

}  // namespace

std::optional<size_t> first_non_finite(const std::vector<torch::Tensor>& tensors) {
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].defined() && !all_finite(tensors[i])) return i;
  return std::nullopt;
}

void require_finite_outputs(const std::string& who, const std::vector<torch::Tensor>& layer_outputs,
                            const torch::Tensor& logits) {
  if (auto layer = first_non_finite(layer_outputs))
    throw std::runtime_error(who + ": layer " + std::to_string(*layer) +
                             "'s output holds NaN or inf (the first such layer; a NaN or huge weight, or an "
                             "overflow in this dtype)");
  if (logits.defined() && !all_finite(logits))
    throw std::runtime_error(who + ": the logits hold NaN or inf (every layer's output is finite: look at the "
                             "final norm and lm_head)");
}

}  // namespace lb
