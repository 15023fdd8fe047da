#include "kernels/fused_moe.h"

#include "harness/errors.h"
#include "kernels/grouped_linear.h"

namespace lb {

torch::Tensor fused_moe_experts(const torch::Tensor& x, const Routing& routing, const ExpertWeights& experts) {
  const int64_t tokens = x.size(0), k = routing.experts.size(1), held = experts.gate.size(0);
  // Pairs whose expert is held elsewhere get key `held`: they sort last and are dropped.
  const torch::Tensor local = (routing.experts - experts.first_expert).reshape({-1});
  const torch::Tensor key = torch::where((local >= 0) & (local < held), local, torch::full_like(local, held));
  const torch::Tensor order = std::get<1>(torch::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  // The one host synchronization: group sizes for the GEMMs.
  const torch::Tensor count_tensor = torch::bincount(key, {}, held + 1).cpu();
  std::vector<int64_t> counts(count_tensor.data_ptr<int64_t>(), count_tensor.data_ptr<int64_t>() + held);
  int64_t rows = 0;
  for (int64_t c : counts) rows += c;

  const torch::Tensor pairs = order.narrow(0, 0, rows);
  const torch::Tensor token_of = torch::div(pairs, k, "floor");
  const torch::Tensor xs = x.index_select(0, token_of);
  const torch::Tensor h = torch::silu(grouped_linear(xs, counts, experts.gate)) * grouped_linear(xs, counts, experts.up);
  const torch::Tensor y = grouped_linear(h, counts, experts.down);
  const torch::Tensor w = routing.weights.reshape({-1}).index_select(0, pairs).to(torch::kFloat32).unsqueeze(1);
  // Each (token, slot) row in its place, then the k slots summed: no atomics, the same order every run.
  torch::Tensor slots = torch::zeros({tokens * k, x.size(1)}, x.options().dtype(torch::kFloat32));
  slots.index_copy_(0, pairs, y.to(torch::kFloat32) * w);
  return slots.view({tokens, k, x.size(1)}).sum(1).to(x.scalar_type());
}

torch::Tensor experts_forward(const torch::Tensor& x, const Routing& routing, const ExpertWeights& experts,
                              bool fused) {
  return fused ? fused_moe_experts(x, routing, experts) : moe_experts(x, routing, experts);
}

bool parse_fused_kernels(const std::string& text) {
  if (text == "reference") return false;
  if (text == "fused") return true;
  throw InputError("--kernels '" + text + "': reference (plain LibTorch, the oracle) or fused");
}

}  // namespace lb
