#pragma once
// A rank's shard of one decoder layer, cut from the whole layer: attention heads over the
// attention TP group, every expert's intermediate dimension over MoE TP and the experts over MoE
// EP, shared experts over the whole MoE replica, and the dense MLP over the dense TP group. Each
// shard computes a partial sum that the layout reduces over the matching group.
#include "harness/model/model_config.h"
#include "harness/runtime/parallel_config.h"
#include "oracles/layer_weights.h"

namespace lb {

struct ShardPlan {
  int attn_rank = 0, attn_size = 1;
  int moe_tp_rank = 0, moe_tp = 1;
  int moe_ep_rank = 0, moe_ep = 1;
  int dense_rank = 0, dense_size = 1;
};

ShardPlan shard_plan(const ParallelConfig& p, int rank);

// Throws InputError naming the size that does not divide (heads, KV heads, intermediate sizes,
// experts) before any weight is loaded.
void check_shardable(const ModelConfig& config, const ParallelConfig& p);

LayerWeights shard_layer(const ModelConfig& config, const LayerWeights& full, const ShardPlan& plan);

}  // namespace lb
