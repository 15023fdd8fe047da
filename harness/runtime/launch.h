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
// True unless this process is one of an mpirun/srun launch and not the one of world rank 0: the
// process that prints the results and writes the records.
bool hosts_world_rank_zero();

// Runs fn on every rank and rethrows the first rank's own error, after handing it to the open run
// records (note_run_failure). With Nccl under mpirun/srun this process runs only its own rank and
// `ranks` must equal the number of processes. Throws InputError (before any GPU work) when the
// backend is not built in or there are fewer GPUs than ranks.
void run_ranks(Backend backend, int ranks, const RankFunction& fn,
               std::chrono::milliseconds timeout = std::chrono::seconds(120));

}  // namespace lb
