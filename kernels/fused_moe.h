#pragma once
// The experts of a MoE layer computed as a serving engine does (the `--kernels fused` path): the
// (token, expert) pairs sorted by expert once, one gathered input, grouped GEMMs for gate, up and
// down with SiLU(gate) * up between them, then each token's k rows weighted and summed in fp32 in
// a fixed order. moe_experts (kernels/moe.h) is the oracle it is tested against.
#include "kernels/moe.h"

namespace lb {

// Same contract as moe_experts: the chosen experts held here (EP range, TP slice) only.
torch::Tensor fused_moe_experts(const torch::Tensor& x, const Routing& routing, const ExpertWeights& experts);

// fused_moe_experts or moe_experts.
torch::Tensor experts_forward(const torch::Tensor& x, const Routing& routing, const ExpertWeights& experts, bool fused);

// `--kernels`: "reference" (the plain LibTorch oracle path) -> false, "fused" -> true; InputError otherwise.
bool parse_fused_kernels(const std::string& text);

}  // namespace lb
