// The pieces of the hard timeout: rank threads joined with a bound (one that does not stop after a
// failure is left behind and named), and the collective watch that finds a collective never
// finished on the device (NCCL), with the ranks that never launched it. The NCCL side only feeds
// the watch; its logic is tested here with probes standing in for CUDA events.
#include "harness/runtime/collective_watch.h"
#include "harness/runtime/cpu_ranks.h"
#include "harness/runtime/rank_threads.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace lb {
namespace {

using namespace std::chrono_literals;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A gate a "stuck" thread waits on until the test opens it, so the test can end cleanly.
struct Gate {
  std::mutex mutex;
  std::condition_variable opened;
  bool open = false;
  void wait() {
    std::unique_lock<std::mutex> lock(mutex);
    opened.wait(lock, [&] { return open; });
  }
  void release() {
    { std::lock_guard<std::mutex> lock(mutex); open = true; }
    opened.notify_all();
  }
};

TEST(RankThreads, JoinsAllWhenNothingFails) {
  std::atomic<int> ran{0};
  RankThreads threads(4, [&](int) { ++ran; });
  EXPECT_TRUE(threads.join([] { return false; }, 100ms).empty());
  EXPECT_EQ(ran, 4);
}

TEST(RankThreads, AStuckThreadIsLeftBehindAfterTheGrace) {
  auto gate = std::make_shared<Gate>();
  std::atomic<bool> failed{false};
  const int before = rank_threads_left_behind();
  const auto start = std::chrono::steady_clock::now();
  std::vector<int> stuck;
  {
    RankThreads threads(3, [gate, &failed](int r) {
      if (r == 0) failed = true;  // rank 0 fails at once
      if (r == 2) gate->wait();   // rank 2 never notices
    });
    stuck = threads.join([&] { return failed.load(); }, 300ms);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(stuck, std::vector<int>{2});
  EXPECT_EQ(rank_threads_left_behind(), before + 1);
  EXPECT_LT(seconds, 10);  // the grace, not forever
  EXPECT_EQ(left_behind_message(stuck, 300ms), "rank(s) 2 did not stop within 300 ms of the failure and were left behind");
  gate->release();  // the thread touches only what it owns
}

// The CPU launcher: a rank stuck outside any collective no longer holds run_cpu_ranks past the
// timeout plus the grace (it waited for the stuck thread to return before).
TEST(CpuRanksTimeout, AStuckRankEndsTheRunWithinTheTimeoutAndGrace) {
  auto gate = std::make_shared<Gate>();
  const auto start = std::chrono::steady_clock::now();
  std::string message;
  try {
    run_cpu_ranks(
        2,
        [gate](RankContext& ctx) {
          if (ctx.rank() == 1) gate->wait();
          ctx.world().barrier();
        },
        500ms);
  } catch (const CommError& e) {
    message = e.what();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  gate->release();
  EXPECT_TRUE(contains(message, "rank 0: barrier on group world: rank(s) 1 did not arrive within 500 ms")) << message;
  EXPECT_TRUE(contains(message, "rank(s) 1 did not stop within")) << message;
  EXPECT_LT(seconds, 0.5 + kStopGrace.count() / 1000.0 + 10);
}

TEST(CollectiveWatch, NamesTheRanksThatNeverLaunchedTheCall) {
  CollectiveWatch watch(100ms);
  const WatchedGroup tp{"attn_tp", "0/attn_tp/1", {2, 3}};
  const auto now = CollectiveWatch::Clock::now();
  watch.launched(2, tp, "all_reduce", [] { return false; });  // rank 3 never comes
  EXPECT_EQ(watch.overdue(now), "");
  EXPECT_EQ(watch.overdue(now + 1s), "all_reduce on group attn_tp (call 1): rank(s) 1 (world rank(s) 3) did not arrive "
                                     "within 100 ms");
}

TEST(CollectiveWatch, FinishedCallsAreForgotten) {
  CollectiveWatch watch(100ms);
  const WatchedGroup world{"world", "world", {0, 1}};
  auto done = std::make_shared<std::atomic<bool>>(false);
  for (int r : {0, 1}) watch.launched(r, world, "all_gather", [done] { return done->load(); });
  const auto later = CollectiveWatch::Clock::now() + 1s;
  // Every member launched it, but the device never finished it: a hang on the device.
  EXPECT_TRUE(contains(watch.overdue(later), "all_gather on group world (call 1): not finished on the device within 100 ms"))
      << watch.overdue(later);
  *done = true;
  EXPECT_EQ(watch.overdue(later), "");
}

TEST(CollectiveWatch, CountsCallsPerRankAndGroup) {
  CollectiveWatch watch(100ms);
  const WatchedGroup world{"world", "world", {0, 1}};
  for (int i = 0; i < 3; ++i) watch.launched(0, world, "broadcast", [] { return true; });
  for (int i = 0; i < 2; ++i) watch.launched(1, world, "broadcast", [] { return true; });
  watch.launched(0, world, "broadcast", [] { return false; });  // rank 0's 4th; rank 1 has launched 2
  EXPECT_TRUE(contains(watch.overdue(CollectiveWatch::Clock::now() + 1s), "(call 4): rank(s) 1 did not arrive"));
}

// A probe blocked in the driver must not block a rank recording its next launch: with CUDA's lazy
// kernel loading, what the probe waits for can be that very rank's next collective.
TEST(CollectiveWatch, ALaunchIsRecordedWhileAProbeBlocks) {
  CollectiveWatch watch(100ms);
  const WatchedGroup world{"world", "world", {0, 1}};
  struct Gate {
    std::mutex mutex;
    std::condition_variable changed;
    bool probing = false, peer_recorded = false;
  };
  auto gate = std::make_shared<Gate>();
  // Rank 0's probe blocks until rank 1's launch has been recorded (5 s at most, so a failure ends).
  watch.launched(0, world, "all_reduce", [gate] {
    std::unique_lock<std::mutex> lock(gate->mutex);
    gate->probing = true;
    gate->changed.notify_all();
    return gate->changed.wait_for(lock, 5s, [&] { return gate->peer_recorded; });
  });
  std::thread poller([&] { (void)watch.overdue(); });
  {
    std::unique_lock<std::mutex> lock(gate->mutex);
    ASSERT_TRUE(gate->changed.wait_for(lock, 5s, [&] { return gate->probing; }));
  }
  const auto start = std::chrono::steady_clock::now();
  watch.launched(1, world, "all_reduce", [] { return true; });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  {
    std::lock_guard<std::mutex> lock(gate->mutex);
    gate->peer_recorded = true;
  }
  gate->changed.notify_all();
  poller.join();
  EXPECT_LT(seconds, 1.0) << "launched() waited for the blocked probe";
  EXPECT_EQ(watch.overdue(CollectiveWatch::Clock::now() + 1s), "");  // both finished and forgotten
}

TEST(CollectiveWatch, MembersInOtherProcessesAreNotCalledAbsent) {
  CollectiveWatch watch(100ms, {0});  // this process runs world rank 0 only (mpirun)
  watch.launched(0, {"world", "world", {0, 1}}, "all_reduce", [] { return false; });
  const std::string late = watch.overdue(CollectiveWatch::Clock::now() + 1s);
  EXPECT_TRUE(contains(late, "not finished on the device")) << late;
  EXPECT_TRUE(contains(late, "other processes")) << late;
}

TEST(WatchThread, ReportsTheFirstOverdueCall) {
  auto watch = std::make_shared<CollectiveWatch>(50ms);
  std::atomic<bool> raised{false};
  WatchThread watcher(watch, [&] { raised = true; });
  watch->launched(0, {"world", "world", {0, 1}}, "all_reduce", [] { return false; });
  for (int i = 0; i < 200 && !raised; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(raised);
  EXPECT_TRUE(contains(watcher.problem(), "rank(s) 1 did not arrive")) << watcher.problem();
}

}  // namespace
}  // namespace lb
