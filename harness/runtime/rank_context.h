#pragma once
// One rank's view of a parallel run: its rank, device, the world communicator, and the groups it
// belongs to. A launcher (CPU ranks as threads, NCCL threads, or one process per GPU under
// mpirun/srun) makes one context per rank and runs the same function on each.
#include "harness/runtime/communicator.h"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lb {

class RankContext {
 public:
  virtual ~RankContext() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual torch::Device device() const = 0;
  virtual Communicator& world() = 0;
  // The communicator of the group in `partition` (disjoint rank lists covering every rank) that
  // holds this rank; its rank order is the list's order. Collective over the world: every rank
  // calls it with the same partition, in the same order.
  virtual std::shared_ptr<Communicator> split(const std::string& name,
                                              const std::vector<std::vector<int>>& partition) = 0;
  // Waits until every rank has arrived, all of them having launched every collective before it.
  // Call it on both sides of a phase that allocates or frees device memory or communicators: with
  // one thread per GPU in one process, a cudaFree can wait on every GPU of the process, and
  // deadlocks if a peer thread's collective is still waiting for this rank to launch its part.
  virtual void quiesce() { world().barrier(); }
};

using RankFunction = std::function<void(RankContext&)>;

// Checks a partition of 0..world_size-1 (each rank exactly once) and returns the index of the
// group holding `rank`; throws std::invalid_argument naming the problem otherwise.
size_t group_index_of(const std::vector<std::vector<int>>& partition, int world_size, int rank);

}  // namespace lb
