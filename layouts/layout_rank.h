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
#include "oracles/cached_attention.h"
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

  // The next forward pass runs new_lens[s] tokens of sequence s (split by split_generation_tokens,
  // past tokens none). Returns whether the layout's own CP split was used (false: dealt over the CP
  // ranks). Not collective.
  bool set_batch(const std::vector<int64_t>& new_lens);

  // This rank's rows of the embeddings, in its local token order (`input_ids` on the CPU, or on the
  // device for a decode step).
  torch::Tensor embed(const torch::Tensor& input_ids) const;
  // Whether this rank holds all `tokens` of the step, in order (one rank, or TP without a token split).
  bool holds_every_token_in_order(int64_t tokens) const;
  // One decoder layer on this rank's rows; `capture`, when given, receives this rank's piece of
  // every capture point it computes; `cache`, when given (generation), is the step's KV cache.
  torch::Tensor layer_forward(int64_t layer, const torch::Tensor& x, LayerCapture* capture = nullptr,
                              const CacheStep* cache = nullptr) const;
  // A layer's output h + m (the residual stream and the MLP's output) kept as its two terms, so that
  // the next layer's input norm (or the head's) adds them in its own kernel on the fused path: one
  // launch fewer per layer in a decode step. m undefined: x is h itself.
  struct Residual {
    torch::Tensor h, m;
    torch::Tensor sum() const { return m.defined() ? h + m : h; }
  };
  // layer_forward on the two terms, returning the output's two terms.
  Residual layer_step(int64_t layer, const Residual& x, LayerCapture* capture = nullptr,
                      const CacheStep* cache = nullptr) const;
  // Final norm and lm_head (replicated on every rank, loaded on the first call): float32 logits of
  // `hidden` [n, H]. `weights` must outlive this LayoutRank.
  torch::Tensor logits(const torch::Tensor& hidden) const;

  // Generation with a KV cache: `sequences` sequences of up to `capacity` tokens each; the ranks of
  // sequence s's DP rank (s % dp) keep it in cache slot s / dp, the CP ranks of that DP rank all of
  // them (they gather its keys anyway), so any of them can attend for it. Collective.
  void start_generation(int64_t sequences, int64_t capacity);
  // The prompts (new_lens[s] tokens each, end to end in `input_ids` on the CPU) into the empty cache;
  // returns the float32 logits [S, V] of each prompt's last token, identical on every rank. Collective.
  torch::Tensor prefill(const torch::Tensor& input_ids, const std::vector<int64_t>& new_lens);
  // Whether the last prefill used the layout's own CP split (false: dealt over the CP ranks).
  bool last_prefill_layout_split() const { return prefill_layout_split_; }
  // One token per sequence (int64 [sequences] on the device) after the tokens in the cache; returns
  // float32 logits [S, V] on the device, identical on every rank. No host synchronization and fixed
  // shapes for a given `sequences`, so the whole step can be captured in a CUDA graph. Collective.
  // `layer_outputs`, when given, receives each layer's output rows of this rank (local order), and
  // `captures` (one per layer) this rank's capture points.
  torch::Tensor decode(const torch::Tensor& input_ids, std::vector<torch::Tensor>* layer_outputs = nullptr,
                       std::vector<LayerCapture>* captures = nullptr);
  // The bytes a decode step must read on this rank at least: every weight it uses once (of the
  // routed experts only those its rows chose, from a decode step's `captures`), the head, and each
  // query's cached positions. For the memory-traffic floor of a decode step.
  int64_t decode_read_bytes(const std::vector<LayerCapture>& captures) const;
  KvCache& cache() { return cache_; }
  const ModelConfig& config() const { return config_; }

  // Every rank's rows of `local` [rows, C] gathered and put in original token order [total, C]
  // (rows of attention-TP peers are identical). Collective.
  torch::Tensor in_token_order(const torch::Tensor& local, int64_t total) const;
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
                                  const CacheStep* cache) const;
  void place_tokens(const std::vector<int64_t>& seq_lens);
  // Which rank's rows give the logits of each wanted token (one per sequence), and how to put the
  // gathered rows in sequence order.
  struct HeadPlan {
    torch::Tensor mine;            // this rank's rows to send, local indices (device)
    std::vector<int64_t> counts;   // rows each world rank sends
    torch::Tensor to_sequence;     // gathered row of each sequence's token (device)
    bool mine_in_order = false;    // mine is 0, 1, ..., n - 1
    bool sequence_in_order = false;  // to_sequence is 0, 1, ..., n - 1
  };
  HeadPlan plan_head(const std::vector<int64_t>& wanted) const;
  torch::Tensor head(const Residual& x, const HeadPlan& plan) const;
  torch::Tensor logits_of(const Residual& hidden) const;  // logits() of the sum
  // x's sum and its RMSNorm with `weight`: one kernel on the fused path.
  std::pair<torch::Tensor, torch::Tensor> sum_and_norm(const Residual& x, const torch::Tensor& weight) const;
  torch::Tensor slots_of(const torch::Tensor& seq) const;
  torch::Tensor norm(const torch::Tensor& x, const torch::Tensor& weight) const;  // RMSNorm, fused when asked  // cache slot of each sequence index
  // normed: h after the post-attention norm (computed with the residual add, one kernel on the fused path).
  torch::Tensor mlp(const MlpStep& step, const LayerWeights& w, const torch::Tensor& h, const torch::Tensor& normed,
                    LayerCapture* capture) const;

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
  torch::Tensor my_tokens_;  // tokens_[rank] on the device
  TokenPlacement local_;    // this rank's queries
  CosSin local_cs_;         // the rotation of local_'s positions, once for every layer
  TokenPlacement cp_keys_;  // the keys of the attention CP group, in gather order
  // Generation: the cache, the last prefill's split, and the decode step's fixed plan.
  KvCache cache_;
  bool prefill_layout_split_ = true;
  int64_t decode_sequences_ = 0;
  HeadPlan decode_head_;
  // The decode plan's placement, kept alive while a captured graph reads its tensors.
  std::tuple<std::vector<torch::Tensor>, torch::Tensor, TokenPlacement, TokenPlacement> decode_plan_;
  torch::Tensor query_slot_, key_slot_;  // cache slots of local_ and cp_keys_ rows in a decode step
  std::map<GroupKind, std::vector<int>> members_;
  std::map<GroupKind, std::shared_ptr<Communicator>> groups_;
  torch::Tensor embed_;
  mutable torch::Tensor final_norm_, lm_head_;  // loaded by logits(), which only generation calls
  std::vector<LayerWeights> layers_;
};

}  // namespace lb
