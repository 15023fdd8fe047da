#pragma once
// A one-line progress display for long runs (layers, layouts, benchmark rows), redrawn in place
// on a terminal; silent when stderr is not a terminal, so logs and CI output stay clean.
#include <chrono>
#include <cstdint>
#include <string>

namespace lb {

class Progress {
 public:
  Progress(std::string what, int64_t total);
  ~Progress();  // clears the line
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void step(const std::string& detail = "");  // one more done
  void clear();  // erases the line, so that other output can be printed; the next step redraws it

 private:
  std::string what_;
  int64_t total_, done_ = 0;
  bool on_terminal_, shown_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace lb
