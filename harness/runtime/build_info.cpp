#include "harness/runtime/build_info.h"

#include <torch/version.h>

#include <cstring>

#ifdef LB_HAVE_CUDA
#include <cuda_runtime.h>
#include <nccl.h>
#endif

extern char** environ;

namespace lb {

namespace {

#ifdef LB_HAVE_CUDA
// CUDA's integer versions (12040 = 12.4) as text.
std::string cuda_version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
#endif

}  // namespace

std::map<std::string, std::string> software_versions() {
  std::map<std::string, std::string> out = {{"libtorch", std::to_string(TORCH_VERSION_MAJOR) + "." +
                                                             std::to_string(TORCH_VERSION_MINOR) + "." +
                                                             std::to_string(TORCH_VERSION_PATCH)}};
#ifdef LB_HAVE_CUDA
  int v = 0;
  if (cudaRuntimeGetVersion(&v) == cudaSuccess) out["cuda_runtime"] = cuda_version_text(v);
  if (cudaDriverGetVersion(&v) == cudaSuccess && v > 0) out["cuda_driver"] = cuda_version_text(v);
  if (ncclGetVersion(&v) == ncclSuccess)  // NCCL >= 2.9: major * 10000 + minor * 100 + patch
    out["nccl"] = std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." + std::to_string(v % 100);
#endif
  return out;
}

std::vector<std::string> gpu_descriptions() {
  std::vector<std::string> out;
#ifdef LB_HAVE_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // a machine without a usable GPU: nothing to describe, and no sticky error
    return out;
  }
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop{};
    int sm_khz = 0, memory_khz = 0;
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) continue;
    cudaDeviceGetAttribute(&sm_khz, cudaDevAttrClockRate, d);
    cudaDeviceGetAttribute(&memory_khz, cudaDevAttrMemoryClockRate, d);
    out.push_back(std::string(prop.name) + ", " + std::to_string(prop.totalGlobalMem >> 20) + " MiB, SM " +
                  std::to_string(sm_khz / 1000) + " MHz, memory " + std::to_string(memory_khz / 1000) + " MHz");
  }
#endif
  return out;
}

std::map<std::string, std::string> relevant_environment() {
  static const char* prefixes[] = {"NCCL_", "CUDA_", "TORCH_", "NVSHMEM_", "LB_", "OMPI_COMM_WORLD_", "SLURM_PROCID"};
  std::map<std::string, std::string> out;
  for (char** e = environ; e && *e; ++e) {
    const char* entry = *e;
    const char* eq = std::strchr(entry, '=');
    if (!eq) continue;
    const std::string name(entry, size_t(eq - entry));
    bool keep = name == "OMP_NUM_THREADS";
    for (const char* p : prefixes) keep = keep || name.rfind(p, 0) == 0;
    if (keep) out[name] = eq + 1;
  }
  return out;
}

}  // namespace lb
