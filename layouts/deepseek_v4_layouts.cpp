#include "layouts/deepseek_v4_layouts.h"

#include "harness/runtime/errors.h"
#include "oracles/deepseek_v4_parts.h"

namespace lb {

namespace {

// Throws InputError naming the rule "what % by must be 0" with both values.
void require_divisible(V4Layout layout, const std::string& what, int64_t value, const std::string& by, int64_t n) {
  if (value % n == 0) return;
  throw InputError("deepseek_v4 layout " + to_string(layout) + ": " + what + " % " + by + " must be 0 (" + what + " " +
                   std::to_string(value) + ", " + by + " " + std::to_string(n) + ")");
}

// all_gather stacks the ranks' rows: row r * n + k is rank r's k-th token, which is token k * cp + r.
torch::Tensor round_robin_to_original(const torch::Tensor& gathered, int64_t cp) {
  const int64_t n = gathered.size(0) / cp;
  return gathered.view({cp, n, -1}).transpose(0, 1).reshape({cp * n, -1});
}

DeepseekV4LayoutOutput with_head(const DeepseekV4Config& c, const v4::Weights& w, DeepseekV4LayoutOutput out,
                                 bool head_too) {
  if (!head_too) return out;
  const v4::V4Head head = v4::output_head(c, w, out.layers.back());
  out.final_norm = head.final_norm;
  out.logits = head.logits;
  return out;
}

// Layer l's given choice for the rows at `positions` (none when nothing is given).
v4::Choice given_rows(const DeepseekV4Choices* given, const std::vector<torch::Tensor> DeepseekV4Choices::*which,
                      int64_t layer, const torch::Tensor& positions) {
  if (given == nullptr || !(given->*which)[size_t(layer)].defined()) return {};
  return {(given->*which)[size_t(layer)].index_select(0, positions)};
}

DeepseekV4LayoutOutput tensor_parallel(const DeepseekV4Config& c, const v4::Weights& w, const torch::Tensor& input_ids,
                                       Communicator& tp, bool head_too, const DeepseekV4Choices* given) {
  const v4::V4Shard shard{tp.rank(), tp.size()};
  const torch::Tensor positions = torch::arange(input_ids.size(0), input_ids.options().dtype(torch::kInt64));
  DeepseekV4LayoutOutput out;
  out.tokens = positions;
  torch::Tensor h = v4::embed_streams(c, w, input_ids);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const v4::SublayerInput a = v4::attention_input(c, w, l, h);
    const v4::V4Keys keys = v4::build_keys(c, w, l, v4::key_sources(c, w, l, a.normed, positions));
    torch::Tensor attn =
        v4::attention(c, w, l, a.normed, positions, keys, shard, given_rows(given, &DeepseekV4Choices::index_picks, l, positions))
            .contiguous();
    tp.all_reduce(attn);
    h = v4::remix(a.mix, attn, h);
    const v4::SublayerInput f = v4::moe_input(c, w, l, h);
    torch::Tensor experts =
        v4::moe(c, w, l, f.normed, input_ids, shard, given_rows(given, &DeepseekV4Choices::experts, l, positions))
            .contiguous();
    tp.all_reduce(experts);
    h = v4::remix(f.mix, experts, h);
    out.layers.push_back(h);
  }
  return with_head(c, w, std::move(out), head_too);
}

DeepseekV4LayoutOutput context_parallel_fused_moe(const DeepseekV4Config& c, const v4::Weights& w,
                                                  const torch::Tensor& input_ids, Communicator& cp, Mutation mutation,
                                                  bool head_too, const DeepseekV4Choices* given) {
  const v4::V4Shard shard{cp.rank(), cp.size()};
  DeepseekV4LayoutOutput out;
  // Round-robin split: each rank's tokens spread over the whole sequence, so causal attention
  // costs about the same on every rank. Positions stay the original ones (RoPE, masks).
  out.tokens = torch::arange(cp.rank(), input_ids.size(0), cp.size(), input_ids.options().dtype(torch::kInt64));
  const torch::Tensor& positions = out.tokens;
  const torch::Tensor local_ids = input_ids.index_select(0, positions);
  // Hash routing needs the ids of every token the MoE sees: they travel with the hidden as one
  // more float column (exact below 2^24, checked).
  const torch::Tensor id_column = local_ids.to(torch::kFloat32).unsqueeze(1);
  // The positions of the gathered rows, rank by rank: where given experts are read for the MoE.
  const int64_t T = input_ids.size(0);
  const torch::Tensor gathered_positions = torch::arange(T, positions.options()).view({-1, cp.size()}).t().reshape({T});
  torch::Tensor h = v4::embed_streams(c, w, local_ids);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const v4::SublayerInput a = v4::attention_input(c, w, l, h);
    // Every key (sliding, compressed, indexer) may read any earlier token, so each rank builds
    // them from the whole sequence; what it gathers is per token, so one all_gather suffices.
    torch::Tensor sources = cp.all_gather(v4::key_sources(c, w, l, a.normed, positions).contiguous());
    if (mutation != Mutation::RoundRobinKeysAsContiguous) sources = round_robin_to_original(sources, cp.size());
    const v4::V4Keys keys = v4::build_keys(c, w, l, sources);
    h = v4::remix(a.mix,
                  v4::attention(c, w, l, a.normed, positions, keys, {},
                                given_rows(given, &DeepseekV4Choices::index_picks, l, positions)),
                  h);

    const v4::SublayerInput f = v4::moe_input(c, w, l, h);
    // Gathered rank by rank, so the reduce_scatter hands every rank back its own rows.
    const torch::Tensor gathered = cp.all_gather(torch::cat({f.normed, id_column}, 1));
    torch::Tensor experts = v4::moe(c, w, l, gathered.narrow(1, 0, c.hidden),
                                    gathered.select(1, c.hidden).to(torch::kInt64), shard,
                                    given_rows(given, &DeepseekV4Choices::experts, l, gathered_positions));
    if (mutation == Mutation::ReduceScattervOffByOne) experts = experts.roll(1, 0);
    h = v4::remix(f.mix, cp.reduce_scatter(experts.contiguous()), h);
    out.layers.push_back(h);
  }
  return with_head(c, w, std::move(out), head_too);
}

DeepseekV4LayoutOutput run_layout(const DeepseekV4Config& config, const v4::Weights& weights,
                                  const torch::Tensor& input_ids, RankContext& ctx, V4Layout layout, Mutation mutation,
                                  bool head_too, const DeepseekV4Choices* given) {
  Communicator& world = ctx.world();
  check_deepseek_v4_layout(config, layout, world.size(), input_ids.size(0));
  if (layout == V4Layout::TensorParallel) return tensor_parallel(config, weights, input_ids, world, head_too, given);
  return context_parallel_fused_moe(config, weights, input_ids, world, mutation, head_too, given);
}

}  // namespace

std::string to_string(V4Layout layout) { return layout == V4Layout::TensorParallel ? "tp" : "A"; }

void check_deepseek_v4_layout(const DeepseekV4Config& c, V4Layout layout, int ranks, int64_t tokens) {
  if (ranks < 1) throw InputError("deepseek_v4 layout " + to_string(layout) + ": needs at least one rank");
  if (layout == V4Layout::TensorParallel) {
    require_divisible(layout, "num_heads", c.num_heads, "tp", ranks);
    require_divisible(layout, "o_groups", c.o_groups, "tp", ranks);
    require_divisible(layout, "moe_intermediate", c.moe_intermediate, "tp", ranks);
    return;
  }
  require_divisible(layout, "token count", tokens, "cp", ranks);
  require_divisible(layout, "moe_intermediate", c.moe_intermediate, "cp", ranks);
  if (c.vocab > (int64_t(1) << 24))
    throw InputError("deepseek_v4 layout A: token ids travel as float32, exact only for vocab <= 2^24 (vocab " +
                     std::to_string(c.vocab) + ")");
}

DeepseekV4LayoutOutput deepseek_v4_forward_layout(const DeepseekV4Config& config,
                                                  const std::map<std::string, torch::Tensor>& weights,
                                                  const torch::Tensor& input_ids, RankContext& ctx, V4Layout layout,
                                                  Mutation mutation, const DeepseekV4Choices* given) {
  return run_layout(config, weights, input_ids, ctx, layout, mutation, /*head_too=*/true, given);
}

DeepseekV4LayoutOutput deepseek_v4_layers_layout(const DeepseekV4Config& config,
                                                 const std::map<std::string, torch::Tensor>& weights,
                                                 const torch::Tensor& input_ids, RankContext& ctx, V4Layout layout) {
  return run_layout(config, weights, input_ids, ctx, layout, Mutation::None, /*head_too=*/false, nullptr);
}

}  // namespace lb
