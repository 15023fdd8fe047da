#include "harness/runtime/collective_watch.h"

#include <algorithm>
#include <condition_variable>
#include <thread>

namespace lb {

namespace {

std::string join(const std::vector<int>& values) {
  std::string s;
  for (int v : values) s += (s.empty() ? "" : ", ") + std::to_string(v);
  return s;
}

}  // namespace

bool CollectiveWatch::is_local(int rank) const {
  return local_ranks_.empty() || std::find(local_ranks_.begin(), local_ranks_.end(), rank) != local_ranks_.end();
}

void CollectiveWatch::launched(int rank, const WatchedGroup& group, const std::string& op,
                               std::function<bool()> done) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t seq = ++launched_[{rank, group.key}];
  pending_.push_back({rank, group, op, seq, Clock::now(), std::move(done), next_id_++});
}

std::string CollectiveWatch::overdue(Clock::time_point now) {
  // The probes run without the lock: a probe can block in the driver behind a rank's thread (CUDA's
  // lazy loading of a kernel holds its device's context until the device's queued work, a
  // collective waiting for a peer, drains), and a peer's thread that then waited here to record its
  // last launch would never launch what that collective waits for (seen as a hang of cp-moe-dp's
  // decode on 2 H200s, d616225).
  std::vector<std::pair<int64_t, std::function<bool()>>> probes;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Call& c : pending_) probes.emplace_back(c.id, c.done);
  }
  std::vector<int64_t> finished;
  for (const auto& [id, done] : probes)
    if (done()) finished.push_back(id);
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                [&](const Call& c) {
                                  return std::find(finished.begin(), finished.end(), c.id) != finished.end();
                                }),
                 pending_.end());
  auto late = std::find_if(pending_.begin(), pending_.end(), [&](const Call& c) { return now - c.start > timeout_; });
  if (late == pending_.end()) return "";
  const Call& c = *late;
  // Members that never launched this call (their count on the group is below its number).
  std::vector<int> absent, absent_world, waiting;
  for (size_t i = 0; i < c.group.members.size(); ++i) {
    const int member = c.group.members[i];
    auto it = launched_.find({member, c.group.key});
    if (!is_local(member)) continue;
    if (it == launched_.end() || it->second < c.seq) absent.push_back(int(i)), absent_world.push_back(member);
    else waiting.push_back(member);
  }
  const std::string where = c.op + " on group " + c.group.name + " (call " + std::to_string(c.seq) + "): ";
  const std::string limit = " within " + std::to_string(timeout_.count()) + " ms";
  if (absent.empty())
    return where + "not finished on the device" + limit + " (world rank(s) " + join(waiting) + " launched it" +
           (local_ranks_.empty() ? "" : "; members in other processes are not seen from here") + ")";
  std::string message = where + "rank(s) " + join(absent);
  if (absent != absent_world) message += " (world rank(s) " + join(absent_world) + ")";
  return message + " did not arrive" + limit;
}

struct WatchThread::State {
  std::shared_ptr<CollectiveWatch> watch;
  std::function<void()> on_overdue;
  std::mutex mutex;
  std::condition_variable changed;
  bool stop = false, ended = false;
  std::string problem;
  CollectiveWatch::Clock::time_point heartbeat = CollectiveWatch::Clock::now();  // the last poll's end
};

WatchThread::WatchThread(std::shared_ptr<CollectiveWatch> watch, std::function<void()> on_overdue)
    : state_(std::make_shared<State>()) {
  state_->watch = std::move(watch);
  state_->on_overdue = std::move(on_overdue);
  std::thread([state = state_] {
    std::unique_lock<std::mutex> lock(state->mutex);
    while (!state->stop) {
      lock.unlock();
      const std::string late = state->watch->overdue();
      lock.lock();
      state->heartbeat = CollectiveWatch::Clock::now();
      if (!late.empty() && state->problem.empty()) {
        state->problem = late;
        state->on_overdue();
      }
      state->changed.wait_for(lock, std::chrono::milliseconds(50), [&] { return state->stop; });
    }
    state->ended = true;
    state->changed.notify_all();
  }).detach();
}

WatchThread::~WatchThread() {
  std::unique_lock<std::mutex> lock(state_->mutex);
  state_->stop = true;
  state_->changed.notify_all();
  // A thread stuck in a probe is left as it is: it holds only the shared state.
  state_->changed.wait_for(lock, std::chrono::seconds(1), [&] { return state_->ended; });
}

std::string WatchThread::problem() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (!state_->problem.empty()) return state_->problem;
  const auto stalled = CollectiveWatch::Clock::now() - state_->heartbeat;
  if (stalled > state_->watch->timeout())
    return "the collective watch has been stuck in a CUDA call for more than " +
           std::to_string(state_->watch->timeout().count()) + " ms (a collective is hung on the device)";
  return "";
}

}  // namespace lb
