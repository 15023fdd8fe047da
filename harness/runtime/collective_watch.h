#pragma once
// Which collectives each rank has started and which have finished, for backends whose collectives
// finish on the device after the host call returned (NCCL). There a peer that never arrives shows
// nowhere on the host: the waiting ranks' kernels spin, and their threads block in the next CUDA
// call that waits on that stream (a copy to the host, a free). The launcher polls overdue() and,
// past the timeout, ends the run with one message naming the group, the op and the missing ranks.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace lb {

// One group of one run: its name, a key unique in the run, and its members' world ranks.
struct WatchedGroup {
  std::string name;
  std::string key;
  std::vector<int> members;
};

class CollectiveWatch {
 public:
  using Clock = std::chrono::steady_clock;

  // `local_ranks`: the world ranks this process runs (empty: all of them); a member outside them
  // (another process, under mpirun) is never called absent, since its calls cannot be seen here.
  explicit CollectiveWatch(std::chrono::milliseconds timeout, std::vector<int> local_ranks = {})
      : timeout_(timeout), local_ranks_(std::move(local_ranks)) {}

  std::chrono::milliseconds timeout() const { return timeout_; }

  // World rank `rank` launched its next call of `op` on `group` (calls are counted per rank and
  // group); `done` tells whether the device has finished it. Thread-safe, and never waits for a
  // probe: overdue() calls `done` outside the lock.
  void launched(int rank, const WatchedGroup& group, const std::string& op, std::function<bool()> done);

  // Forgets finished calls; for the oldest unfinished call launched longer than the timeout ago,
  // returns "<op> on group <name>: rank(s) 1 (world rank(s) 3) did not arrive within T ms", or,
  // when every member launched it, "... not finished on the device within T ms on rank(s) ...";
  // "" when nothing is overdue.
  std::string overdue(Clock::time_point now = Clock::now());

 private:
  struct Call {
    int rank;
    WatchedGroup group;
    std::string op;
    int64_t seq;
    Clock::time_point start;
    std::function<bool()> done;
    int64_t id;  // unique in this watch
  };

  bool is_local(int rank) const;

  const std::chrono::milliseconds timeout_;
  const std::vector<int> local_ranks_;
  std::mutex mutex_;
  std::vector<Call> pending_;                           // in launch order
  int64_t next_id_ = 0;
  std::map<std::pair<int, std::string>, int64_t> launched_;  // (world rank, group key) -> calls launched
};

// Polls a CollectiveWatch on its own thread: a probe may block inside the CUDA driver while a
// collective is hung, and the launcher's thread must stay free to end the run. The first overdue
// call is reported through `on_overdue` (which must be quick and thread-safe: raise an abort) and
// kept as problem(); a poll stuck for longer than the timeout is a problem too.
class WatchThread {
 public:
  WatchThread(std::shared_ptr<CollectiveWatch> watch, std::function<void()> on_overdue);
  ~WatchThread();  // stops the thread; leaves it behind if it is stuck in a probe
  WatchThread(const WatchThread&) = delete;
  WatchThread& operator=(const WatchThread&) = delete;

  // "" while all is well.
  std::string problem() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace lb
