#pragma once
// The steps of the DeepSeek-V4 forward pass (oracles/deepseek_v4_model.cpp), for the single-rank
// forward and the parallel layouts (layouts/deepseek_v4_layouts.cpp) to share. Internal: the
// steps assume a valid config and weights; callers check their parallel sizes first.
//
// Two things let a layout run the same math on its part of the work:
//   - V4Shard: which share of the query heads, output groups and expert intermediate a rank
//     computes (its output is then a partial sum over the shards);
//   - keys apart from queries: a layer's keys (shared K=V rows, compressed entries, indexer keys)
//     are built from per-token "key sources" of the whole sequence, in original order, while the
//     queries, their masks and the indexer's picks come from whichever tokens a rank holds.
#include "oracles/deepseek_v4_model.h"

#include <map>
#include <string>

namespace lb::v4 {

using Weights = std::map<std::string, torch::Tensor>;

// Share `index` of `count` equal shares (count 1: everything, as the single-rank forward runs).
struct V4Shard {
  int64_t index = 0, count = 1;
};

// The hyper-connection mixing at one sublayer (attention or MoE) and the sublayer's normed input.
struct StreamMix {
  torch::Tensor post;       // [T, N]: how much of the sublayer output each stream gets
  torch::Tensor comb;       // [T, N, N]: doubly stochastic stream mixing
  torch::Tensor collapsed;  // [T, D]: the streams collapsed into the sublayer's input
};
struct SublayerInput {
  StreamMix mix;
  torch::Tensor normed;  // [T, hidden]: collapsed, after the sublayer's RMSNorm
};

// The keys of one layer over the whole sequence (positions 0..n-1).
struct V4Keys {
  torch::Tensor kv;          // [n, head_dim]: the shared K=V head, normed and rotated
  torch::Tensor entries;     // [n / rate, head_dim]: compressed entries (empty on sliding layers)
  torch::Tensor index_keys;  // [n / csa_rate, index_head_dim]: the indexer's keys (CSA layers only)
};

// The residual streams of the embedded tokens: [T, hc_mult, hidden].
torch::Tensor embed_streams(const DeepseekV4Config& c, const Weights& w, const torch::Tensor& input_ids);

SublayerInput attention_input(const DeepseekV4Config& c, const Weights& w, int64_t layer, const torch::Tensor& h);
SublayerInput moe_input(const DeepseekV4Config& c, const Weights& w, int64_t layer, const torch::Tensor& h);
// Stream n of the new state: post[n] * out + sum over j of comb[j][n] * h[j].
torch::Tensor remix(const StreamMix& m, const torch::Tensor& out, const torch::Tensor& h);

// What each token contributes to a layer's keys, side by side in one [T, width] tensor (so a
// context-parallel layout moves them in one all_gather): its K=V row, normed and rotated at its
// position, and on compressed layers the compressor's kv and gate projections (and on CSA layers
// the indexer compressor's).
torch::Tensor key_sources(const DeepseekV4Config& c, const Weights& w, int64_t layer, const torch::Tensor& x,
                          const torch::Tensor& positions);
// The keys from the key sources of the whole sequence, in original token order.
V4Keys build_keys(const DeepseekV4Config& c, const Weights& w, int64_t layer, const torch::Tensor& sources);

// A discrete choice (the indexer's picks, the experts of a token) for the rows of a call: made by
// the call unless `given` holds it (rows in the call's order), and copied to `made` when set.
struct Choice {
  torch::Tensor given;
  torch::Tensor* made = nullptr;
};

// Attention of the queries of tokens `x` at `positions` over `keys`, for the shard's heads and
// output groups: this shard's part of the output projection, [T, hidden]. `picks`: the indexer's
// (CSA layers).
torch::Tensor attention(const DeepseekV4Config& c, const Weights& w, int64_t layer, const torch::Tensor& x,
                        const torch::Tensor& positions, const V4Keys& keys, V4Shard shard = {}, Choice picks = {});

// Routed plus shared experts for tokens `x` (routing replicated: every shard routes every token),
// with the shard's slice of every expert's intermediate dimension: [T, hidden], a partial sum.
// `experts`: each token's; the routing weights are always the token's own scores of them.
torch::Tensor moe(const DeepseekV4Config& c, const Weights& w, int64_t layer, const torch::Tensor& x,
                  const torch::Tensor& input_ids, V4Shard shard = {}, Choice experts = {});

// The last collapse of the streams, the final norm and the logits.
struct V4Head {
  torch::Tensor final_norm, logits;
};
V4Head output_head(const DeepseekV4Config& c, const Weights& w, const torch::Tensor& h);

}  // namespace lb::v4
