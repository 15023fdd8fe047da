// The layouts, each next to the baseline it replaced (../shared/design/layouts.md). Adding a
// layout is adding an entry here (and, for a new kind of communication, an MlpComm case in
// layout_rank.cpp).
#include "layouts/layout.h"

#include "harness/model/parallel_fit.h"
#include "harness/runtime/errors.h"
#include "layouts/shard.h"

namespace lb {

std::string to_string(MlpComm comm) {
  switch (comm) {
    case MlpComm::AllReduce: return "all_reduce";
    case MlpComm::GatherReduceScatter: return "all_gather + reduce_scatter";
    case MlpComm::GatherAllReduce: return "all_gatherv + all_reduce + slice";
    case MlpComm::GatherReduceScatterv: return "all_gatherv + reduce_scatterv";
    case MlpComm::ScatterReplicated: return "reduce_scatterv + replicated MLP + all_gatherv";
  }
  return "?";
}

namespace {

void require(bool ok, const std::string& layout, const std::string& rule) {
  if (!ok) throw InputError("layout " + layout + ": " + rule);
}

ParallelConfig sizes(int tp, int dp = 1, int cp = 1, int moe_dp = 1, std::optional<int> dense = std::nullopt) {
  ParallelConfig p;
  p.tp = tp, p.dp = dp, p.attn_cp = cp, p.moe_dp = moe_dp, p.moe_dense_tp = dense;
  return p;
}

// Dense layers under DP attention without moe_dense_tp: the MLP is TP over the whole world on the
// gathered batch, like the MoE.
const MlpStep kDenseFullGather{MlpComm::GatherAllReduce, GroupKind::AttnDp, GroupKind::World};
const MlpStep kDenseOnAttnTp{MlpComm::AllReduce, GroupKind::AttnTp, GroupKind::AttnTp};

std::vector<LayoutSpec> make_layouts() {
  std::vector<LayoutSpec> v;
  // Layout A (SGLang #24947) and its baseline.
  v.push_back({"tp", "", "plain tensor parallel: attention heads and every expert split over all ranks",
               [](int n) { return sizes(n); }, CpSplit::None,
               {MlpComm::AllReduce, GroupKind::Moe, GroupKind::Moe}, kDenseOnAttnTp,
               [](const ParallelConfig& p) {
                 require(p.attn_tp() == p.world() && p.moe_dp == 1, "tp", "needs attn_tp == moe_tp * moe_ep == tp");
               }});
  v.push_back({"cp-fused-moe", "tp",
               "round-robin CP attention; all_gather before the TP MoE, reduce_scatter after (layout A)",
               [](int n) { return sizes(n, 1, n); }, CpSplit::RoundRobin,
               {MlpComm::GatherReduceScatter, GroupKind::AttnCp, GroupKind::AttnCp},
               {MlpComm::GatherReduceScatter, GroupKind::AttnCp, GroupKind::AttnCp},
               [](const ParallelConfig& p) {
                 require(p.attn_tp() == 1 && p.dp == 1, "cp-fused-moe",
                         "round-robin CP needs attn_tp == 1 and dp == 1 (attn_cp == tp)");
                 require(p.moe_dp == 1 && p.dense_tp() == p.world(), "cp-fused-moe",
                         "the MoE and dense MLP are TP over the whole CP group (moe_dp == 1, moe_dense_tp none)");
               }});
  // Layout B (SGLang #18233, #22003) and its baseline.
  v.push_back({"cp-moe-full", "cp-moe-dp",
               "zigzag CP attention; MOE_FULL: the CP ranks of a MoE group gather their tokens (moe_dp < attn_cp)",
               [](int n) { return sizes(n, 1, n >= 2 ? 2 : 1, 1, n >= 2 ? n / 2 : 1); }, CpSplit::Zigzag,
               {MlpComm::GatherAllReduce, GroupKind::MoeCp, GroupKind::Moe}, kDenseOnAttnTp,
               [](const ParallelConfig& p) {
                 require(p.dp == 1 && p.moe_dp < p.attn_cp, "cp-moe-full", "needs dp == 1 and moe_dp < attn_cp");
                 require(p.dense_tp() == p.attn_tp(), "cp-moe-full", "dense layers run TP on the attention group");
               }});
  v.push_back({"cp-moe-dp", "", "zigzag CP attention; each CP rank's MoE replica on its own tokens (moe_dp == attn_cp)",
               [](int n) { return sizes(n, 1, n >= 2 ? 2 : 1, n >= 2 ? 2 : 1, n >= 2 ? n / 2 : 1); },
               CpSplit::Zigzag, {MlpComm::AllReduce, GroupKind::Moe, GroupKind::Moe}, kDenseOnAttnTp,
               [](const ParallelConfig& p) {
                 require(p.dp == 1 && p.moe_dp == p.attn_cp && p.moe_ep == 1, "cp-moe-dp",
                         "needs dp == 1, moe_dp == attn_cp and moe_ep == 1");
                 require(p.dense_tp() == p.attn_tp(), "cp-moe-dp", "dense layers run TP on the attention group");
               }});
  // Layout C (SGLang #22642) and its baseline.
  v.push_back({"dp-attn-rsv", "dp-attn-ar",
               "DP attention; MoE on the gathered batch; one reduce_scatterv returns each rank's rows",
               [](int n) { return sizes(n, n); }, CpSplit::None,
               {MlpComm::GatherReduceScatterv, GroupKind::AttnDp, GroupKind::AttnDp},
               {MlpComm::GatherReduceScatterv, GroupKind::AttnDp, GroupKind::AttnDp},
               [](const ParallelConfig& p) {
                 require(p.attn_tp() == 1 && p.attn_cp == 1 && p.moe_dp == 1 && !p.moe_dense_tp, "dp-attn-rsv",
                         "needs dp == tp (attn_tp == 1), no CP, moe_dp == 1 and moe_dense_tp none");
               }});
  v.push_back({"dp-attn-ar", "", "DP attention; MoE on the gathered batch; all_reduce, then each rank keeps its rows",
               [](int n) { return sizes(n, n); }, CpSplit::None,
               {MlpComm::GatherAllReduce, GroupKind::AttnDp, GroupKind::World}, kDenseFullGather,
               [](const ParallelConfig& p) {
                 require(p.attn_cp == 1 && p.moe_dp == 1 && !p.moe_dense_tp, "dp-attn-ar",
                         "needs no CP, moe_dp == 1 and moe_dense_tp none");
               }});
  // Layout D (SGLang #23996) and its two baselines: DP attention with attention TP 2.
  auto dense_layout = [](int n, std::optional<int> dense) { return sizes(n, n >= 2 ? n / 2 : 1, 1, 1, dense); };
  auto d_check = [](const std::string& name) {
    return [name](const ParallelConfig& p) {
      require(p.attn_cp == 1 && p.moe_dp == 1, name, "needs no CP and moe_dp == 1");
    };
  };
  const MlpStep moe_dp_gather{MlpComm::GatherAllReduce, GroupKind::AttnDp, GroupKind::World};
  v.push_back({"dense-tp-attn", "dense-tp1",
               "dense MLP TP on the attention TP group (moe_dense_tp == attn_tp): no DP gather for dense layers",
               [=](int n) { return dense_layout(n, n >= 2 ? 2 : 1); }, CpSplit::None, moe_dp_gather, kDenseOnAttnTp,
               [=](const ParallelConfig& p) {
                 d_check("dense-tp-attn")(p);
                 require(p.dense_tp() == p.attn_tp(), "dense-tp-attn", "needs moe_dense_tp == attn_tp");
               }});
  v.push_back({"dense-tp1", "", "dense MLP replicated (moe_dense_tp = 1): tokens scattered over attention TP ranks",
               [=](int n) { return dense_layout(n, 1); }, CpSplit::None, moe_dp_gather,
               {MlpComm::ScatterReplicated, GroupKind::AttnTp, GroupKind::AttnTp},
               [=](const ParallelConfig& p) {
                 d_check("dense-tp1")(p);
                 require(p.dense_tp() == 1, "dense-tp1", "needs moe_dense_tp == 1");
               }});
  v.push_back({"dense-tp-full", "", "dense MLP TP over the whole world (moe_dense_tp none) with a DP gather",
               [=](int n) { return dense_layout(n, std::nullopt); }, CpSplit::None, moe_dp_gather, kDenseFullGather,
               [=](const ParallelConfig& p) {
                 d_check("dense-tp-full")(p);
                 require(!p.moe_dense_tp, "dense-tp-full", "needs moe_dense_tp none");
               }});
  return v;
}

}  // namespace

const std::vector<LayoutSpec>& all_layouts() {
  static const std::vector<LayoutSpec> layouts = make_layouts();
  return layouts;
}

const LayoutSpec& find_layout(const std::string& name) {
  std::string names;
  for (const LayoutSpec& l : all_layouts()) {
    if (l.name == name) return l;
    names += (names.empty() ? "" : ", ") + l.name;
  }
  throw InputError("--layout '" + name + "': unknown (layouts: " + names + ", or all)");
}

ParallelConfig layout_parallel(const LayoutSpec& layout, int ranks, const ModelConfig& model,
                               const std::function<void(ParallelConfig&)>& overrides) {
  if (ranks < 1) throw InputError("the number of ranks must be >= 1");
  ParallelConfig p = layout.default_parallel(ranks);
  if (overrides) overrides(p);
  validate(p, model);
  layout.check_parallel(p);
  check_shardable(model, p);
  return p;
}

}  // namespace lb
