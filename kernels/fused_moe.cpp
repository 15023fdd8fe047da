#include "kernels/fused_moe.h"

#include "harness/errors.h"
#include "kernels/grouped_linear.h"

#include <algorithm>

namespace lb {

namespace {

// Padding every expert's rows to the largest count lets one strided batched GEMM (torch::bmm) do
// all experts, which beats a grouped GEMM when every expert has work and counts are close, as in
// a long prefill. Past this much padding (or with an idle expert) the grouped GEMM wins.
constexpr double kMaxPaddingShare = 1.25;

// SwiGLU experts on rows sorted by expert (counts[e] rows for expert e), each row's routing
// weight `w` applied before the down projection (down is linear, so this equals weighting its
// output, and keeps the combine a plain sum).
torch::Tensor sorted_experts(const torch::Tensor& xs, const torch::Tensor& w, const std::vector<int64_t>& counts,
                             const ExpertWeights& experts) {
  const int64_t rows = xs.size(0), groups = int64_t(counts.size());
  const int64_t most = counts.empty() ? 0 : *std::max_element(counts.begin(), counts.end());
  const bool all_busy = std::none_of(counts.begin(), counts.end(), [](int64_t c) { return c == 0; });
  if (rows > 0 && all_busy && double(most * groups) <= kMaxPaddingShare * double(rows)) {
    // Row i of expert e goes to padded row e * most + (i - first row of e).
    std::vector<int64_t> slot(rows);
    for (int64_t e = 0, r = 0; e < groups; ++e)
      for (int64_t i = 0; i < counts[e]; ++i) slot[r++] = e * most + i;
    const torch::Tensor at = torch::tensor(slot, torch::kInt64).to(xs.device());
    torch::Tensor padded = torch::zeros({groups * most, xs.size(1)}, xs.options()).index_copy_(0, at, xs);
    padded = padded.view({groups, most, xs.size(1)});
    const torch::Tensor w_padded = torch::zeros({groups * most, 1}, w.options()).index_copy_(0, at, w);
    const torch::Tensor h = torch::silu(torch::bmm(padded, experts.gate.transpose(1, 2))) *
                            torch::bmm(padded, experts.up.transpose(1, 2));
    const int64_t inter = h.size(2);
    const torch::Tensor hw = (h.view({groups * most, inter}).to(torch::kFloat32) * w_padded).to(xs.scalar_type());
    const torch::Tensor y = torch::bmm(hw.view({groups, most, inter}), experts.down.transpose(1, 2));
    return y.view({groups * most, -1}).index_select(0, at);
  }
  const torch::Tensor h = torch::silu(grouped_linear(xs, counts, experts.gate)) * grouped_linear(xs, counts, experts.up);
  return grouped_linear((h.to(torch::kFloat32) * w).to(xs.scalar_type()), counts, experts.down);
}

}  // namespace

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
  const torch::Tensor xs = x.index_select(0, torch::div(pairs, k, "floor"));
  const torch::Tensor w = routing.weights.reshape({-1}).index_select(0, pairs).to(torch::kFloat32).unsqueeze(1);
  const torch::Tensor y = sorted_experts(xs, w, counts, experts);
  // Each (token, slot) row back in its place, then the k slots summed in fp32: no atomics, the
  // same order every run.
  torch::Tensor slots;
  if (rows == tokens * k) {
    const torch::Tensor back = torch::empty_like(pairs).scatter_(0, pairs, torch::arange(rows, pairs.options()));
    slots = y.index_select(0, back);
  } else {
    slots = torch::zeros({tokens * k, x.size(1)}, y.options()).index_copy_(0, pairs, y);
  }
  return slots.view({tokens, k, x.size(1)}).sum(1, /*keepdim=*/false, torch::kFloat32).to(x.scalar_type());
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
