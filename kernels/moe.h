#pragma once
// Mixture-of-experts routing and the SwiGLU experts, as plain LibTorch (the oracle path).
#include <torch/torch.h>

namespace lb {

struct Routing {
  torch::Tensor experts;  // int64 [T, k]
  torch::Tensor weights;  // float32 [T, k]
  torch::Tensor logits = {};  // [T, E] as the router computed them (set by the MLP, for the oracle)
};

// Qwen3-MoE: softmax over all experts in fp32, top-k, optionally renormalized to sum 1.
Routing route_softmax_topk(const torch::Tensor& logits, int64_t k, bool renormalize);

// DeepSeek-V3: sigmoid scores; the correction bias steers selection only; groups ranked by the
// sum of their top-2 biased scores, the best `topk_group` kept, top-k experts among them; weights
// are the unbiased scores (renormalized, plus 1e-20 as transformers) times `scale`.
Routing route_sigmoid_grouped(const torch::Tensor& logits, const torch::Tensor& correction_bias, int64_t n_group,
                              int64_t topk_group, int64_t k, bool renormalize, double scale);

// Experts stacked on dim 0; a shard may hold a slice of every expert's intermediate dimension
// (tensor parallel) or a range of experts starting at `first_expert` (expert parallel).
struct ExpertWeights {
  torch::Tensor gate;  // [E, I, H]
  torch::Tensor up;    // [E, I, H]
  torch::Tensor down;  // [E, H, I]
  int64_t first_expert = 0;
  // [E, 2I, H] whose halves `gate` and `up` are (stack_experts), so that the fused path reads x
  // once for both; undefined when gate and up were made apart.
  torch::Tensor gate_up = {};
};

// Experts whose gate and up live in one gate_up tensor (no more memory than apart).
ExpertWeights stack_experts(const torch::Tensor& gate, const torch::Tensor& up, const torch::Tensor& down,
                            int64_t first_expert = 0);

// sum over the chosen experts held here of weight * down(silu(gate x) * up x), accumulated in
// fp32 and returned in x's dtype. Tokens routed to experts held elsewhere contribute nothing.
torch::Tensor moe_experts(const torch::Tensor& x, const Routing& routing, const ExpertWeights& experts);

// down(silu(gate x) * up x) with weights [I, H], [I, H], [H, I].
torch::Tensor swiglu_mlp(const torch::Tensor& x, const torch::Tensor& gate, const torch::Tensor& up,
                         const torch::Tensor& down);

}  // namespace lb
