#include "harness/runtime/interrupts.h"

#include "harness/runtime/final_writes.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

namespace lb {

namespace {

int wake_pipe[2] = {-1, -1};
std::atomic<bool> handling{false};

// Only async-signal-safe calls here: the work happens on the watcher thread.
void on_signal(int signal_number) {
  if (handling.exchange(true)) {  // the second signal: no more waiting
    ::signal(signal_number, SIG_DFL);
    ::raise(signal_number);
    return;
  }
  const unsigned char byte = static_cast<unsigned char>(signal_number);
  const int saved = errno;
  (void)!::write(wake_pipe[1], &byte, 1);
  errno = saved;
}

void watch_for_signals() {
  unsigned char byte = 0;
  while (::read(wake_pipe[0], &byte, 1) != 1)
    if (errno != EINTR) return;
  const int signal_number = byte;
  const std::string name = signal_number == SIGINT ? "SIGINT" : "SIGTERM";
  std::cout << std::flush;
  std::cerr << "\ninterrupted by " << name << ": writing the open records, then exiting" << std::endl;
  run_final_writes({"interrupted by " + name + " before the run finished", name});
  std::cout << std::flush;
  std::cerr << std::flush;
  std::fflush(nullptr);
  std::_Exit(128 + signal_number);
}

}  // namespace

void end_cleanly_on_interrupt() {
  if (wake_pipe[0] >= 0) return;
  if (::pipe2(wake_pipe, O_CLOEXEC) != 0) return;  // without the pipe the default handlers stay
  std::thread(watch_for_signals).detach();
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

}  // namespace lb
