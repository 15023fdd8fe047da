#pragma once
// Planted layout bugs, for testing the oracle: each one is a mistake a layout author could make.
// `check --mutation NAME` runs a layout with one of them; the mutation tests require the oracle to
// flag every one and to locate it at the layer and capture point where it first shows.
#include <string>
#include <vector>

namespace lb {

enum class Mutation {
  None,
  ZigzagKeyBlocksReversed,     // CP keys placed as if the zigzag blocks were gathered in reverse order
  RoundRobinKeysAsContiguous,  // CP keys placed in original order, not the round-robin gather order
  RopeLocalPositions,          // RoPE on a CP rank with local instead of original positions
  MissingResidualAdd,          // h = attention output, without x
  ReduceScattervOffByOne,      // the MoE output's rows shifted by one before reduce_scatterv
  AllReduceWrongGroup,         // the attention output all-reduced over the world, not attention TP
  RouterNotRenormalized,       // top-k weights not renormalized to sum 1
  SharedExpertTwice,           // shared experts replicated on every MoE rank, then summed
  // Single-row bugs: one token of the batch is wrong, which a per-layer L2 dilutes in a long one.
  ReduceScattervBoundaryRow,   // MoE reduce_scatterv: rank 0 drops its partial sum of rank 1's first row
  AllGathervBoundaryRow,       // MoE all_gatherv: rank 1's first row replaced by rank 0's last
  CpFirstTokenPosition,        // the last CP rank's first token rotated (and masked) one position late
  LastTokenOwnSequence,        // the first sequence's last token cut off as a sequence of its own
  // Bugs only a decode step has (the prefill is untouched), for the decode oracle:
  DecodePositionOffByOne,      // a decode token rotated at its slot's length + 1
  DecodeKeysToNextSlot,        // a decode step's new keys written to the next sequence's slot
  DecodeAttendsOneShort,       // a decode query reads one cached position fewer than it has
};

struct MutationSpec {
  Mutation mutation;
  std::string name;
  std::string description;
};

const std::vector<MutationSpec>& all_mutations();
// Throws InputError listing the names for an unknown one; "none" is Mutation::None.
Mutation find_mutation(const std::string& name);

}  // namespace lb
