#include "harness/runtime/rank_threads.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>

namespace lb {

namespace {
std::atomic<int> left_behind{0};
}  // namespace

// Shared with the threads, so one left behind never touches freed memory of the launcher.
struct RankThreads::State {
  std::mutex mutex;
  std::condition_variable ended;
  std::vector<char> done;
  int running = 0;
};

RankThreads::RankThreads(int ranks, std::function<void(int rank)> body) : state_(std::make_shared<State>()) {
  state_->done.assign(size_t(ranks), 0);
  state_->running = ranks;
  for (int r = 0; r < ranks; ++r)
    threads_.emplace_back([state = state_, body, r] {
      body(r);
      std::lock_guard<std::mutex> lock(state->mutex);
      state->done[size_t(r)] = 1;
      --state->running;
      state->ended.notify_all();
    });
}

RankThreads::~RankThreads() {
  for (std::thread& t : threads_)
    if (t.joinable()) t.join();
}

std::vector<int> RankThreads::join(const std::function<bool()>& failed, std::chrono::milliseconds grace,
                                   const std::function<void()>& poll) {
  using Clock = std::chrono::steady_clock;
  bool failure_seen = false;
  Clock::time_point give_up{};
  std::vector<int> stuck;
  {
    std::unique_lock<std::mutex> lock(state_->mutex);
    while (state_->running > 0) {
      state_->ended.wait_for(lock, std::chrono::milliseconds(50));
      if (state_->running == 0) break;
      lock.unlock();
      if (poll) poll();
      const bool now_failed = failed();
      lock.lock();
      if (now_failed && !failure_seen) failure_seen = true, give_up = Clock::now() + grace;
      if (failure_seen && Clock::now() >= give_up && state_->running > 0) {
        for (size_t r = 0; r < state_->done.size(); ++r)
          if (!state_->done[r]) stuck.push_back(int(r));
        break;
      }
    }
  }
  for (size_t r = 0; r < threads_.size(); ++r) {
    const bool is_stuck = std::find(stuck.begin(), stuck.end(), int(r)) != stuck.end();
    if (is_stuck) threads_[r].detach();
    else threads_[r].join();
  }
  left_behind += int(stuck.size());
  return stuck;
}

int rank_threads_left_behind() { return left_behind.load(); }

std::string left_behind_message(const std::vector<int>& ranks, std::chrono::milliseconds grace) {
  std::string list;
  for (int r : ranks) list += (list.empty() ? "" : ", ") + std::to_string(r);
  return "rank(s) " + list + " did not stop within " + std::to_string(grace.count()) +
         " ms of the failure and were left behind";
}

}  // namespace lb
