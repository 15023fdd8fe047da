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
