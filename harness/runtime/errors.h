#pragma once
// Errors that name what the user gave us (a file, a tensor, a flag, a config key).
// The CLI prints their message alone and exits non-zero, before any GPU work starts.
#include <stdexcept>
#include <string>

namespace lb {

struct InputError : std::runtime_error {
  explicit InputError(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace lb
