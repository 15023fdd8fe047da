#pragma once
// Parallel sizes of a run and the process groups they imply, from one rank-mapping function.
//
// Conventions follow SGLang: tp is the world size (all GPUs, every node). Attention ranks are
// numbered with attention TP innermost, then CP, then DP:
//     rank = (attn_dp_rank * attn_cp + attn_cp_rank) * attn_tp + attn_tp_rank
// and MoE ranks with MoE TP innermost, then EP, then MoE DP:
//     rank = (moe_dp_rank * moe_ep + moe_ep_rank) * moe_tp + moe_tp_rank
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lb {

struct ParallelConfig {
  int tp = 1;       // world size
  int dp = 1;       // attention data parallel (DP attention); 1 = off
  int attn_cp = 1;  // attention context parallel
  int moe_dp = 1;   // MoE replicas; moe_dp < attn_cp is the MOE_FULL gather mode
  int moe_ep = 1;   // MoE expert parallel
  std::optional<int> moe_dense_tp;  // dense-MLP TP: none = whole world, 1 = replicated, attn_tp
  int nnodes = 1;

  int world() const { return tp; }
  int attn_tp() const { return tp / (dp * attn_cp); }
  int moe_tp() const { return tp / (moe_dp * moe_ep); }
  int dense_tp() const { return moe_dense_tp.value_or(tp); }
  int gpus_per_node() const { return tp / nnodes; }
  // CP ranks whose tokens one MoE group serves (1 unless MOE_FULL).
  int cp_per_moe() const { return attn_cp / moe_dp; }

  nlohmann::json to_json() const;
};

// Throws InputError naming the first violated rule among the sizes alone; the rules that also need
// the model (experts, heads) are in harness/model/parallel_fit.h.
void validate(const ParallelConfig& p);

// Parses "tp=4,dp=2,attn_cp=2,moe_dp=1,moe_ep=1,moe_dense_tp=2,nnodes=1" (any subset, any order).
ParallelConfig parse_parallel_config(const std::string& spec);

struct RankCoords {
  int attn_dp = 0, attn_cp = 0, attn_tp = 0;
  int moe_dp = 0, moe_ep = 0, moe_tp = 0;
  int node = 0;
};
RankCoords rank_coords(const ParallelConfig& p, int rank);
int attention_rank(const ParallelConfig& p, int attn_dp, int attn_cp, int attn_tp);

enum class GroupKind { World, AttnTp, AttnCp, AttnDp, Moe, MoeTp, MoeEp, MoeDp, MoeCp, DenseTp };
std::string to_string(GroupKind kind);
const std::vector<GroupKind>& all_group_kinds();

// Every group of one kind, as rank lists in group-rank order; together they cover every rank once.
//   AttnTp: same (dp, cp);  AttnCp: same (dp, attn_tp rank);  AttnDp: same (cp, attn_tp rank);
//   Moe: one MoE replica (same moe_dp: its moe_ep * moe_tp ranks);  MoeTp: same (moe_dp, ep);  MoeEp: same (moe_dp, moe_tp rank);  MoeDp: same (ep, moe_tp rank);
//   MoeCp: the cp_per_moe CP ranks that share a MoE group (same dp, attn_tp rank and MoE replica);
//   DenseTp: the world (moe_dense_tp none), singletons (1), or the attention TP groups (attn_tp).
std::vector<std::vector<int>> group_partition(const ParallelConfig& p, GroupKind kind);

// The rank -> coordinates and groups table that `layoutbench groups` prints.
std::string format_group_table(const ParallelConfig& p);
nlohmann::json group_table_json(const ParallelConfig& p);

}  // namespace lb
