#include "harness/runtime/host_trace.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/torch.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <stdexcept>

namespace lb {

namespace {

namespace profiler = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

std::set<ActivityType> activities() {
  std::set<ActivityType> kinds{ActivityType::CPU};
  if (torch::cuda::is_available()) kinds.insert(ActivityType::CUDA);
  return kinds;
}

}  // namespace

bool HostTrace::available(std::string* why) {
  const std::filesystem::path probe =
      std::filesystem::temp_directory_path() / ("layoutbench_trace_probe_" + std::to_string(::getpid()) + ".json");
  try {
    HostTrace trace;
    trace.save(probe.string());
  } catch (const std::exception& e) {
    if (why) *why = e.what();
    std::remove(probe.c_str());
    return false;
  }
  std::remove(probe.c_str());
  return true;
}

HostTrace::HostTrace() {
  const ProfilerConfig config(ProfilerState::KINETO);
  try {
    profiler::prepareProfiler(config, activities());
    profiler::enableProfiler(config, activities());
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("trace: LibTorch's profiler (Kineto) did not start: ") + e.what());
  }
  running_ = true;
}

HostTrace::~HostTrace() {
  if (!running_) return;
  try {
    profiler::disableProfiler();
  } catch (...) {
    // Unwinding already: the trace is lost, the error that unwinds is the one to report.
  }
}

void HostTrace::save(const std::string& path) {
  if (!running_) throw std::runtime_error("trace: save called twice");
  running_ = false;
  std::unique_ptr<profiler::ProfilerResult> result = profiler::disableProfiler();
  if (!result) throw std::runtime_error("trace: the profiler returned no result");
  try {
    result->save(path);
  } catch (const c10::Error& e) {
    throw std::runtime_error("trace: LibTorch could not write " + path + ": " + e.what_without_backtrace());
  }
}

}  // namespace lb
