#pragma once
// The threads of one parallel run (CPU ranks, or one thread per local GPU), joined with a bound.
// Once a rank has failed, the others get a short grace to notice and end; one that does not (stuck
// in a computation, in a CUDA call that waits on a hung collective, in an injected hang) is left
// behind and named, so that a stuck thread cannot hold the process. A thread left behind may still
// use what its body captured from the caller's frame, so the process must then end without
// unwinding: the CLI writes its records and exits at once when a command left one behind.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace lb {

// How long ranks get to end after the first failure before they are left behind.
constexpr std::chrono::milliseconds kStopGrace{2000};

class RankThreads {
 public:
  // Starts body(rank) on one thread per rank. A body must catch its own errors.
  RankThreads(int ranks, std::function<void(int rank)> body);
  ~RankThreads();  // joins the threads that join() did not
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;

  // Waits until every thread has ended, or until `failed()` has been true for `grace`; calls
  // `poll` (a watchdog) about every 50 ms meanwhile. Returns the ranks left running, which are
  // detached; empty when every thread ended.
  std::vector<int> join(const std::function<bool()>& failed, std::chrono::milliseconds grace,
                        const std::function<void()>& poll = {});

 private:
  struct State;
  std::shared_ptr<State> state_;
  std::vector<std::thread> threads_;
};

// How many rank threads runs of this process have left behind so far.
int rank_threads_left_behind();

// "rank(s) 1, 3 did not stop within 2000 ms of the failure and were left behind"
std::string left_behind_message(const std::vector<int>& ranks, std::chrono::milliseconds grace);

}  // namespace lb
