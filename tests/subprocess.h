#pragma once
// The real layoutbench binary as a child process, for what an in-process call cannot show: exit
// codes after a signal, and a process that must end although one of its rank threads is stuck.
// Output goes to files in a temp directory; every wait has a limit, past which the child is killed
// (and the test fails on the limit rather than hanging).
#include "test_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace lb::test {

inline std::string read_file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_file_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

class Child {
 public:
  explicit Child(const std::vector<std::string>& args) : start_(std::chrono::steady_clock::now()) {
    std::vector<std::string> argv = {LB_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(::open((dir_ / "stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 1);
      ::dup2(::open((dir_ / "stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 2);
      std::vector<char*> raw;
      for (std::string& a : argv) raw.push_back(a.data());
      raw.push_back(nullptr);
      ::execv(raw[0], raw.data());
      ::_exit(127);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (!finished_ && pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  void signal(int sig) { ::kill(pid_, sig); }

  // Waits up to `limit` for the child to end; kills it past that. True when it ended by itself.
  bool wait(std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!finished_) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        finished_ = true;
        status_ = status;
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status_, 0);
        finished_ = true;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    return true;
  }

  // Polls `ready` every 50 ms for up to `limit`; false if the child ended or time ran out first.
  template <typename F>
  bool wait_until(F&& ready, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (ready()) return true;
      if (::waitpid(pid_, &status_, WNOHANG) == pid_) {
        finished_ = true;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  int exit_code() const { return WIFEXITED(status_) ? WEXITSTATUS(status_) : -1; }
  int killed_by() const { return WIFSIGNALED(status_) ? WTERMSIG(status_) : 0; }
  double seconds() const { return seconds_; }  // from start to end
  std::string out() const { return read_file_text(dir_ / "stdout"); }
  std::string err() const { return read_file_text(dir_ / "stderr"); }

 private:
  TempDir dir_;
  std::chrono::steady_clock::time_point start_;
  pid_t pid_ = -1;
  bool finished_ = false;
  int status_ = 0;
  double seconds_ = 0;
};

}  // namespace lb::test
