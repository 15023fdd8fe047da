#include "harness/cli/parallel_flags.h"

#include "harness/runtime/errors.h"

namespace lb {

void add_parallel_flags(CLI::App& sub, ParallelFlags& f) {
  sub.add_option("--tp", f.tp, "World size: all ranks (SGLang's tp_size); defaults to the rank count");
  sub.add_option("--dp", f.dp, "Attention data parallel size (DP attention): ranks holding different requests");
  sub.add_option("--attn-cp", f.attn_cp, "Attention context parallel size: ranks splitting one sequence's tokens");
  sub.add_option("--moe-dp", f.moe_dp,
                 "MoE replicas; below --attn-cp the CP ranks of a MoE group gather their tokens (MOE_FULL)");
  sub.add_option("--moe-ep", f.moe_ep, "MoE expert parallel size (experts split over ranks)");
  sub.add_option("--moe-dense-tp", f.moe_dense_tp,
                 "TP size of dense MLP layers: none (whole world), 1 (replicated) or the attention TP size");
  sub.add_option("--nnodes", f.nnodes, "Nodes the world spans (tp must be a multiple)");
}

ParallelConfig ParallelFlags::config(int world) const {
  ParallelConfig p;
  p.tp = tp > 0 ? tp : world;
  if (p.tp <= 0) throw InputError("--tp: give the world size (or --ranks / --gpus)");
  if (world > 0 && p.tp != world)
    throw InputError("--tp " + std::to_string(p.tp) + " does not match the " + std::to_string(world) +
                     " ranks asked for");
  p.dp = dp;
  p.attn_cp = attn_cp;
  p.moe_dp = moe_dp;
  p.moe_ep = moe_ep;
  p.nnodes = nnodes;
  if (moe_dense_tp != "none" && moe_dense_tp != "None") {
    try {
      size_t used = 0;
      p.moe_dense_tp = std::stoi(moe_dense_tp, &used);
      if (used != moe_dense_tp.size()) throw std::invalid_argument(moe_dense_tp);
    } catch (const std::exception&) {
      throw InputError("--moe-dense-tp '" + moe_dense_tp + "': expected none or an integer");
    }
  }
  validate(p);
  return p;
}

}  // namespace lb
