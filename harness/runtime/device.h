#pragma once
// The compute device: choosing it (with a clear error when CUDA is asked for and absent),
// synchronizing for honest timings, naming it and reading its peak memory for reports.
#include <torch/torch.h>

#include <string>

namespace lb {

// "cpu" or "cuda" / "cuda:N"; InputError naming the flag when CUDA is not available.
torch::Device parse_device(const std::string& text, const std::string& flag = "--device");
torch::ScalarType parse_dtype(const std::string& text, const std::string& flag = "--dtype");
// The dtype a model computes in on `device`, refused (InputError naming the flag) where it cannot
// run: f16 on CPU (LibTorch 1.13 has no half CPU matmul: "addmm_impl_cpu_" not implemented for
// 'Half', a stack trace after the weights loaded), and f64 when ranks exchange activations (the
// communicators move f32, bf16 and f16; f64 failed only after the references ran).
torch::ScalarType parse_model_dtype(const std::string& text, torch::Device device, bool collectives,
                                    const std::string& flag = "--dtype");
const char* dtype_name(torch::ScalarType dtype);

void synchronize(torch::Device device);
// Brackets the GPU work that a profiler started with `ncu --profile-from-start off` measures (no-op
// without CUDA).
void cuda_profiler_range(bool start);
std::string device_name(torch::Device device);
void reset_peak_memory(torch::Device device);
// Peak bytes allocated by LibTorch on a CUDA device, or the process's peak resident set on CPU.
int64_t peak_memory_bytes(torch::Device device);
// All the memory a run on `device` could use: the GPU's global memory, or the host's physical memory.
int64_t memory_capacity_bytes(torch::Device device);

}  // namespace lb
