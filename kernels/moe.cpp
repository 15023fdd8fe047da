#include "kernels/moe.h"

#include <limits>

namespace lb {

Routing route_softmax_topk(const torch::Tensor& logits, int64_t k, bool renormalize) {
  torch::Tensor probs = torch::softmax(logits, -1, torch::kFloat32);
  auto [weights, experts] = probs.topk(k, -1);
  if (renormalize) weights = weights / weights.sum(-1, /*keepdim=*/true);
  return {experts, weights};
}

Routing route_sigmoid_grouped(const torch::Tensor& logits, const torch::Tensor& correction_bias, int64_t n_group,
                              int64_t topk_group, int64_t k, bool renormalize, double scale) {
  const int64_t tokens = logits.size(0), num_experts = logits.size(1);
  torch::Tensor scores = logits.to(torch::kFloat32).sigmoid();
  torch::Tensor biased = scores + correction_bias.to(torch::kFloat32);
  torch::Tensor group_scores =
      std::get<0>(biased.view({tokens, n_group, num_experts / n_group}).topk(2, -1)).sum(-1);
  torch::Tensor groups = std::get<1>(group_scores.topk(topk_group, -1, /*largest=*/true, /*sorted=*/false));
  torch::Tensor group_mask = torch::zeros_like(group_scores).scatter_(1, groups, 1.0);
  torch::Tensor expert_mask =
      group_mask.unsqueeze(-1).expand({tokens, n_group, num_experts / n_group}).reshape({tokens, num_experts});
  biased = biased.masked_fill(expert_mask == 0, -std::numeric_limits<float>::infinity());
  torch::Tensor experts = std::get<1>(biased.topk(k, -1, /*largest=*/true, /*sorted=*/false));
  torch::Tensor weights = scores.gather(1, experts);
  if (renormalize) weights = weights / (weights.sum(-1, /*keepdim=*/true) + 1e-20);
  return {experts, weights * scale};
}

torch::Tensor swiglu_mlp(const torch::Tensor& x, const torch::Tensor& gate, const torch::Tensor& up,
                         const torch::Tensor& down) {
  return torch::linear(torch::silu(torch::linear(x, gate)) * torch::linear(x, up), down);
}

ExpertWeights stack_experts(const torch::Tensor& gate, const torch::Tensor& up, const torch::Tensor& down,
                            int64_t first_expert) {
  const torch::Tensor gate_up = torch::cat({gate, up}, 1);
  const int64_t inter = gate.size(1);
  return {gate_up.narrow(1, 0, inter), gate_up.narrow(1, inter, inter), down.contiguous(), first_expert, gate_up};
}

torch::Tensor moe_experts(const torch::Tensor& x, const Routing& routing, const ExpertWeights& experts) {
  const int64_t held = experts.gate.size(0);
  torch::Tensor out = torch::zeros({x.size(0), x.size(1)}, x.options().dtype(torch::kFloat32));
  torch::Tensor local = routing.experts - experts.first_expert;
  // Count tokens per held expert once, on the host, to skip experts nobody chose.
  torch::Tensor in_range = (local >= 0) & (local < held);
  torch::Tensor counts = torch::bincount(local.masked_select(in_range), {}, held).cpu();
  auto count = counts.accessor<int64_t, 1>();
  for (int64_t e = 0; e < held; ++e) {
    if (count[e] == 0) continue;
    torch::Tensor hit = (local == e).nonzero();  // [n, 2]: token, slot
    torch::Tensor token = hit.select(1, 0), slot = hit.select(1, 1);
    torch::Tensor y = swiglu_mlp(x.index_select(0, token), experts.gate[e], experts.up[e], experts.down[e]);
    torch::Tensor w = routing.weights.index({token, slot}).unsqueeze(1);
    out.index_add_(0, token, y.to(torch::kFloat32) * w);
  }
  return out.to(x.scalar_type());
}

}  // namespace lb
