#include "harness/runtime/rank_context.h"

#include <stdexcept>

namespace lb {

size_t group_index_of(const std::vector<std::vector<int>>& partition, int world_size, int rank) {
  std::vector<int> seen(world_size, 0);
  size_t mine = partition.size();
  for (size_t g = 0; g < partition.size(); ++g) {
    if (partition[g].empty()) throw std::invalid_argument("group partition: group " + std::to_string(g) + " is empty");
    for (int r : partition[g]) {
      if (r < 0 || r >= world_size)
        throw std::invalid_argument("group partition: rank " + std::to_string(r) + " outside world of " +
                                    std::to_string(world_size));
      if (seen[r]++) throw std::invalid_argument("group partition: rank " + std::to_string(r) + " listed twice");
      if (r == rank) mine = g;
    }
  }
  for (int r = 0; r < world_size; ++r)
    if (!seen[r]) throw std::invalid_argument("group partition: rank " + std::to_string(r) + " is in no group");
  return mine;
}

}  // namespace lb
