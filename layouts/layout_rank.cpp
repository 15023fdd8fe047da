#include "layouts/layout_rank.h"

#include "harness/errors.h"
#include "kernels/rmsnorm.h"
#include "layouts/shard.h"
#include "oracles/deepseek_v3_layer.h"
#include "oracles/qwen3_moe_layer.h"

#include <set>

namespace lb {

namespace {

TokenPlacement select(const TokenPlacement& all, const torch::Tensor& index) {
  return {all.seq.index_select(0, index), all.pos.index_select(0, index)};
}

std::vector<int> my_group(const std::vector<std::vector<int>>& partition, int rank) {
  for (const auto& g : partition)
    if (std::find(g.begin(), g.end(), rank) != g.end()) return g;
  throw std::logic_error("rank in no group");
}

// Rows of a [T, ...] tensor reshaped to [T, row] for the row-based collectives, and back.
torch::Tensor as_rows(const torch::Tensor& t) { return t.reshape({t.size(0), -1}).contiguous(); }

}  // namespace

LayoutRank::LayoutRank(RankContext& ctx, const LayoutSpec& layout, const ParallelConfig& parallel,
                       const ModelConfig& config, const WeightSource& weights, ReferenceOptions options,
                       const std::vector<int64_t>& seq_lens)
    : ctx_(ctx), layout_(layout), parallel_(parallel), config_(config), options_(options),
      rope_(make_rope(config)) {
  torch::NoGradGuard no_grad;
  tokens_ = split_tokens(parallel_, layout_.split, seq_lens);
  const torch::Device device = options_.device;
  const TokenPlacement all = packed_placement(seq_lens, device);
  local_ = select(all, tokens_[ctx_.rank()].to(device));

  // Groups are split in one fixed order on every rank (a split is collective).
  const std::set<GroupKind> kinds = {GroupKind::AttnTp, GroupKind::AttnCp, layout_.moe.gather, layout_.moe.reduce,
                                     layout_.dense.gather, layout_.dense.reduce};
  for (GroupKind kind : kinds) {
    const auto partition = group_partition(parallel_, kind);
    members_[kind] = my_group(partition, ctx_.rank());
    if (kind != GroupKind::World) groups_[kind] = ctx_.split(to_string(kind), partition);
  }
  std::vector<torch::Tensor> key_index;
  for (int r : members_[GroupKind::AttnCp]) key_index.push_back(tokens_[r]);
  cp_keys_ = select(all, torch::cat(key_index).to(device));

  const ShardPlan plan = shard_plan(parallel_, ctx_.rank());
  embed_ = weights.load(tensor_spec(config_, "model.embed_tokens.weight"), options_.dtype, device);
  for (int64_t i = 0; i < config_.num_layers; ++i)
    layers_.push_back(shard_layer(config_, load_layer(config_, weights, i, options_.dtype, device), plan));
}

Communicator& LayoutRank::group(GroupKind kind) const {
  if (kind == GroupKind::World) return ctx_.world();
  return *groups_.at(kind);
}

std::vector<int64_t> LayoutRank::rows_of(GroupKind kind) const {
  std::vector<int64_t> rows;
  for (int r : members_.at(kind)) rows.push_back(tokens_[r].size(0));
  return rows;
}

std::vector<Communicator*> LayoutRank::communicators() const {
  std::vector<Communicator*> out = {&ctx_.world()};
  for (const auto& [kind, comm] : groups_) out.push_back(comm.get());
  return out;
}

torch::Tensor LayoutRank::embed(const torch::Tensor& input_ids) const {
  const torch::Tensor mine = input_ids.index_select(0, tokens_[ctx_.rank()]);
  return embed_.index_select(0, mine.to(options_.device));
}

torch::Tensor LayoutRank::mlp_partial(const LayerWeights& w, const torch::Tensor& normed) const {
  return config_.family == ModelFamily::Qwen3Moe ? qwen3_mlp(config_, w, normed) : deepseek_mlp(config_, w, normed);
}

torch::Tensor LayoutRank::attention_partial(const LayerWeights& w, const torch::Tensor& x_normed) const {
  const ModelConfig& c = config_;
  const bool cp = parallel_.attn_cp > 1;
  // A DP rank without requests still takes part in the collectives after attention.
  if (x_normed.size(0) == 0 && !cp) return torch::zeros({0, c.hidden}, x_normed.options());
  Communicator* cp_group = cp ? &group(GroupKind::AttnCp) : nullptr;
  const std::vector<int64_t> cp_rows = rows_of(GroupKind::AttnCp);
  torch::Tensor attn;
  if (c.family == ModelFamily::Qwen3Moe) {
    QkvStates s = qwen3_qkv(c, w, rope_, x_normed, local_.pos);
    torch::Tensor k = s.k, v = s.v;
    if (cp) {
      // Keys and values of every CP rank, rotated with their original positions.
      k = cp_group->all_gatherv(as_rows(k), cp_rows).view({-1, k.size(1), k.size(2)});
      v = cp_group->all_gatherv(as_rows(v), cp_rows).view({-1, v.size(1), v.size(2)});
    }
    attn = causal_attention(s.q, k, v, local_, cp ? cp_keys_ : local_, c.attention_scale());
  } else {
    MlaLatent m = mla_latent(c, w, rope_, x_normed, local_.pos);
    torch::Tensor latent = m.latent, k_pe = m.k_pe;
    if (cp) {
      // MLA under CP gathers the small latent and the shared rotary key, not the expanded keys.
      torch::Tensor both = cp_group->all_gatherv(torch::cat({latent, k_pe}, 1).contiguous(), cp_rows);
      latent = both.narrow(1, 0, c.kv_lora_rank);
      k_pe = both.narrow(1, c.kv_lora_rank, c.qk_rope_head_dim);
    }
    auto [k, v] = mla_expand_kv(c, w, latent, k_pe);
    attn = causal_attention(m.q, k, v, local_, cp ? cp_keys_ : local_, c.attention_scale());
  }
  return torch::linear(attn.flatten(1), w["self_attn.o_proj.weight"]);
}

torch::Tensor LayoutRank::mlp(const MlpStep& step, const LayerWeights& w, const torch::Tensor& x) const {
  auto partial = [&](const torch::Tensor& n) { return mlp_partial(w, n); };
  const torch::Tensor normed = rmsnorm(x, w["post_attention_layernorm.weight"], config_.rms_eps);
  switch (step.comm) {
    case MlpComm::AllReduce: {
      torch::Tensor y = partial(normed).contiguous();
      if (group(step.reduce).size() > 1) group(step.reduce).all_reduce(y);
      return y;
    }
    case MlpComm::GatherReduceScatter: {
      Communicator& g = group(step.gather);
      torch::Tensor y = partial(g.all_gather(normed.contiguous())).contiguous();
      return g.reduce_scatter(y);
    }
    case MlpComm::GatherAllReduce: {
      const std::vector<int64_t> rows = rows_of(step.gather);
      torch::Tensor y = partial(group(step.gather).all_gatherv(normed.contiguous(), rows)).contiguous();
      if (group(step.reduce).size() > 1) group(step.reduce).all_reduce(y);
      const auto& members = members_.at(step.gather);
      int64_t offset = 0;
      for (size_t i = 0; members[i] != ctx_.rank(); ++i) offset += rows[i];
      return y.narrow(0, offset, x.size(0));
    }
    case MlpComm::GatherReduceScatterv: {
      Communicator& g = group(step.gather);
      const std::vector<int64_t> rows = rows_of(step.gather);
      torch::Tensor y = partial(g.all_gatherv(normed.contiguous(), rows)).contiguous();
      return g.reduce_scatterv(y, rows);
    }
    case MlpComm::ScatterReplicated: break;  // handled in layer_forward: it changes the attention output step
  }
  throw std::logic_error("unhandled MLP communication");
}

torch::Tensor LayoutRank::layer_forward(int64_t layer, const torch::Tensor& x) const {
  torch::NoGradGuard no_grad;
  const LayerWeights& w = layers_.at(layer);
  const MlpStep& step = config_.is_moe_layer(layer) ? layout_.moe : layout_.dense;
  torch::Tensor attn = attention_partial(w, rmsnorm(x, w["input_layernorm.weight"], config_.rms_eps)).contiguous();
  Communicator& attn_tp = group(GroupKind::AttnTp);
  if (step.comm == MlpComm::ScatterReplicated && attn_tp.size() > 1) {
    // Each attention TP rank takes a slice of the tokens for the replicated MLP.
    const int n = attn_tp.size();
    std::vector<int64_t> rows(n);
    int64_t offset = 0, mine = 0;
    for (int r = 0; r < n; ++r) {
      rows[r] = x.size(0) / n + (r < x.size(0) % n ? 1 : 0);
      if (r < attn_tp.rank()) offset += rows[r];
    }
    mine = rows[attn_tp.rank()];
    torch::Tensor h = x.narrow(0, offset, mine) + attn_tp.reduce_scatterv(attn, rows);
    torch::Tensor normed = rmsnorm(h, w["post_attention_layernorm.weight"], config_.rms_eps);
    return attn_tp.all_gatherv((h + mlp_partial(w, normed)).contiguous(), rows);
  }
  if (attn_tp.size() > 1) attn_tp.all_reduce(attn);
  torch::Tensor h = x + attn;
  if (step.comm == MlpComm::ScatterReplicated) {  // attention TP 1: the replicated MLP on all rows
    torch::Tensor normed = rmsnorm(h, w["post_attention_layernorm.weight"], config_.rms_eps);
    return h + mlp_partial(w, normed);
  }
  return h + mlp(step, w, h);
}

}  // namespace lb
