#include "layouts/shard.h"

#include "harness/runtime/errors.h"

namespace lb {

ShardPlan shard_plan(const ParallelConfig& p, int rank) {
  const RankCoords c = rank_coords(p, rank);
  ShardPlan s;
  s.attn_rank = c.attn_tp, s.attn_size = p.attn_tp();
  s.moe_tp_rank = c.moe_tp, s.moe_tp = p.moe_tp();
  s.moe_ep_rank = c.moe_ep, s.moe_ep = p.moe_ep;
  // The dense TP group is the world, singletons, or the attention TP group (parallel_config.h).
  s.dense_size = p.dense_tp();
  s.dense_rank = s.dense_size == 1 ? 0 : (s.dense_size == p.world() ? rank : c.attn_tp);
  return s;
}

namespace {

void divides(int64_t parts, int64_t size, const std::string& what) {
  if (size % parts != 0)
    throw InputError("cannot shard: " + what + " (" + std::to_string(size) + ") is not divisible by " +
                     std::to_string(parts));
}

bool has_dense_layers(const ModelConfig& c) {
  for (int64_t i = 0; i < c.num_layers; ++i)
    if (!c.is_moe_layer(i)) return true;
  return false;
}

// Rows [part * n / parts, (part + 1) * n / parts) of dim `dim`.
torch::Tensor part_of(const torch::Tensor& t, int64_t dim, int part, int parts) {
  const int64_t n = t.size(dim) / parts;
  return t.narrow(dim, part * n, n).contiguous();
}

}  // namespace

void check_shardable(const ModelConfig& c, const ParallelConfig& p) {
  const int A = p.attn_tp();
  divides(A, c.num_heads, "attention heads over attn_tp = " + std::to_string(A));
  if (c.family == ModelFamily::Qwen3Moe && c.num_kv_heads % A != 0 && A % c.num_kv_heads != 0)
    throw InputError("cannot shard: " + std::to_string(c.num_kv_heads) + " KV heads over attn_tp = " +
                     std::to_string(A) + " (one must divide the other)");
  divides(p.moe_tp(), c.moe_intermediate, "moe_intermediate_size over moe_tp = " + std::to_string(p.moe_tp()));
  divides(p.moe_ep, c.num_experts, "the routed experts over moe_ep = " + std::to_string(p.moe_ep));
  if (c.n_shared_experts > 0)
    divides(p.moe_tp() * p.moe_ep, c.n_shared_experts * c.moe_intermediate,
            "the shared experts' intermediate size over the MoE group (moe_tp * moe_ep)");
  if (has_dense_layers(c))
    divides(p.dense_tp(), c.intermediate, "the dense MLP intermediate_size over moe_dense_tp = " +
                                              std::to_string(p.dense_tp()));
}

LayerWeights shard_layer(const ModelConfig& c, const LayerWeights& full, const ShardPlan& s) {
  LayerWeights w;
  w.layer = full.layer;
  w.tensors = full.tensors;  // replicated tensors are shared, not copied
  auto rows = [&](const std::string& name, int part, int parts) { w.tensors[name] = part_of(full[name], 0, part, parts); };
  auto cols = [&](const std::string& name, int part, int parts) { w.tensors[name] = part_of(full[name], 1, part, parts); };

  const int a = s.attn_rank, A = s.attn_size;
  if (c.family == ModelFamily::Qwen3Moe) {
    rows("self_attn.q_proj.weight", a, A);
    cols("self_attn.o_proj.weight", a, A);
    for (const char* kv : {"self_attn.k_proj.weight", "self_attn.v_proj.weight"}) {
      if (c.num_kv_heads % A == 0) rows(kv, a, A);
      else rows(kv, int(int64_t(a) * c.num_kv_heads / A), int(c.num_kv_heads));  // replicated KV heads
    }
  } else {
    rows(c.q_lora_rank > 0 ? "self_attn.q_b_proj.weight" : "self_attn.q_proj.weight", a, A);
    rows("self_attn.kv_b_proj.weight", a, A);
    cols("self_attn.o_proj.weight", a, A);
  }

  if (!c.is_moe_layer(full.layer)) {
    rows("mlp.gate_proj.weight", s.dense_rank, s.dense_size);
    rows("mlp.up_proj.weight", s.dense_rank, s.dense_size);
    cols("mlp.down_proj.weight", s.dense_rank, s.dense_size);
    return w;
  }
  const ExpertWeights& e = full.experts;
  w.experts = stack_experts(part_of(part_of(e.gate, 0, s.moe_ep_rank, s.moe_ep), 1, s.moe_tp_rank, s.moe_tp),
                            part_of(part_of(e.up, 0, s.moe_ep_rank, s.moe_ep), 1, s.moe_tp_rank, s.moe_tp),
                            part_of(part_of(e.down, 0, s.moe_ep_rank, s.moe_ep), 2, s.moe_tp_rank, s.moe_tp),
                            int64_t(s.moe_ep_rank) * (e.gate.size(0) / s.moe_ep));
  if (c.n_shared_experts > 0) {
    // Shared experts are split over the whole MoE replica, so summing its partial results counts
    // them exactly once.
    const int g = s.moe_ep_rank * s.moe_tp + s.moe_tp_rank, G = s.moe_ep * s.moe_tp;
    rows("mlp.shared_experts.gate_proj.weight", g, G);
    rows("mlp.shared_experts.up_proj.weight", g, G);
    cols("mlp.shared_experts.down_proj.weight", g, G);
  }
  return w;
}

}  // namespace lb
