#pragma once
// Starting the ranks of a parallel run: CPU ranks (threads sharing memory), NCCL with one thread
// per local GPU, or NCCL with one process per GPU started by mpirun/srun (multi-node).
#include "harness/runtime/rank_context.h"

#include <chrono>
#include <string>

namespace lb {

enum class Backend { Cpu, Nccl };
Backend parse_backend(const std::string& name);  // "cpu" | "nccl"
std::string to_string(Backend backend);
Backend default_backend();  // nccl in CUDA builds, else cpu
// The dtype a run takes when none is given: "bf16" on GPUs (nccl), "f32" on CPU ranks.
const char* default_dtype(Backend backend);

// True when this process was started by mpirun/srun with more than one process.
bool launched_by_mpi();

// Runs fn on every rank and rethrows the first rank's own error. With Nccl under mpirun/srun this
// process runs only its own rank and `ranks` must equal the number of processes. Throws InputError
// (before any GPU work) when the backend is not built in or there are fewer GPUs than ranks.
void run_ranks(Backend backend, int ranks, const RankFunction& fn,
               std::chrono::milliseconds timeout = std::chrono::seconds(120));

}  // namespace lb
