#include "kernels/fused_moe.h"

#include "harness/runtime/errors.h"
#include "kernels/grouped_linear.h"
#include "kernels/moe_steps.h"
#include "kernels/moe_slots.h"

#include <algorithm>

namespace lb {

namespace {

// Padding every expert's rows to the largest count lets one strided batched GEMM (torch::bmm) do
// all experts, which beats a grouped GEMM when every expert has work and counts are close, as in
// a long prefill. Past this much padding (or with an idle expert) the grouped GEMM wins.
constexpr double kMaxPaddingShare = 1.25;
// Up to decode_moe_max_pairs (moe_steps.h) each expert's weights are streamed once (or once per
// 64 pairs) by kernels that need no host sync: GEMMs would spend their time on one and on launches.
// Where only the warp-per-row kernels fit (kRowKernelsMaxPairs), a decode batch past that (up to
// 4x, e.g. 256 sequences at top 8, graph buckets 128 and 256) runs them on chunks of tokens: each
// chunk streams the experts it uses again, but nothing waits on the host, so the step can still be
// captured in a CUDA graph.
constexpr int64_t kDecodeMaxChunks = 4;
// Past decode_moe's pairs, where the group sizes do not allow padding, the warpgroup kernels
// (kernels/cuda/moe_wgmma.h) still beat the grouped GEMM up to this many pairs an expert on average
// (H200 at e855ccb: DeepSeek-V3 2048 / 4096 tokens 6.7 / 9.5 ms against 8.7 / 14.2; Qwen3 2048
// tokens 0.65 against 0.62); past it cuBLAS is as fast or faster (Qwen3 4096 tokens 0.86 against
// 0.85, DeepSeek-V3 8192 11.9 against 11.4). The padded batched GEMM beats both where it applies
// (DeepSeek-V3 4096 tokens, 6.9 ms at 72f0ed7). Taking every batch by the warpgroup kernels here,
// after passes of 128 pairs took the pairs as the products' rows, still lost or tied (H200 at
// a0058b6, LB_MOE_PREFER_WGMMA: Qwen3 16384 tokens 2.64-2.76 ms against 2.63-2.69, DeepSeek-V3
// 21.0-21.3 against 20.1-20.5; results/kernels/device_path_ab_a0058b6/).
constexpr double kWgmmaMaxAverage = 128;

// Pairs (token * k + slot) sorted by local expert; pairs whose expert is held elsewhere get key
// `held`, so they sort last.
struct SortedPairs {
  torch::Tensor order;    // pair ids in expert order
  torch::Tensor expert;   // the key of each entry of `order`
  torch::Tensor offsets;  // [held + 1]: expert e's pairs are order[offsets[e] .. offsets[e + 1])
};

SortedPairs sort_pairs(const Routing& routing, int64_t first_expert, int64_t held) {
  const torch::Tensor local = (routing.experts - first_expert).reshape({-1});
  const torch::Tensor key = torch::where((local >= 0) & (local < held), local, torch::full_like(local, held));
  auto [sorted, order] = torch::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  return {order, sorted, torch::searchsorted(sorted, torch::arange(held + 1, key.options()))};
}

torch::Tensor gate_up_of(const ExpertWeights& experts) {
  return experts.gate_up.defined() ? experts.gate_up : torch::cat({experts.gate, experts.up}, 1);
}

// Host-side group sizes (one sync), then the GEMMs: one strided batched GEMM over padded rows; over
// exact ones the warpgroup kernels up to kWgmmaMaxAverage pairs an expert where they run (they
// gather the inputs themselves), else a grouped GEMM (gemm_slots: each sorted pair's row in the
// GEMM input; padding rows repeat token 0 and are never read back).
torch::Tensor gemm_experts(const torch::Tensor& x, const Routing& routing, const torch::Tensor& gate_up,
                           const torch::Tensor& down, const SortedPairs& p) {
  const int64_t tokens = x.size(0), k = routing.experts.size(1), held = down.size(0), hidden = x.size(1);
  const torch::Tensor count_tensor = (p.offsets.narrow(0, 1, held) - p.offsets.narrow(0, 0, held)).cpu();
  const std::vector<int64_t> counts(count_tensor.data_ptr<int64_t>(), count_tensor.data_ptr<int64_t>() + held);
  int64_t rows = 0;
  for (int64_t c : counts) rows += c;
  if (rows == 0) return torch::zeros_like(x);

  const int64_t most = *std::max_element(counts.begin(), counts.end());
  const bool all_busy = std::none_of(counts.begin(), counts.end(), [](int64_t c) { return c == 0; });
  const bool padded = all_busy && double(most * held) <= kMaxPaddingShare * double(rows);
  const GemmSlots slots = gemm_slots(p.order, p.expert, p.offsets, routing.weights, rows, k, padded ? most : 0);
  if (!padded && double(rows) <= kWgmmaMaxAverage * double(held)) {
    const torch::Tensor y = wgmma_expert_rows(x, p.order, p.offsets, routing.weights, gate_up, down, k);
    if (y.defined()) return combine_pairs(y, slots.row_of_pair, tokens, k);
  }

  const torch::Tensor xs = x.index_select(0, slots.token);
  const torch::Tensor h = padded ? torch::bmm(xs.view({held, most, hidden}), gate_up.transpose(1, 2)).view({held * most, -1})
                                 : grouped_linear(xs, counts, gate_up);
  const torch::Tensor act = silu_mul_weight(h, slots.weight);
  const torch::Tensor y = padded ? torch::bmm(act.view({held, most, -1}), down.transpose(1, 2)).view({held * most, hidden})
                                 : grouped_linear(act, counts, down);
  return combine_pairs(y, slots.row_of_pair, tokens, k);
}

}  // namespace

torch::Tensor fused_moe_experts(const torch::Tensor& x, const Routing& routing, const ExpertWeights& experts) {
  const torch::Tensor gate_up = gate_up_of(experts);
  const int64_t k = routing.experts.size(1), pairs = routing.experts.numel();
  const int64_t most = x.is_cuda() ? decode_moe_max_pairs(x, experts.down) : 0;
  if (x.is_cuda() && pairs <= most) {
    const torch::Tensor y = decode_moe(x, routing.experts, routing.weights, gate_up, experts.down, experts.first_expert);
    if (y.defined()) return y;
  } else if (x.is_cuda() && most == kRowKernelsMaxPairs && pairs <= kDecodeMaxChunks * most) {
    const int64_t chunk = most / k;
    std::vector<torch::Tensor> parts;
    for (int64_t first = 0; first < x.size(0); first += chunk) {
      const int64_t n = std::min(chunk, x.size(0) - first);
      parts.push_back(decode_moe(x.narrow(0, first, n), routing.experts.narrow(0, first, n),
                                 routing.weights.narrow(0, first, n), gate_up, experts.down, experts.first_expert));
      if (!parts.back().defined()) break;
    }
    if (parts.back().defined()) return torch::cat(parts);
  }
  return gemm_experts(x, routing, gate_up, experts.down, sort_pairs(routing, experts.first_expert, experts.down.size(0)));
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
