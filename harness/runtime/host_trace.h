#pragma once
// A timeline of a span of work from LibTorch's profiler (Kineto): the CPU ops and CUDA runtime calls
// of the thread that starts it, and every kernel, copy and memset on every GPU of the process (CUPTI
// sees the whole process), saved as a Chrome trace (JSON, chrome://tracing or Perfetto). It answers
// what Nsight Systems would where the machine has none: when each GPU waits, and on which host call.
// scripts/nsys_prefill_summary.py reads it.
#include <memory>
#include <string>

namespace lb {

class HostTrace {
 public:
  // Whether this LibTorch can write a trace (Debian's CPU LibTorch 1.13 has no Kineto: its profiler
  // starts but cannot save); a short trace to a temporary file tells, so a flag can be refused
  // before any work. `why` gets the reason when not.
  static bool available(std::string* why);

  // Starts the profiler; std::runtime_error when this LibTorch has no Kineto or a profiler already runs.
  HostTrace();
  ~HostTrace();
  HostTrace(const HostTrace&) = delete;
  HostTrace& operator=(const HostTrace&) = delete;
  // Stops the profiler and writes the trace to `path` (std::runtime_error when it cannot).
  void save(const std::string& path);

 private:
  bool running_ = false;
};

}  // namespace lb
