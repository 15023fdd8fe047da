#include "harness/runtime/error_text.h"

#include <c10/util/Exception.h>

namespace lb {

namespace {

bool contains(const std::string& text, const char* part) { return text.find(part) != std::string::npos; }

// Drops LibTorch's "Exception raised from ..." trailer and any frame lines after it.
std::string without_backtrace(std::string text) {
  const size_t at = text.find("Exception raised from");
  if (at != std::string::npos) text.erase(at);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

std::string error_text(const std::exception& e) {
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  if (!torch_error) return e.what();
  const std::string text = without_backtrace(torch_error->what_without_backtrace());
  // CUDA: c10::OutOfMemoryError; the CPU allocator: "DefaultCPUAllocator: not enough memory" or
  // "can't allocate memory", depending on the version and on how the allocation failed.
  const bool out_of_memory = dynamic_cast<const c10::OutOfMemoryError*>(&e) || contains(text, "not enough memory") ||
                             contains(text, "can't allocate memory") || contains(text, "out of memory");
  return out_of_memory ? "out of memory: " + text : text;
}

}  // namespace lb
