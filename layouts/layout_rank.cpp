#include "layouts/layout_rank.h"

#include <ATen/record_function.h>

#include "harness/runtime/errors.h"
#include "kernels/decode_start.h"
#include "kernels/fused_norm.h"
#include "kernels/rmsnorm.h"
#include "kernels/small_linear.h"
#include "layouts/shard.h"
#include "oracles/deepseek_v3_layer.h"
#include "oracles/qwen3_moe_layer.h"

#include <algorithm>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <tuple>

namespace lb {

namespace {

// The tokens `index` names (on the device), and on the host from `host_index` (the same ids).
TokenPlacement select(const TokenPlacement& all, const torch::Tensor& index, const torch::Tensor& host_index) {
  return {all.seq.index_select(0, index), all.pos.index_select(0, index),
          all.seq_host.defined() ? all.seq_host.index_select(0, host_index) : torch::Tensor()};
}

std::vector<int> my_group(const std::vector<std::vector<int>>& partition, int rank) {
  for (const auto& g : partition)
    if (std::find(g.begin(), g.end(), rank) != g.end()) return g;
  throw std::logic_error("rank in no group");
}

// Rows of a [T, ...] tensor reshaped to [T, row] for the row-based collectives, and back.
torch::Tensor as_rows(const torch::Tensor& t) {
  int64_t row = 1;
  for (int64_t i = 1; i < t.dim(); ++i) row *= t.size(i);
  return t.reshape({t.size(0), row}).contiguous();  // not -1: a rank may have no rows
}

// Whether index[0 .. n) is 0, 1, ..., n - 1: a selection by it would copy everything in order.
bool counts_from_zero(const int64_t* index, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (index[i] != i) return false;
  return true;
}

}  // namespace

LayoutRank::LayoutRank(RankContext& ctx, const LayoutSpec& layout, const ParallelConfig& parallel,
                       const ModelConfig& config, const WeightSource& weights, ReferenceOptions options,
                       const std::vector<int64_t>& seq_lens, Mutation mutation)
    : ctx_(ctx), layout_(layout), parallel_(parallel), config_(config), weights_(weights), options_(options),
      mutation_(mutation),
      plan_(shard_plan(parallel, ctx.rank())), rope_(make_rope(config)) {
  torch::NoGradGuard no_grad;
  const torch::Device device = options_.device;
  rope_.inv_freq = rope_.inv_freq.to(device);  // not copied up at every call
  tokens_ = split_tokens(parallel_, layout_.split, seq_lens);

  // Groups are split in one fixed order on every rank (a split is collective).
  const std::set<GroupKind> kinds = {GroupKind::AttnTp, GroupKind::AttnCp, layout_.moe.gather, layout_.moe.reduce,
                                     layout_.dense.gather, layout_.dense.reduce};
  for (GroupKind kind : kinds) {
    const auto partition = group_partition(parallel_, kind);
    members_[kind] = my_group(partition, ctx_.rank());
    if (kind != GroupKind::World) groups_[kind] = ctx_.split(to_string(kind), partition);
  }
  place_tokens(seq_lens);

  auto load = [&](const std::string& name) { return weights.load(tensor_spec(config_, name), options_.dtype, device); };
  embed_ = load("model.embed_tokens.weight");
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    LayerWeights full = load_layer(config_, weights, i, options_.dtype, device);
    LayerWeights shard = shard_layer(config_, full, plan_);
    shard.fused_kernels = options_.fused_kernels;
    if (shard.fused_kernels) fuse_qkv(shard);
    if (mutation_ == Mutation::SharedExpertTwice)
      for (const char* name : {"mlp.shared_experts.gate_proj.weight", "mlp.shared_experts.up_proj.weight",
                               "mlp.shared_experts.down_proj.weight"})
        if (full.tensors.count(name)) shard.tensors[name] = full.tensors.at(name);
    layers_.push_back(std::move(shard));
  }
  if (mutation_ == Mutation::RouterNotRenormalized) config_.norm_topk_prob = false;
}

// Where this rank's queries and its CP group's keys sit, from tokens_.
void LayoutRank::place_tokens(const std::vector<int64_t>& seq_lens) {
  const torch::Device device = options_.device;
  TokenPlacement all = packed_placement(seq_lens, device);
  if (mutation_ == Mutation::LastTokenOwnSequence && seq_lens.size() > 1) {
    all.seq[seq_lens[0] - 1].fill_(int64_t(seq_lens.size()));
    all.seq_host[seq_lens[0] - 1].fill_(int64_t(seq_lens.size()));
  }
  my_tokens_ = tokens_[ctx_.rank()].to(device);
  local_ = select(all, my_tokens_, tokens_[ctx_.rank()]);
  if (mutation_ == Mutation::RopeLocalPositions && parallel_.attn_cp > 1)
    local_.pos = torch::arange(local_.pos.size(0), local_.pos.options());
  if (mutation_ == Mutation::CpFirstTokenPosition && parallel_.attn_cp > 1 && local_.pos.numel() > 0 &&
      ctx_.rank() == members_.at(GroupKind::AttnCp).back())
    local_.pos[0].add_(1);
  local_cs_ = rope_cos_sin(rope_, local_.pos, options_.dtype, options_.fused_kernels);
  std::vector<torch::Tensor> key_index;
  for (int r : members_.at(GroupKind::AttnCp))
    key_index.push_back(mutation_ == Mutation::ZigzagKeyBlocksReversed ? tokens_[r].flip(0) : tokens_[r]);
  torch::Tensor keys = torch::cat(key_index);
  if (mutation_ == Mutation::RoundRobinKeysAsContiguous) keys = std::get<0>(keys.sort());
  cp_keys_ = select(all, keys.to(device), keys);
}

bool LayoutRank::set_batch(const std::vector<int64_t>& new_lens) {
  GenerationSplit split = split_generation_tokens(parallel_, layout_.split, new_lens, /*decode=*/false);
  tokens_ = std::move(split.tokens);
  place_tokens(new_lens);
  return split.layout_split;
}

torch::Tensor LayoutRank::logits(const torch::Tensor& hidden) const { return logits_of({hidden, {}}); }

torch::Tensor LayoutRank::logits_of(const Residual& hidden) const {
  torch::NoGradGuard no_grad;
  if (!final_norm_.defined()) {  // on first use: a check never needs the head
    auto load = [&](const std::string& name) {
      return weights_.load(tensor_spec(config_, name), options_.dtype, options_.device);
    };
    final_norm_ = load("model.norm.weight");
    lm_head_ = config_.tie_word_embeddings ? embed_ : load("lm_head.weight");
  }
  return linear_to_f32(sum_and_norm(hidden, final_norm_).second, lm_head_, options_.fused_kernels);
}

std::pair<torch::Tensor, torch::Tensor> LayoutRank::sum_and_norm(const Residual& x, const torch::Tensor& weight) const {
  if (!x.m.defined()) return {x.h, norm(x.h, weight)};
  return add_rmsnorm(x.h, x.m, weight, config_.rms_eps, options_.fused_kernels);
}

torch::Tensor LayoutRank::norm(const torch::Tensor& x, const torch::Tensor& weight) const {
  // One kernel instead of five on the fused path: a decode step is made of such small launches.
  return options_.fused_kernels ? rmsnorm_fused(x, weight, config_.rms_eps) : rmsnorm(x, weight, config_.rms_eps);
}

torch::Tensor LayoutRank::slots_of(const torch::Tensor& seq) const { return torch::div(seq, parallel_.dp, "floor"); }

LayoutRank::HeadPlan LayoutRank::plan_head(const std::vector<int64_t>& wanted) const {
  // Each wanted token's row comes from the lowest rank holding it (attention TP peers hold the same
  // rows), all gathered to every rank in one all_gatherv.
  std::map<int64_t, int64_t> gathered_row;  // token -> its row in the gathered rows
  std::vector<int64_t> mine;
  HeadPlan plan;
  for (int r = 0; r < int(tokens_.size()); ++r) {
    const torch::Tensor& t = tokens_[r];
    const int64_t* idx = t.data_ptr<int64_t>();
    int64_t n = 0;
    for (int64_t row = 0; row < t.numel(); ++row) {
      if (!std::binary_search(wanted.begin(), wanted.end(), idx[row]) || gathered_row.count(idx[row])) continue;
      gathered_row[idx[row]] = int64_t(gathered_row.size());
      ++n;
      if (r == ctx_.rank()) mine.push_back(row);
    }
    plan.counts.push_back(n);
  }
  std::vector<int64_t> to_sequence;
  for (int64_t token : wanted) to_sequence.push_back(gathered_row.at(token));
  plan.mine_in_order = counts_from_zero(mine.data(), int64_t(mine.size()));
  plan.sequence_in_order = counts_from_zero(to_sequence.data(), int64_t(to_sequence.size()));
  plan.mine = torch::tensor(mine, torch::kInt64).to(options_.device);
  plan.to_sequence = torch::tensor(to_sequence, torch::kInt64).to(options_.device);
  return plan;
}

torch::Tensor LayoutRank::head(const Residual& x, const HeadPlan& plan) const {
  RECORD_USER_SCOPE("lb::head");  // a named span in bench --trace-prefill's timeline
  // A decode step on one rank keeps every row in order: no copies and no gather then (each is a
  // launch of a few microseconds in a step of a few hundred).
  torch::Tensor out;
  if (ctx_.world_size() == 1 && plan.mine_in_order && plan.mine.size(0) == x.h.size(0)) {
    out = logits_of(x);
  } else {
    const torch::Tensor rows = x.sum().index_select(0, plan.mine).contiguous();
    out = logits(ctx_.world_size() == 1 ? rows : ctx_.world().all_gatherv(rows, plan.counts));
  }
  return plan.sequence_in_order && plan.to_sequence.size(0) == out.size(0) ? out
                                                                            : out.index_select(0, plan.to_sequence);
}

void LayoutRank::start_generation(int64_t sequences, int64_t capacity) {
  torch::NoGradGuard no_grad;
  const int64_t slots = (sequences + parallel_.dp - 1) / parallel_.dp;
  cache_ = KvCache(config_.num_layers, slots, capacity, cache_part_shapes(config_, layers_.at(0)),
                   torch::TensorOptions().dtype(options_.dtype).device(options_.device));
  // A decode step's plan is fixed for the batch: one token per sequence, dealt over the CP ranks.
  tokens_ = split_generation_tokens(parallel_, layout_.split, std::vector<int64_t>(sequences, 1), /*decode=*/true).tokens;
  place_tokens(std::vector<int64_t>(sequences, 1));
  decode_plan_ = {tokens_, my_tokens_, local_, cp_keys_};
  query_slot_ = slots_of(local_.seq);
  key_slot_ = slots_of(cp_keys_.seq);
  std::vector<int64_t> every(static_cast<size_t>(sequences));
  for (int64_t s = 0; s < sequences; ++s) every[size_t(s)] = s;
  decode_head_ = plan_head(every);
  decode_sequences_ = sequences;
  logits(torch::zeros({0, config_.hidden}, embed_.options()));  // the head's weights load now, not in a capture
}

torch::Tensor LayoutRank::prefill(const torch::Tensor& input_ids, const std::vector<int64_t>& new_lens) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(cache_.allocated(), "prefill before start_generation");
  prefill_layout_split_ = set_batch(new_lens);
  const TokenPlacement& keys = parallel_.attn_cp > 1 ? cp_keys_ : local_;
  const CacheStep step{&cache_, cache_.row_of(slots_of(keys.seq), keys.pos), {}, {}};
  Residual x{embed(input_ids), {}};
  for (int64_t i = 0; i < config_.num_layers; ++i) x = layer_step(i, x, nullptr, &step);
  // This rank's slots hold its DP rank's sequences.
  const int64_t dp = parallel_.dp, dp_rank = rank_coords(parallel_, ctx_.rank()).attn_dp;
  std::vector<int64_t> lengths(size_t(cache_.slots()), 0), last;
  for (int64_t s = dp_rank; s < int64_t(new_lens.size()); s += dp) lengths[size_t(s / dp)] = new_lens[size_t(s)];
  cache_.lengths().copy_(torch::tensor(lengths, torch::kInt64));
  int64_t end = 0;
  for (int64_t len : new_lens) last.push_back((end += len) - 1);
  return head(x, plan_head(last));
}

torch::Tensor LayoutRank::decode(const torch::Tensor& input_ids, std::vector<torch::Tensor>* layer_outputs,
                                 std::vector<LayerCapture>* captures) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(cache_.allocated() && input_ids.size(0) == decode_sequences_, "decode: ", input_ids.size(0),
              " tokens for a batch of ", decode_sequences_, " sequences");
  std::tie(tokens_, my_tokens_, local_, cp_keys_) = decode_plan_;
  const bool cp = parallel_.attn_cp > 1;
  // Each sequence's new token sits at its slot's length: positions come from the device. Where the
  // step is plain (one rank's queries and keys, every token held in order, no planted bug), one
  // fused launch opens it: positions, read lengths, cache rows, embeddings, the lengths' increment.
  std::optional<DecodeStart> start;
  if (options_.fused_kernels && !cp && mutation_ == Mutation::None && holds_every_token_in_order(input_ids.size(0)))
    start = decode_step_start_fused(input_ids.to(options_.device), embed_, cache_.lengths(), query_slot_,
                                    cache_.capacity());
  const torch::Tensor query_pos = start ? start->pos : cache_.lengths().index_select(0, query_slot_);
  local_.pos = query_pos;
  if (mutation_ == Mutation::RopeLocalPositions && cp) local_.pos = torch::arange(query_pos.size(0), query_pos.options());
  if (mutation_ == Mutation::DecodePositionOffByOne) local_.pos = query_pos + 1;
  local_cs_ = rope_cos_sin(rope_, local_.pos, options_.dtype, options_.fused_kernels);
  if (cp) cp_keys_.pos = cache_.lengths().index_select(0, key_slot_);  // without CP the keys are local_'s
  torch::Tensor write_slot = cp ? key_slot_ : query_slot_;
  if (mutation_ == Mutation::DecodeKeysToNextSlot) write_slot = torch::remainder(write_slot + 1, cache_.slots());
  const torch::Tensor read_len = start ? start->read_len
                                 : mutation_ == Mutation::DecodeAttendsOneShort ? query_pos
                                                                                : query_pos + 1;
  const CacheStep step{&cache_, start ? start->row : cache_.row_of(write_slot, cp ? cp_keys_.pos : query_pos),
                       query_slot_, read_len};
  if (captures) captures->assign(size_t(config_.num_layers), LayerCapture());
  Residual x{start ? start->x : embed(input_ids), {}};
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    x = layer_step(i, x, captures ? &(*captures)[size_t(i)] : nullptr, &step);
    if (layer_outputs) layer_outputs->push_back(x.sum());
  }
  if (!start) cache_.lengths().add_(1);
  return head(x, decode_head_);
}

int64_t LayoutRank::decode_read_bytes(const std::vector<LayerCapture>& captures) const {
  auto bytes = [](const torch::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : int64_t(0); };
  int64_t total = bytes(final_norm_) + bytes(lm_head_);
  // Each query reads its slot's positions once per layer (the cache's lengths after the step).
  const torch::Tensor lengths = cache_.lengths().index_select(0, query_slot_).to(torch::kCPU);
  int64_t position_bytes = 0;
  for (const torch::Tensor& part : cache_.layer(0)) position_bytes += bytes(part) / (part.size(0) * part.size(1));
  const int64_t kv_bytes = lengths.sum().item<int64_t>() * position_bytes;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const LayerWeights& w = layers_[i];
    total += w.bytes() + kv_bytes;
    const OpPiece* chosen = i < captures.size() ? captures[i].find("topk_experts") : nullptr;
    if (!w.experts.down.defined() || !chosen) continue;
    const int64_t held = w.experts.down.size(0), first = w.experts.first_expert;
    const int64_t expert_bytes = (bytes(w.experts.gate) + bytes(w.experts.up) + bytes(w.experts.down)) / held;
    const torch::Tensor local = chosen->rows.to(torch::kCPU).to(torch::kInt64).flatten() - first;
    const int64_t hit = torch::bincount(local.masked_select((local >= 0) & (local < held)), {}, held)
                            .gt(0)
                            .sum()
                            .item<int64_t>();
    total -= (held - hit) * expert_bytes;
  }
  return total;
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

torch::Tensor LayoutRank::tokens_of(GroupKind kind) const {
  std::vector<torch::Tensor> parts;
  for (int r : members_.at(kind)) parts.push_back(tokens_[r]);
  return torch::cat(parts);
}

torch::Tensor LayoutRank::in_token_order(const torch::Tensor& local, int64_t total) const {
  std::vector<int64_t> rows;
  for (const auto& t : tokens_) rows.push_back(t.size(0));
  torch::Tensor gathered = ctx_.world().all_gatherv(local.contiguous(), rows);
  torch::Tensor index = torch::cat(tokens_).to(gathered.device());
  torch::Tensor full = torch::zeros({total, local.size(1)}, gathered.options());
  return full.index_copy_(0, index, gathered);  // the last copy of a row written wins
}

std::vector<Communicator*> LayoutRank::communicators() const {
  std::vector<Communicator*> out = {&ctx_.world()};
  for (const auto& [kind, comm] : groups_) out.push_back(comm.get());
  return out;
}

bool LayoutRank::holds_every_token_in_order(int64_t tokens) const {
  const torch::Tensor& held = tokens_[ctx_.rank()];
  return held.numel() == tokens && counts_from_zero(held.data_ptr<int64_t>(), held.numel());
}

torch::Tensor LayoutRank::embed(const torch::Tensor& input_ids) const {
  // A rank holding every token in order (one rank, or TP without a token split) takes the ids as
  // they are: a decode step saves a launch.
  const torch::Tensor& held = tokens_[ctx_.rank()];
  if (holds_every_token_in_order(input_ids.size(0))) return embed_.index_select(0, input_ids.to(options_.device));
  const torch::Tensor mine = input_ids.device() == my_tokens_.device()
                                 ? input_ids.index_select(0, my_tokens_)
                                 : input_ids.index_select(0, held).to(options_.device);
  return embed_.index_select(0, mine);
}

torch::Tensor LayoutRank::mlp_partial(const LayerWeights& w, const torch::Tensor& normed, Routing* routing) const {
  RECORD_USER_SCOPE("lb::mlp");  // a named span in bench --trace-prefill's timeline
  return config_.family == ModelFamily::Qwen3Moe ? qwen3_mlp(config_, w, normed, routing)
                                                 : deepseek_mlp(config_, w, normed, routing);
}

torch::Tensor LayoutRank::attention_partial(const LayerWeights& w, const torch::Tensor& x_normed,
                                            LayerCapture* capture, const CacheStep* cache) const {
  RECORD_USER_SCOPE("lb::attention");  // a named span in bench --trace-prefill's timeline
  const ModelConfig& c = config_;
  const bool cp = parallel_.attn_cp > 1;
  // A DP rank without requests still takes part in the collectives after attention.
  if (x_normed.size(0) == 0 && !cp) return torch::zeros({0, c.hidden}, x_normed.options());
  const torch::Tensor mine = tokens_[ctx_.rank()];
  Communicator* cp_group = cp ? &group(GroupKind::AttnCp) : nullptr;
  const std::vector<int64_t> cp_rows = rows_of(GroupKind::AttnCp);
  torch::Tensor attn;
  if (c.family == ModelFamily::Qwen3Moe) {
    // Without CP the rank's own keys go to the cache, in the q/k norm + RoPE launch where it can.
    QkvStates s = qwen3_qkv(c, w, local_cs_, x_normed, cp ? nullptr : cache);
    if (capture) {
      capture->add("q", s.q, mine, plan_.attn_rank * s.q.size(1) * c.head_dim);
      capture->add("kv", s.k, mine, int64_t(plan_.attn_rank) * c.num_kv_heads / plan_.attn_size * c.head_dim);
    }
    torch::Tensor k = s.k, v = s.v;
    if (cp) {
      // Keys and values of every CP rank, rotated with their original positions.
      k = cp_group->all_gatherv(as_rows(k), cp_rows).view({-1, k.size(1), k.size(2)});
      v = cp_group->all_gatherv(as_rows(v), cp_rows).view({-1, v.size(1), v.size(2)});
    }
    attn = gqa_attention(w, s.q, k, v, local_, cp ? cp_keys_ : local_, c.attention_scale(), cache, s.cache_written);
  } else {
    MlaLatent m = mla_latent(c, w, rope_, local_cs_, x_normed);
    if (capture) {
      capture->add("q", m.q, mine, plan_.attn_rank * m.q.size(1) * c.qk_head_dim());
      capture->add("kv", torch::cat({m.latent, m.k_pe}, 1), mine);
    }
    torch::Tensor latent = m.latent, k_pe = m.k_pe;
    if (cp) {
      // MLA under CP gathers the small latent and the shared rotary key, not the expanded keys.
      torch::Tensor both = cp_group->all_gatherv(torch::cat({latent, k_pe}, 1).contiguous(), cp_rows);
      latent = both.narrow(1, 0, c.kv_lora_rank);
      k_pe = both.narrow(1, c.kv_lora_rank, c.qk_rope_head_dim);
    }
    attn = mla_attention(c, w, m.q, latent, k_pe, local_, cp ? cp_keys_ : local_, cache, /*absorbed=*/true);
  }
  if (capture) capture->add("attn_out", attn, mine, plan_.attn_rank * attn.size(1) * attn.size(2));
  return linear(attn.flatten(1), w["self_attn.o_proj.weight"], w.fused_kernels);
}

torch::Tensor LayoutRank::mlp(const MlpStep& step, const LayerWeights& w, const torch::Tensor& x,
                              const torch::Tensor& normed, LayerCapture* capture) const {
  // The router's view: the rows the MLP ran on, with their token indices.
  auto keep_routing = [&](const Routing& r, const torch::Tensor& tokens) {
    if (capture) capture->add_routing(r, tokens);
  };
  Routing routing;
  switch (step.comm) {
    case MlpComm::AllReduce: {
      torch::Tensor y = mlp_partial(w, normed, &routing).contiguous();
      keep_routing(routing, tokens_[ctx_.rank()]);
      if (group(step.reduce).size() > 1) group(step.reduce).all_reduce(y);
      return y;
    }
    case MlpComm::GatherReduceScatter: {
      Communicator& g = group(step.gather);
      const std::vector<int64_t> rows = rows_of(step.gather);
      if (std::adjacent_find(rows.begin(), rows.end(), std::not_equal_to<>()) != rows.end()) {
        // Generation's dealt split leaves ranks a token apart: the uneven forms of the same step.
        torch::Tensor y = mlp_partial(w, g.all_gatherv(normed.contiguous(), rows), &routing).contiguous();
        keep_routing(routing, tokens_of(step.gather));
        return g.reduce_scatterv(y, rows);
      }
      torch::Tensor y = mlp_partial(w, g.all_gather(normed.contiguous()), &routing).contiguous();
      keep_routing(routing, tokens_of(step.gather));
      return g.reduce_scatter(y);
    }
    case MlpComm::GatherAllReduce: {
      const std::vector<int64_t> rows = rows_of(step.gather);
      torch::Tensor gathered = group(step.gather).all_gatherv(normed.contiguous(), rows);
      if (mutation_ == Mutation::AllGathervBoundaryRow && rows.size() > 1 && rows[0] > 0 && rows[1] > 0)
        gathered[rows[0]].copy_(gathered[rows[0] - 1]);
      torch::Tensor y = mlp_partial(w, gathered, &routing).contiguous();
      keep_routing(routing, tokens_of(step.gather));
      if (group(step.reduce).size() > 1) group(step.reduce).all_reduce(y);
      const auto& members = members_.at(step.gather);
      int64_t offset = 0;
      for (size_t i = 0; members[i] != ctx_.rank(); ++i) offset += rows[i];
      return y.narrow(0, offset, x.size(0));
    }
    case MlpComm::GatherReduceScatterv: {
      Communicator& g = group(step.gather);
      const std::vector<int64_t> rows = rows_of(step.gather);
      torch::Tensor y = mlp_partial(w, g.all_gatherv(normed.contiguous(), rows), &routing).contiguous();
      keep_routing(routing, tokens_of(step.gather));
      if (mutation_ == Mutation::ReduceScattervOffByOne) y = y.roll(1, 0).contiguous();
      if (mutation_ == Mutation::ReduceScattervBoundaryRow && g.rank() == 0 && rows.size() > 1 && rows[1] > 0)
        y[rows[0]].zero_();
      return g.reduce_scatterv(y, rows);
    }
    case MlpComm::ScatterReplicated: break;  // handled in layer_forward: it changes the attention output step
  }
  throw std::logic_error("unhandled MLP communication");
}

torch::Tensor LayoutRank::layer_forward(int64_t layer, const torch::Tensor& x, LayerCapture* capture,
                                        const CacheStep* cache) const {
  return layer_step(layer, {x, {}}, capture, cache).sum();
}

LayoutRank::Residual LayoutRank::layer_step(int64_t layer, const Residual& input, LayerCapture* capture,
                                            const CacheStep* cache) const {
  RECORD_USER_SCOPE("lb::layer");  // a named span in bench --trace-prefill's timeline
  torch::NoGradGuard no_grad;
  const LayerWeights& w = layers_.at(layer);
  const MlpStep& step = config_.is_moe_layer(layer) ? layout_.moe : layout_.dense;
  const torch::Tensor mine = tokens_[ctx_.rank()];
  auto keep = [&](const char* op, const torch::Tensor& t, const torch::Tensor& tokens) {
    if (capture) capture->add(op, t, tokens);
  };
  torch::Tensor x, normed;
  std::tie(x, normed) = sum_and_norm(input, w["input_layernorm.weight"]);
  keep("attn_norm", normed, mine);
  torch::Tensor attn = attention_partial(w, normed, capture, cache).contiguous();
  Communicator& attn_tp = group(GroupKind::AttnTp);
  if (step.comm == MlpComm::ScatterReplicated && attn_tp.size() > 1) {
    // Each attention TP rank takes a slice of the tokens for the replicated MLP.
    const int n = attn_tp.size();
    std::vector<int64_t> rows(n);
    int64_t offset = 0, count = 0;
    for (int r = 0; r < n; ++r) {
      rows[r] = x.size(0) / n + (r < x.size(0) % n ? 1 : 0);
      if (r < attn_tp.rank()) offset += rows[r];
    }
    count = rows[attn_tp.rank()];
    const torch::Tensor slice = mine.narrow(0, offset, count);
    torch::Tensor o = attn_tp.reduce_scatterv(attn, rows);
    torch::Tensor h = mutation_ == Mutation::MissingResidualAdd ? o : x.narrow(0, offset, count) + o;
    torch::Tensor m = mlp_partial(w, norm(h, w["post_attention_layernorm.weight"]));
    torch::Tensor out = attn_tp.all_gatherv((h + m).contiguous(), rows);
    keep("o_proj", o, slice), keep("residual", h, slice), keep("mlp_out", m, slice), keep("layer_out", out, mine);
    return {out, {}};
  }
  if (mutation_ == Mutation::AllReduceWrongGroup && attn_tp.size() < ctx_.world_size()) ctx_.world().all_reduce(attn);
  else if (attn_tp.size() > 1) attn_tp.all_reduce(attn);
  keep("o_proj", attn, mine);
  torch::Tensor h, post;
  if (mutation_ == Mutation::MissingResidualAdd) {
    h = attn;
    post = norm(h, w["post_attention_layernorm.weight"]);
  } else {
    // The residual add and the norm after it: one kernel on the fused path, where a decode step is
    // made of small launches.
    std::tie(h, post) = add_rmsnorm(x, attn, w["post_attention_layernorm.weight"], config_.rms_eps,
                                    options_.fused_kernels);
  }
  keep("residual", h, mine);
  torch::Tensor m;
  if (step.comm == MlpComm::ScatterReplicated) {  // attention TP 1: the replicated MLP on all rows
    m = mlp_partial(w, post);
  } else {
    m = mlp(step, w, h, post, capture);
  }
  keep("mlp_out", m, mine);
  if (capture) keep("layer_out", h + m, mine);
  return {h, m};
}

}  // namespace lb
