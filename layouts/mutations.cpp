#include "layouts/mutations.h"

#include "harness/runtime/errors.h"

namespace lb {

const std::vector<MutationSpec>& all_mutations() {
  static const std::vector<MutationSpec> v = {
      {Mutation::ZigzagKeyBlocksReversed, "zigzag-key-blocks-reversed",
       "CP keys placed as if each rank's zigzag blocks came in reverse order"},
      {Mutation::RoundRobinKeysAsContiguous, "round-robin-keys-as-contiguous",
       "CP keys placed in original token order instead of the round-robin gather order"},
      {Mutation::RopeLocalPositions, "rope-local-positions", "RoPE with local instead of original positions"},
      {Mutation::MissingResidualAdd, "missing-residual-add", "attention output not added to the residual"},
      {Mutation::ReduceScattervOffByOne, "reduce-scatterv-off-by-one",
       "MoE output rows off by one in the reduce_scatterv"},
      {Mutation::AllReduceWrongGroup, "all-reduce-wrong-group",
       "attention output all-reduced over the world instead of the attention TP group"},
      {Mutation::RouterNotRenormalized, "router-not-renormalized", "top-k weights not renormalized"},
      {Mutation::SharedExpertTwice, "shared-expert-twice", "shared experts counted on every MoE rank"},
      {Mutation::ReduceScattervBoundaryRow, "reduce-scatterv-boundary-row",
       "rank 0's partial MoE sum of the first row it sends to rank 1 dropped from the reduce_scatterv"},
      {Mutation::AllGathervBoundaryRow, "all-gatherv-boundary-row",
       "the MoE input's all_gatherv: rank 1's first row overwritten by rank 0's last"},
      {Mutation::CpFirstTokenPosition, "cp-first-token-position",
       "the last CP rank's first token at its position + 1 (RoPE and causal mask)"},
      {Mutation::LastTokenOwnSequence, "last-token-own-sequence",
       "the first sequence's last token cut off as a sequence of its own (sequence boundary one token early)"},
      {Mutation::DecodePositionOffByOne, "decode-position-off-by-one",
       "a decode step's new token rotated one position too far"},
      {Mutation::DecodeKeysToNextSlot, "decode-keys-to-next-slot",
       "a decode step's keys written to the next sequence's cache slot"},
      {Mutation::DecodeAttendsOneShort, "decode-attends-one-short", "a decode query reads one cached position too few"},
  };
  return v;
}

Mutation find_mutation(const std::string& name) {
  if (name.empty() || name == "none") return Mutation::None;
  std::string names;
  for (const auto& m : all_mutations()) {
    if (m.name == name) return m.mutation;
    names += (names.empty() ? "" : ", ") + m.name;
  }
  throw InputError("--mutation '" + name + "': unknown (" + names + ")");
}

}  // namespace lb
