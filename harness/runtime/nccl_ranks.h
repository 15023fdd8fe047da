#pragma once
// NCCL ranks: one thread per local GPU in this process, or this process as one rank of an
// mpirun/srun launch. Communicators are non-blocking so that a peer that dies or never joins ends
// the run with a CommError after the timeout instead of a hang. Built only with CUDA Torch.
#include "harness/runtime/rank_context.h"

#include <chrono>

namespace lb {

void run_nccl_threads(int gpus, const RankFunction& fn, std::chrono::milliseconds timeout);

// `expected_ranks` must equal the MPI world size (0: take it).
void run_nccl_mpi(int expected_ranks, const RankFunction& fn, std::chrono::milliseconds timeout);

}  // namespace lb
