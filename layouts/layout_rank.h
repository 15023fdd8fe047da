#pragma once
// One rank of a layout: its groups, its token slice, its weight shards, and the forward pass of
// each decoder layer with the layout's communication between the shared math steps.
#include "harness/runtime/rank_context.h"
#include "harness/model/weights.h"
#include "kernels/attention.h"
#include "kernels/rope.h"
#include "layouts/layout.h"
#include "layouts/mutations.h"
#include "layouts/shard.h"
#include "oracles/layer_weights.h"
#include "oracles/op_capture.h"
#include "oracles/reference_model.h"

#include <map>
#include <memory>
#include <vector>

namespace lb {

class LayoutRank {
 public:
  // Collective: every rank constructs its LayoutRank at the same point (groups are split here).
  // `seq_lens` is the batch of a check run; empty when set_batch gives each forward pass its own.
  LayoutRank(RankContext& ctx, const LayoutSpec& layout, const ParallelConfig& parallel, const ModelConfig& config,
             const WeightSource& weights, ReferenceOptions options, const std::vector<int64_t>& seq_lens,
             Mutation mutation = Mutation::None);

  // Generation: the next forward pass runs new_lens[s] tokens of sequence s after past[s] tokens
  // already in the KV cache (split by split_generation_tokens). Returns whether the layout's own CP
  // split was used (false: dealt over the CP ranks). Not collective.
  bool set_batch(const std::vector<int64_t>& new_lens, const std::vector<int64_t>& past);

  // This rank's rows of the embeddings, in its local token order.
  torch::Tensor embed(const torch::Tensor& input_ids) const;
  // One decoder layer on this rank's rows; `capture`, when given, receives this rank's piece of
  // every capture point it computes; `kv`, when given (generation), keeps the keys this rank's
  // attention saw (its CP group's), and the attention sees all it kept.
  torch::Tensor layer_forward(int64_t layer, const torch::Tensor& x, LayerCapture* capture = nullptr,
                              LayerKvCache* kv = nullptr) const;
  // Final norm and lm_head (replicated on every rank, loaded on the first call): float32 logits of
  // `hidden` [n, H]. `weights` must outlive this LayoutRank.
  torch::Tensor logits(const torch::Tensor& hidden) const;

  // Original-order indices of each world rank's rows (this rank's: tokens()[ctx.rank()]).
  const std::vector<torch::Tensor>& tokens() const { return tokens_; }
  // Every communicator this rank used, for the collective records.
  std::vector<Communicator*> communicators() const;

 private:
  Communicator& group(GroupKind kind) const;
  std::vector<int64_t> rows_of(GroupKind kind) const;  // this rank's group members' row counts
  torch::Tensor tokens_of(GroupKind kind) const;       // their token indices, in gather order
  torch::Tensor mlp_partial(const LayerWeights& w, const torch::Tensor& normed, Routing* routing = nullptr) const;
  torch::Tensor attention_partial(const LayerWeights& w, const torch::Tensor& x_normed, LayerCapture* capture,
                                  LayerKvCache* kv) const;
  void place_tokens(const std::vector<int64_t>& seq_lens, const std::vector<int64_t>& past);
  torch::Tensor mlp(const MlpStep& step, const LayerWeights& w, const torch::Tensor& h, LayerCapture* capture) const;

  RankContext& ctx_;
  const LayoutSpec& layout_;
  ParallelConfig parallel_;
  ModelConfig config_;
  const WeightSource& weights_;
  ReferenceOptions options_;
  Mutation mutation_;
  ShardPlan plan_;
  Rope rope_;
  std::vector<torch::Tensor> tokens_;
  TokenPlacement local_;    // this rank's queries
  TokenPlacement cp_keys_;  // the keys of the attention CP group, in gather order
  std::map<GroupKind, std::vector<int>> members_;
  std::map<GroupKind, std::shared_ptr<Communicator>> groups_;
  torch::Tensor embed_;
  mutable torch::Tensor final_norm_, lm_head_;  // loaded by logits(), which only generation calls
  std::vector<LayerWeights> layers_;
};

}  // namespace lb
