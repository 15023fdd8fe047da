#pragma once
// The same collectives called straight on NCCL, with no checks, allocation or records: the yardstick
// that `layoutbench collectives` holds the Communicator against (CUDA builds only).
#include "harness/runtime/nccl_communicator.h"

#include <string>
#include <vector>

namespace lb {

// Launches `op` once on preallocated buffers (same shapes as the Communicator call; for the
// padded v-ops `in`/`out` are the padded buffers). op: all_reduce, all_gather, reduce_scatter,
// broadcast, all_to_allv, all_gatherv/grouped, reduce_scatterv/grouped, all_gatherv/padded,
// reduce_scatterv/padded.
void nccl_direct(NcclCommunicator& comm, const std::string& op, torch::Tensor& in, torch::Tensor& out,
                 const std::vector<int64_t>& rows, const std::vector<int64_t>& recv_rows);

}  // namespace lb
