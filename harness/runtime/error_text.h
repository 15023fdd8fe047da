#pragma once
// The message of an exception as a user should read it. LibTorch's errors carry a C++ backtrace in
// what() (dozens of frames, several screens); the first lines are what went wrong, and a rank
// that ran out of memory is said to have run out of memory.
#include <exception>
#include <string>

namespace lb {

std::string error_text(const std::exception& e);

}  // namespace lb
