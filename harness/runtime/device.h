#pragma once
// The compute device: choosing it (with a clear error when CUDA is asked for and absent),
// synchronizing for honest timings, naming it and reading its peak memory for reports.
#include <torch/torch.h>

#include <string>

namespace lb {

// "cpu" or "cuda" / "cuda:N"; InputError naming the flag when CUDA is not available.
torch::Device parse_device(const std::string& text, const std::string& flag = "--device");
torch::ScalarType parse_dtype(const std::string& text, const std::string& flag = "--dtype");
const char* dtype_name(torch::ScalarType dtype);

void synchronize(torch::Device device);
std::string device_name(torch::Device device);
void reset_peak_memory(torch::Device device);
// Peak bytes allocated by LibTorch on a CUDA device, or the process's peak resident set on CPU.
int64_t peak_memory_bytes(torch::Device device);

}  // namespace lb
