#include "harness/runtime/launch.h"

#include "harness/runtime/cpu_ranks.h"
#include "harness/runtime/error_text.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/final_writes.h"
#ifdef LB_HAVE_CUDA
#include "harness/runtime/nccl_ranks.h"
#endif

#include <cstdlib>

namespace lb {

Backend parse_backend(const std::string& name) {
  if (name == "cpu") return Backend::Cpu;
  if (name == "nccl") return Backend::Nccl;
  throw InputError("--backend '" + name + "': expected cpu or nccl");
}

std::string to_string(Backend backend) { return backend == Backend::Cpu ? "cpu" : "nccl"; }

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"}) {
    const char* v = std::getenv(var);
    if (v && std::atoi(v) > 1) return true;
  }
  return false;
}

bool hosts_world_rank_zero() {
  if (!launched_by_mpi()) return true;
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"}) {
    const char* v = std::getenv(var);
    if (v && *v) return std::atoi(v) == 0;
  }
  return true;
}

const char* default_dtype(Backend backend) { return backend == Backend::Nccl ? "bf16" : "f32"; }

Backend default_backend() {
#ifdef LB_HAVE_CUDA
  return Backend::Nccl;
#else
  return Backend::Cpu;
#endif
}

namespace {

void start_ranks(Backend backend, int ranks, const RankFunction& fn, std::chrono::milliseconds timeout) {
  if (backend == Backend::Cpu) {
    run_cpu_ranks(ranks, fn, timeout);
    return;
  }
#ifdef LB_HAVE_CUDA
  if (launched_by_mpi()) run_nccl_mpi(ranks, fn, timeout);
  else run_nccl_threads(ranks, fn, timeout);
#else
  throw InputError("--backend nccl: this layoutbench was built without CUDA/NCCL (LibTorch without CUDA); "
                   "use --backend cpu (CPU ranks)");
#endif
}

}  // namespace

void run_ranks(Backend backend, int ranks, const RankFunction& fn, std::chrono::milliseconds timeout) {
  if (ranks < 1) throw InputError("the number of ranks must be >= 1 (got " + std::to_string(ranks) + ")");
  try {
    start_ranks(backend, ranks, fn, timeout);
  } catch (const std::exception& e) {
    note_run_failure(error_text(e));  // the open records get the error before their frames unwind
    throw;
  }
}

}  // namespace lb
