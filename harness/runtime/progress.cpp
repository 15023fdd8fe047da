#include "harness/runtime/progress.h"

#include <cstdio>
#include <unistd.h>

namespace lb {

Progress::Progress(std::string what, int64_t total)
    : what_(std::move(what)), total_(total), on_terminal_(isatty(fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() { clear(); }

void Progress::clear() {
  if (!shown_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  shown_ = false;
}

void Progress::step(const std::string& detail) {
  ++done_;
  if (!on_terminal_) return;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double left = done_ < total_ ? s / double(done_) * double(total_ - done_) : 0.0;
  std::fprintf(stderr, "\r\033[K%s %lld/%lld %s (%.0f s, about %.0f s left)", what_.c_str(), (long long)done_,
               (long long)total_, detail.c_str(), s, left);
  std::fflush(stderr);
  shown_ = true;
}

}  // namespace lb
