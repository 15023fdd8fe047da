#pragma once
// DeepSeek-V4 (oracles/deepseek_v4_model.h) run over the ranks of a RankContext's world, on the
// same model steps (oracles/deepseek_v4_parts.h) as the single-rank forward:
//
//   TensorParallel (the baseline "tp"): every rank holds every token. Attention splits the query
//     heads (q_b_proj rows, sinks) and the output groups (o_a_proj blocks, o_b_proj columns); the
//     shared K=V head, the compressor and the indexer are replicated. The routed and shared
//     experts split their intermediate dimension. Both partial outputs are all-reduced.
//   ContextParallelFusedMoe (layout "A" of SGLang PR #24947): rank r of cp holds tokens r, r+cp,
//     r+2cp, ... (original positions kept). Per layer, one all_gather moves every token's key
//     sources (K=V row, compressor and indexer projections), which each rank puts back in
//     original order to build the keys of the whole sequence; queries stay local. The MoE
//     all_gathers the normed hidden (token ids alongside, for hash routing), each rank computes
//     its slice of the experts' intermediate for all tokens, and reduce_scatter returns each rank
//     its own rows.
//
// One sequence, prefill only (no KV or compressor cache), float32 as given. Sizes a layout cannot
// take throw InputError naming the rule.
#include "harness/runtime/rank_context.h"
#include "layouts/mutations.h"
#include "oracles/deepseek_v4_model.h"

#include <map>
#include <string>
#include <vector>

namespace lb {

enum class V4Layout { TensorParallel, ContextParallelFusedMoe };
std::string to_string(V4Layout layout);  // "tp" | "A"

// This rank's rows of the single-rank output (DeepseekV4Output) and their original indices.
struct DeepseekV4LayoutOutput {
  std::vector<torch::Tensor> layers;  // each layer's residual streams [rows, hc_mult, hidden]
  torch::Tensor final_norm;           // [rows, hidden]
  torch::Tensor logits;               // [rows, vocab]
  torch::Tensor tokens;               // int64 [rows]: the rows' positions in input_ids
};

// Throws InputError when `layout` cannot run `tokens` tokens of this model on `ranks` ranks.
void check_deepseek_v4_layout(const DeepseekV4Config& config, V4Layout layout, int ranks, int64_t tokens);

// Collective over ctx.world(): every rank calls it with the same arguments. `input_ids`: int64
// [T], the whole sequence. `mutation` plants a bug for the tests that prove the check can fail
// (RoundRobinKeysAsContiguous, ReduceScattervOffByOne under ContextParallelFusedMoe; others are
// ignored). `given`: the indexer's picks and the experts are taken from it (the reference's, in
// original token order) instead of chosen here.
DeepseekV4LayoutOutput deepseek_v4_forward_layout(const DeepseekV4Config& config,
                                                  const std::map<std::string, torch::Tensor>& weights,
                                                  const torch::Tensor& input_ids, RankContext& ctx, V4Layout layout,
                                                  Mutation mutation = Mutation::None,
                                                  const DeepseekV4Choices* given = nullptr);

// The decoder layers alone (final_norm and logits left empty): the prefill that `bench` times, as it
// does the other layouts' (the head is replicated under both layouts here, not vocabulary-parallel).
DeepseekV4LayoutOutput deepseek_v4_layers_layout(const DeepseekV4Config& config,
                                                 const std::map<std::string, torch::Tensor>& weights,
                                                 const torch::Tensor& input_ids, RankContext& ctx, V4Layout layout);

}  // namespace lb
