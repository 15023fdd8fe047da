#include "harness/runtime/device.h"

#include "harness/runtime/errors.h"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>
#include <thread>

#ifdef LB_HAVE_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_profiler_api.h>
#endif

namespace lb {

torch::Device parse_device(const std::string& text, const std::string& flag) {
  if (text == "cpu") return torch::kCPU;
  if (text.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      throw InputError(flag + " " + text + ": no CUDA device is available (this build " +
#ifdef LB_HAVE_CUDA
                       "has CUDA but the driver reports no GPU)");
#else
                       "uses a LibTorch without CUDA)");
#endif
    torch::Device device(text);
    if (device.has_index() && device.index() >= int64_t(torch::cuda::device_count()))
      throw InputError(flag + " " + text + ": only " + std::to_string(torch::cuda::device_count()) + " GPU(s) present");
    return device;
  }
  throw InputError(flag + " '" + text + "': expected cpu or cuda");
}

torch::ScalarType parse_dtype(const std::string& text, const std::string& flag) {
  if (text == "f32" || text == "fp32" || text == "float32") return torch::kFloat32;
  if (text == "bf16" || text == "bfloat16") return torch::kBFloat16;
  if (text == "f16" || text == "fp16" || text == "float16") return torch::kFloat16;
  if (text == "f64" || text == "fp64" || text == "float64") return torch::kFloat64;
  throw InputError(flag + " '" + text + "': expected f32, bf16, f16 or f64");
}

torch::ScalarType parse_model_dtype(const std::string& text, torch::Device device, bool collectives,
                                    const std::string& flag) {
  const torch::ScalarType dtype = parse_dtype(text, flag);
  const std::string takes = collectives ? "f32 or bf16, and f16 on GPUs" : "f32, bf16 or f64, and f16 on GPUs";
  if (dtype == torch::kFloat16 && !device.is_cuda())
    throw InputError(flag + " '" + text + "': f16 does not run on CPU (LibTorch has no half-precision CPU matmul); "
                     "this run takes " + takes);
  if (dtype == torch::kFloat64 && collectives)
    throw InputError(flag + " '" + text + "': ranks exchange f32, bf16 or f16 only; this run takes " + takes);
  return dtype;
}

const char* dtype_name(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return "f32";
    case torch::kBFloat16: return "bf16";
    case torch::kFloat16: return "f16";
    case torch::kFloat64: return "f64";
    default: return "?";
  }
}

void synchronize(torch::Device device) {
#ifdef LB_HAVE_CUDA
  if (device.is_cuda()) torch::cuda::synchronize(device.index() < 0 ? 0 : device.index());
#endif
}

void cuda_profiler_range(bool start) {
#ifdef LB_HAVE_CUDA
  const cudaError_t status = start ? cudaProfilerStart() : cudaProfilerStop();
  if (status != cudaSuccess) throw std::runtime_error(std::string("cudaProfiler: ") + cudaGetErrorString(status));
#else
  (void)start;
#endif
}

std::string device_name(torch::Device device) {
#ifdef LB_HAVE_CUDA
  if (device.is_cuda()) {
    const cudaDeviceProp* prop = at::cuda::getDeviceProperties(device.index() < 0 ? 0 : device.index());
    return std::string(prop->name) + " (" + std::to_string(prop->totalGlobalMem >> 20) + " MiB)";
  }
#endif
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model = "cpu";
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  return model + " (" + std::to_string(std::thread::hardware_concurrency()) + " threads)";
}

void reset_peak_memory(torch::Device device) {
#ifdef LB_HAVE_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
#endif
}

int64_t peak_memory_bytes(torch::Device device) {
#ifdef LB_HAVE_CUDA
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    // Index 0 is StatType::AGGREGATE (all pool kinds); the enum moved namespaces across LibTorch versions.
    return stats.allocated_bytes[0].peak;
  }
#endif
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return int64_t(usage.ru_maxrss) * 1024;
}

int64_t memory_capacity_bytes(torch::Device device) {
#ifdef LB_HAVE_CUDA
  const int index = device.index() < 0 ? 0 : device.index();
  if (device.is_cuda() && index < int(torch::cuda::device_count()))
    return int64_t(at::cuda::getDeviceProperties(index)->totalGlobalMem);
#endif
  return int64_t(sysconf(_SC_PHYS_PAGES)) * int64_t(sysconf(_SC_PAGE_SIZE));
}

}  // namespace lb
