#include "harness/runtime/cpu_ranks.h"

#include "harness/runtime/error_text.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/fault_injection.h"
#include "harness/runtime/rank_threads.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <sstream>
#include <stdexcept>

namespace lb {

namespace {

// Thrown by a rank whose collective was cut short because another rank failed first; the launcher
// reports that other rank's error instead, since it is the cause.
class PeerFailed : public CommError {
 public:
  using CommError::CommError;
};

// What one rank passed to the collective it is in. Pointers stay valid until the rank leaves the
// collective, which it does only once every peer is done reading them.
struct Slot {
  const char* op = nullptr;
  const torch::Tensor* in = nullptr;
  const std::vector<int64_t>* rows = nullptr;       // v-ops: row counts; all_to_allv: send counts
  const std::vector<int64_t>* recv_rows = nullptr;  // all_to_allv only
  int root = -1;                                    // broadcast only
};

struct GroupState {
  GroupState(std::string name, std::vector<int> members)
      : name(std::move(name)), members(std::move(members)), present(this->members.size(), 0),
        slots(this->members.size()) {}
  const std::string name;
  const std::vector<int> members;  // world ranks, in group rank order
  std::mutex mutex;
  std::condition_variable cv;
  uint64_t generation = 0;  // barriers completed; a waiter is released when it changes
  int arrived = 0;
  std::vector<char> present;  // who has arrived at the current barrier, for the timeout message
  std::vector<Slot> slots;
};

// Shared by every rank: the groups made so far and the abort raised by the first failure.
class WorldState {
 public:
  // The group under `key`, made by the first rank to ask for it.
  std::shared_ptr<GroupState> group(const std::string& key, const std::string& name, const std::vector<int>& members) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& group = groups_[key];
    if (!group) group = std::make_shared<GroupState>(name, members);
    else if (group->members != members)
      throw CommError("split " + name + ": the ranks of one group passed different partitions");
    return group;
  }

  // The first message wins. Wakes every rank waiting in any group.
  void abort(const std::string& message) {
    std::vector<std::shared_ptr<GroupState>> groups;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (aborted_.load()) return;
      abort_message_ = message;
      aborted_.store(true, std::memory_order_release);
      for (const auto& entry : groups_) groups.push_back(entry.second);
    }
    for (const auto& group : groups) {
      // A waiter checks the flag under its group's mutex; taking that mutex here means it either
      // saw the flag or is already asleep and gets this notification.
      { std::lock_guard<std::mutex> lock(group->mutex); }
      group->cv.notify_all();
    }
  }

  bool aborted() const { return aborted_.load(std::memory_order_acquire); }
  // Written once, before aborted() turns true; read only after.
  const std::string& abort_message() const { return abort_message_; }

 private:
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<GroupState>> groups_;
  std::string abort_message_;
  std::atomic<bool> aborted_{false};
};

std::string join(const std::vector<int64_t>& values) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << values[i];
  out << ']';
  return out.str();
}

std::string shape_of(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

// Sums in fp32 in rank order and leaves the one cast to the caller's copy_: every rank, and the
// grouped and padded algorithms alike, round the same way and get bitwise the same result.
torch::Tensor sum_in_rank_order(const std::vector<torch::Tensor>& parts) {
  torch::Tensor sum = parts[0].to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);
  for (size_t r = 1; r < parts.size(); ++r) sum.add_(parts[r].to(torch::kFloat32));
  return sum;
}

int64_t sum_before(const std::vector<int64_t>& rows, int rank) {
  return std::accumulate(rows.begin(), rows.begin() + rank, int64_t{0});
}

class CpuCommunicator : public Communicator {
 public:
  CpuCommunicator(std::shared_ptr<GroupState> group, int rank, std::shared_ptr<WorldState> world, int world_rank,
                  std::chrono::milliseconds timeout)
      : Communicator(group->name, rank, int(group->members.size())), group_(std::move(group)),
        world_(std::move(world)), world_rank_(world_rank), timeout_(timeout) {}

 protected:
  void do_all_reduce(torch::Tensor& t) override {
    enter({"all_reduce", &t});
    torch::Tensor sum = sum_in_rank_order(peer_inputs());
    leave("all_reduce");
    // Peers read t until everyone left, so it changes only now.
    t.copy_(sum);
  }

  void do_all_gather(const torch::Tensor& in, torch::Tensor& out) override {
    enter({"all_gather", &in});
    const int64_t rows = in.size(0);
    for (int r = 0; r < size(); ++r) out.narrow(0, r * rows, rows).copy_(peer(r));
    leave("all_gather");
  }

  void do_reduce_scatter(const torch::Tensor& in, torch::Tensor& out) override {
    enter({"reduce_scatter", &in});
    const int64_t chunk = out.size(0);
    std::vector<torch::Tensor> parts;
    for (int r = 0; r < size(); ++r) parts.push_back(peer(r).narrow(0, rank() * chunk, chunk));
    out.copy_(sum_in_rank_order(parts));
    leave("reduce_scatter");
  }

  void do_all_gatherv_grouped(const torch::Tensor& in, torch::Tensor& out, const std::vector<int64_t>& rows) override {
    enter({"all_gatherv", &in, &rows});
    for (int r = 0; r < size(); ++r) out.narrow(0, sum_before(rows, r), rows[r]).copy_(peer(r));
    leave("all_gatherv");
  }

  void do_reduce_scatterv_grouped(const torch::Tensor& in, torch::Tensor& out,
                                  const std::vector<int64_t>& rows) override {
    enter({"reduce_scatterv", &in, &rows});
    const int64_t offset = sum_before(rows, rank());
    std::vector<torch::Tensor> parts;
    for (int r = 0; r < size(); ++r) parts.push_back(peer(r).narrow(0, offset, rows[rank()]));
    out.copy_(sum_in_rank_order(parts));
    leave("reduce_scatterv");
  }

  void do_all_to_allv(const torch::Tensor& in, torch::Tensor& out, const std::vector<int64_t>& send_rows,
                      const std::vector<int64_t>& recv_rows) override {
    enter({"all_to_allv", &in, &send_rows, &recv_rows});
    int64_t offset = 0;
    for (int r = 0; r < size(); ++r) {
      const int64_t from = sum_before(*group_->slots[r].rows, rank());
      out.narrow(0, offset, recv_rows[r]).copy_(peer(r).narrow(0, from, recv_rows[r]));
      offset += recv_rows[r];
    }
    leave("all_to_allv");
  }

  void do_broadcast(torch::Tensor& t, int root) override {
    Slot mine{"broadcast", &t};
    mine.root = root;
    enter(mine);
    if (rank() != root) t.copy_(peer(root));
    leave("broadcast");
  }

  void do_barrier() override {
    enter({"barrier"});
    leave("barrier");
  }

  void synchronize() override {}

 private:
  const torch::Tensor& peer(int r) const { return *group_->slots[r].in; }

  std::vector<torch::Tensor> peer_inputs() const {
    std::vector<torch::Tensor> inputs;
    for (int r = 0; r < size(); ++r) inputs.push_back(peer(r));
    return inputs;
  }

  // Publishes this rank's arguments, waits for every rank of the group, and checks that they all
  // called the same thing; peers' slots may be read until leave().
  void enter(const Slot& mine) {
    {
      std::lock_guard<std::mutex> lock(group_->mutex);
      group_->slots[rank()] = mine;
    }
    wait_for_all(mine.op);
    const std::string problem = disagreement();
    if (!problem.empty()) {
      // Every rank finds the same problem; leave together so that no slot changes under a reader.
      leave(mine.op);
      throw CommError(problem);
    }
  }

  // Waits until every rank is done reading its peers' buffers.
  void leave(const char* op) { wait_for_all(op); }

  // A generation-counted barrier that gives up on an abort or after the timeout.
  void wait_for_all(const char* op) {
    GroupState& g = *group_;
    std::unique_lock<std::mutex> lock(g.mutex);
    if (world_->aborted()) throw PeerFailed(where(op) + world_->abort_message());
    g.present[rank()] = 1;
    if (++g.arrived == size()) {
      g.arrived = 0;
      std::fill(g.present.begin(), g.present.end(), 0);
      ++g.generation;
      g.cv.notify_all();
      return;
    }
    const uint64_t generation = g.generation;
    const bool woken =
        g.cv.wait_for(lock, timeout_, [&] { return g.generation != generation || world_->aborted(); });
    if (g.generation != generation) return;
    if (woken) throw PeerFailed(where(op) + world_->abort_message());

    std::string absent, absent_world;
    for (int r = 0; r < size(); ++r) {
      if (g.present[r]) continue;
      absent += (absent.empty() ? "" : ", ") + std::to_string(r);
      absent_world += (absent_world.empty() ? "" : ", ") + std::to_string(g.members[r]);
    }
    std::string message = where(op) + "rank(s) " + absent;
    if (absent != absent_world) message += " (world rank(s) " + absent_world + ")";
    message += " did not arrive within " + std::to_string(timeout_.count()) + " ms";
    lock.unlock();
    // The group is stuck for good: stop the other ranks now rather than at their own timeouts.
    world_->abort("rank " + std::to_string(world_rank_) + " failed: " + message);
    throw CommError(message);
  }

  // Why the ranks' calls cannot be served together, or "" when they can. Every rank reads the same
  // slots, so every rank gets the same answer.
  std::string disagreement() const {
    const auto& slots = group_->slots;
    const Slot& first = slots[0];
    for (int r = 1; r < size(); ++r)
      if (std::strcmp(slots[r].op, first.op) != 0)
        return "collective mismatch on group " + name() + ": rank 0 called " + first.op + " while rank " +
               std::to_string(r) + " called " + slots[r].op;
    const std::string at = where(first.op);
    for (int r = 1; r < size(); ++r) {
      const Slot& s = slots[r];
      if (first.in) {
        const torch::Tensor& a = *first.in;
        const torch::Tensor& b = *s.in;
        if (a.scalar_type() != b.scalar_type())
          return at + "rank 0 passed " + c10::toString(a.scalar_type()) + " but rank " + std::to_string(r) +
                 " passed " + c10::toString(b.scalar_type());
        // Without row counts every rank must pass the same shape; with them, the same trailing shape.
        const bool same_shape = first.rows ? a.sizes().slice(1) == b.sizes().slice(1) : a.sizes() == b.sizes();
        if (!same_shape)
          return at + "rank 0 passed shape " + shape_of(a) + " but rank " + std::to_string(r) + " passed " +
                 shape_of(b);
      }
      if (first.rows && !first.recv_rows && *s.rows != *first.rows)
        return at + "rank 0 passed row counts " + join(*first.rows) + " but rank " + std::to_string(r) + " passed " +
               join(*s.rows);
      if (s.root != first.root)
        return at + "rank 0 passed root " + std::to_string(first.root) + " but rank " + std::to_string(r) +
               " passed root " + std::to_string(s.root);
    }
    if (first.recv_rows)
      for (int to = 0; to < size(); ++to)
        for (int from = 0; from < size(); ++from) {
          const int64_t sent = (*slots[from].rows)[to];
          const int64_t expected = (*slots[to].recv_rows)[from];
          if (sent != expected)
            return at + "rank " + std::to_string(from) + " sends " + std::to_string(sent) + " rows to rank " +
                   std::to_string(to) + ", which expects " + std::to_string(expected);
        }
    return {};
  }

  std::string where(const char* op) const { return std::string(op) + " on group " + name() + ": "; }

  std::shared_ptr<GroupState> group_;
  std::shared_ptr<WorldState> world_;
  int world_rank_;
  std::chrono::milliseconds timeout_;
};

class CpuRankContext : public RankContext {
 public:
  CpuRankContext(int rank, int world_size, std::shared_ptr<WorldState> world,
                 const std::shared_ptr<GroupState>& world_group, std::chrono::milliseconds timeout)
      : rank_(rank), world_size_(world_size), world_(std::move(world)), timeout_(timeout),
        world_comm_(world_group, rank, world_, rank, timeout) {}

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  torch::Device device() const override { return torch::Device(torch::kCPU); }
  Communicator& world() override { return world_comm_; }

  std::shared_ptr<Communicator> split(const std::string& name,
                                      const std::vector<std::vector<int>>& partition) override {
    const size_t g = group_index_of(partition, world_size_, rank_);
    const auto& members = partition[g];
    const int group_rank = int(std::find(members.begin(), members.end(), rank_) - members.begin());
    // Every rank splits in the same order, so the count names the same call everywhere and a name
    // split twice gives two independent groups.
    const std::string key = std::to_string(splits_++) + "/" + name + "/" + std::to_string(g);
    return std::make_shared<CpuCommunicator>(world_->group(key, name, members), group_rank, world_, rank_, timeout_);
  }

 private:
  int rank_, world_size_;
  std::shared_ptr<WorldState> world_;
  std::chrono::milliseconds timeout_;
  CpuCommunicator world_comm_;
  int splits_ = 0;
};

// A rank's error as it will be reported: its number in front, its type kept where we can.
struct Failure {
  enum class Kind { InvalidArgument, Input, Comm } kind = Kind::Comm;
  std::string text;     // the error itself
  std::string message;  // "rank N: " + text
  bool own = true;      // false: a PeerFailed, caused by another rank's failure
};

Failure failure_of(int rank, const std::exception& e) {
  Failure f;
  f.text = error_text(e);
  f.message = "rank " + std::to_string(rank) + ": " + f.text;
  if (dynamic_cast<const std::invalid_argument*>(&e)) f.kind = Failure::Kind::InvalidArgument;
  else if (dynamic_cast<const InputError*>(&e)) f.kind = Failure::Kind::Input;
  f.own = dynamic_cast<const PeerFailed*>(&e) == nullptr;
  return f;
}

[[noreturn]] void throw_failure(const Failure& f) {
  switch (f.kind) {
    case Failure::Kind::InvalidArgument: throw std::invalid_argument(f.message);
    case Failure::Kind::Input: throw InputError(f.message);
    case Failure::Kind::Comm: break;
  }
  throw CommError(f.message);
}

// Everything a rank thread touches besides its function's own captures; shared, so that a thread
// left behind (rank_threads.h) keeps valid memory.
struct CpuRun {
  std::shared_ptr<WorldState> world = std::make_shared<WorldState>();
  std::shared_ptr<GroupState> world_group;
  std::mutex mutex;
  std::vector<Failure> failures;  // in the order they happened

  void fail(int rank, Failure failure) {
    std::lock_guard<std::mutex> lock(mutex);
    world->abort("rank " + std::to_string(rank) + " failed: " + failure.text);
    failures.push_back(std::move(failure));
  }
};

}  // namespace

void run_cpu_ranks(int ranks, const RankFunction& fn, std::chrono::milliseconds timeout) {
  if (ranks < 1) throw std::invalid_argument("CPU ranks: need at least one rank (got " + std::to_string(ranks) + ")");
  if (timeout.count() <= 0) throw std::invalid_argument("CPU ranks: the timeout must be positive");
  auto run = std::make_shared<CpuRun>();
  std::vector<int> everyone(ranks);
  std::iota(everyone.begin(), everyone.end(), 0);
  run->world_group = run->world->group("world", "world", everyone);

  RankThreads threads(ranks, [run, fn, ranks, timeout](int r) {
    set_thread_rank(r);
    try {
      CpuRankContext ctx(r, ranks, run->world, run->world_group, timeout);
      fn(ctx);
    } catch (const std::exception& e) {
      run->fail(r, failure_of(r, e));
    } catch (...) {
      run->fail(r, Failure{Failure::Kind::Comm, "unknown exception", "rank " + std::to_string(r) + ": unknown exception"});
    }
  });
  const std::vector<int> stuck = threads.join([&] { return run->world->aborted(); }, kStopGrace);

  std::lock_guard<std::mutex> lock(run->mutex);  // a thread left behind may still fail later
  if (run->failures.empty()) return;
  auto cause = std::find_if(run->failures.begin(), run->failures.end(), [](const Failure& f) { return f.own; });
  Failure failure = cause != run->failures.end() ? *cause : run->failures.front();
  if (!stuck.empty()) failure.message += "; " + left_behind_message(stuck, kStopGrace);
  throw_failure(failure);
}

}  // namespace lb
