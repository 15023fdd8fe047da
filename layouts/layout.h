#pragma once
// A parallel layout, described: its process groups (a ParallelConfig for a rank count), how the
// tokens are split for attention, and the communication around the MLP of MoE and dense layers.
// The model math is shared (oracles/); layouts/layout_rank.cpp runs any description.
#include "harness/model/model_config.h"
#include "harness/runtime/parallel_config.h"
#include "layouts/token_split.h"

#include <functional>
#include <string>
#include <vector>

namespace lb {

// What happens around a layer's MLP (MoE or dense) after attention.
enum class MlpComm {
  // The MLP runs on the rank's own tokens (identical across `reduce`); partial sums all-reduced.
  AllReduce,
  // Layout A: all_gather the CP group's tokens (equal counts), MLP, reduce_scatter back.
  GatherReduceScatter,
  // all_gatherv over `gather`, MLP, all_reduce over `reduce`, keep this rank's rows
  // (layout B's MOE_FULL, layout C's old path, dense TP on the full group).
  GatherAllReduce,
  // Layout C: all_gatherv over `gather`, MLP, one reduce_scatterv over `gather` back to each rank.
  GatherReduceScatterv,
  // Dense TP 1: the attention output is reduce-scattered over the attention TP group instead of
  // all-reduced, the replicated MLP runs on the slice, all_gatherv restores the rows.
  ScatterReplicated,
};
std::string to_string(MlpComm comm);

struct MlpStep {
  MlpComm comm = MlpComm::AllReduce;
  GroupKind gather = GroupKind::World;
  GroupKind reduce = GroupKind::World;
};

struct LayoutSpec {
  std::string name;
  std::string replaces;  // the baseline this layout replaced ("" for a baseline)
  std::string summary;
  std::function<ParallelConfig(int ranks)> default_parallel;
  CpSplit split = CpSplit::None;
  MlpStep moe;    // MoE layers
  MlpStep dense;  // dense layers
  // Throws InputError when a parallel config does not fit this layout (rule named).
  std::function<void(const ParallelConfig&)> check_parallel;
};

const std::vector<LayoutSpec>& all_layouts();
// Throws InputError listing the names when `name` is unknown.
const LayoutSpec& find_layout(const std::string& name);

// The parallel config a run uses: the layout's default for `ranks`, with any explicitly given
// sizes (`overrides`, from --dp, --attn-cp, ...) applied, validated for the model and the layout.
ParallelConfig layout_parallel(const LayoutSpec& layout, int ranks, const ModelConfig& model,
                               const std::function<void(ParallelConfig&)>& overrides = {});

}  // namespace lb
