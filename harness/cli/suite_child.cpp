#include "harness/cli/suite_child.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace lb {

namespace {

std::string self_executable() {
  std::vector<char> buffer(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buffer.data(), buffer.size() - 1);
  if (n <= 0) throw std::runtime_error(std::string("suite: cannot find this executable: ") + std::strerror(errno));
  return std::string(buffer.data(), size_t(n));
}

std::string last_line(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

}  // namespace

SuiteChildResult run_suite_child(const SuiteRun& run, const std::string& record, const std::string& log) {
  const std::string exe = self_executable();
  std::vector<std::string> args = {exe};
  args.insert(args.end(), run.args.begin(), run.args.end());
  args.push_back("--json");
  args.push_back(record);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) throw std::runtime_error("suite: cannot write " + log + ": " + std::strerror(errno));
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out);
    throw std::runtime_error(std::string("suite: fork failed: ") + std::strerror(errno));
  }
  if (pid == 0) {  // the child: only async-signal-safe calls until exec
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(out);
  SuiteChildResult result;
  const auto deadline = start + std::chrono::seconds(run.timeout_s);
  bool terminated = false;
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) throw std::runtime_error(std::string("suite: waitpid: ") + std::strerror(errno));
    const auto now = std::chrono::steady_clock::now();
    if (!terminated && now > deadline) {
      ::kill(pid, SIGTERM);  // the run writes its partial record and exits 143
      terminated = result.timed_out = true;
    } else if (terminated && now > deadline + std::chrono::seconds(30)) {
      ::kill(pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  result.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (result.exit_code != 0) {
    result.error = last_line(log);
    if (result.timed_out) result.error = "past its timeout of " + std::to_string(run.timeout_s) + " s; " + result.error;
  }
  return result;
}

}  // namespace lb
