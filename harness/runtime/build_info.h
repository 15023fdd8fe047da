#pragma once
// What a paper needs to rerun a record's measurement besides its command and commit: the library
// versions this binary runs with, the GPUs it sees, and the environment variables that change how
// NCCL, CUDA or LibTorch behave.
#include <map>
#include <string>
#include <vector>

namespace lb {

// "libtorch", and in CUDA builds "cuda_runtime", "cuda_driver", "nccl" (as "major.minor.patch").
std::map<std::string, std::string> software_versions();

// One line per visible GPU: "NVIDIA H200, 143155 MiB, SM 1980 MHz, memory 3201 MHz" (empty without CUDA).
std::vector<std::string> gpu_descriptions();

// The set variables among NCCL_*, CUDA_*, TORCH_*, NVSHMEM_*, OMP_NUM_THREADS, LB_* and the MPI
// launcher's rank variables, by name.
std::map<std::string, std::string> relevant_environment();

}  // namespace lb
