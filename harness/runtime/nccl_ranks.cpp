#include "harness/runtime/nccl_ranks.h"

#include "harness/runtime/collective_watch.h"
#include "harness/runtime/error_text.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/fault_injection.h"
#include "harness/runtime/final_writes.h"
#include "harness/runtime/nccl_communicator.h"
#include "harness/runtime/rank_threads.h"

#include <c10/cuda/CUDAGuard.h>

#ifdef LB_HAVE_MPI
#include <mpi.h>
#endif

#include <condition_variable>
#include <exception>
#include <iostream>
#include <mutex>
#include <thread>

namespace lb {

namespace {

ncclConfig_t nonblocking_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}

// A barrier of the rank threads of one process, on the host: no GPU work, so it is safe next to
// CUDA frees. Gives up on an abort or after the timeout.
class ThreadBarrier {
 public:
  explicit ThreadBarrier(int threads) : threads_(threads) {}

  void arrive_and_wait(std::chrono::milliseconds timeout, const AbortSignal& abort) {
    std::unique_lock<std::mutex> lock(mutex_);
    const uint64_t generation = generation_;
    if (++arrived_ == threads_) {
      arrived_ = 0;
      ++generation_;
      changed_.notify_all();
      return;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (generation_ == generation) {
      if (abort.raised.load()) throw CommError("quiesce: aborted because another rank failed");
      if (std::chrono::steady_clock::now() > deadline)
        throw CommError("quiesce: not every rank thread arrived within " + std::to_string(timeout.count()) + " ms");
      changed_.wait_for(lock, std::chrono::milliseconds(10));
    }
  }

 private:
  const int threads_;
  std::mutex mutex_;
  std::condition_variable changed_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

class NcclRankContext : public RankContext {
 public:
  // `threads`: the barrier of the rank threads of this process; null for one process per GPU.
  NcclRankContext(int rank, int world, int device, ncclComm_t comm, std::chrono::milliseconds timeout,
                  std::shared_ptr<AbortSignal> abort, std::shared_ptr<ThreadBarrier> threads,
                  std::shared_ptr<CollectiveWatch> watch)
      : rank_(rank), world_size_(world), device_(device), timeout_(timeout), abort_(abort),
        threads_(std::move(threads)), watch_(std::move(watch)),
        world_(std::make_shared<NcclCommunicator>("world", rank, world, comm, device, timeout, abort)) {
    std::vector<int> everyone(world);
    for (int r = 0; r < world; ++r) everyone[r] = r;
    world_->watch_with(watch_, {"world", "world", everyone}, rank_);
  }

  // Between processes a CUDA free waits on nothing of the peers: the world barrier is enough.
  void quiesce() override {
    if (threads_) threads_->arrive_and_wait(timeout_, *abort_);
    else world_->barrier();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  torch::Device device() const override { return torch::Device(torch::kCUDA, device_); }
  Communicator& world() override { return *world_; }

  std::shared_ptr<Communicator> split(const std::string& name,
                                      const std::vector<std::vector<int>>& partition) override {
    const size_t g = group_index_of(partition, world_size_, rank_);
    const auto& members = partition[g];
    const int key = int(std::find(members.begin(), members.end(), rank_) - members.begin());
    c10::cuda::CUDAGuard guard(device_);
    ncclConfig_t config = nonblocking_config();
    ncclComm_t comm = nullptr;
    check_nccl(ncclCommSplit(world_->comm(), int(g), key, &comm, &config), "split " + name);
    world_->ready("split " + name);
    wait_comm_ready(comm, "split " + name, timeout_, abort_.get());
    auto communicator =
        std::make_shared<NcclCommunicator>(name, key, int(members.size()), comm, device_, timeout_, abort_);
    // Every rank splits in the same order, so the count names the same group everywhere.
    const std::string watch_key = std::to_string(splits_++) + "/" + name + "/" + std::to_string(g);
    communicator->watch_with(watch_, {name, watch_key, members}, rank_);
    return communicator;
  }

  // Destroys the world communicator before the process tears CUDA down.
  void release() { world_.reset(); }

 private:
  int rank_, world_size_, device_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<AbortSignal> abort_;
  std::shared_ptr<ThreadBarrier> threads_;
  std::shared_ptr<CollectiveWatch> watch_;
  std::shared_ptr<NcclCommunicator> world_;
  int splits_ = 0;
};

ncclComm_t init_comm(int world, const ncclUniqueId& id, int rank, int device, std::chrono::milliseconds timeout,
                     const AbortSignal* abort) {
  check_cuda(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
  ncclConfig_t config = nonblocking_config();
  ncclComm_t comm = nullptr;
  const std::string what = "NCCL init of rank " + std::to_string(rank) + " of " + std::to_string(world);
  check_nccl(ncclCommInitRankConfig(&comm, world, id, rank, &config), what);
  wait_comm_ready(comm, what, timeout, abort);
  return comm;
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

}  // namespace

namespace {

// What the rank threads of one process share: kept alive by every thread, so that one left behind
// (rank_threads.h) still has valid memory.
struct NcclRun {
  explicit NcclRun(int gpus, std::chrono::milliseconds timeout)
      : barrier(std::make_shared<ThreadBarrier>(gpus)), watch(std::make_shared<CollectiveWatch>(timeout)) {}
  std::shared_ptr<AbortSignal> abort = std::make_shared<AbortSignal>();
  std::shared_ptr<ThreadBarrier> barrier;
  std::shared_ptr<CollectiveWatch> watch;
  std::mutex mutex;
  std::string error;  // the first failure's message, "rank N: ..."
  bool error_is_input = false;
  bool error_is_root_cause = false;

  // Waits for the rank threads (rank_threads.h). A stalled watch raises nothing itself (its
  // thread is stuck in a probe), so the abort is raised from here.
  std::vector<int> join(RankThreads& threads, const WatchThread& watcher) {
    return threads.join(
        [&] {
          if (!watcher.problem().empty()) abort->raised.store(true);
          return abort->raised.load();
        },
        kStopGrace);
  }

  void fail(int rank, const std::exception& e) {
    // The first failure is the cause; errors it triggers on other ranks mention the abort.
    const bool root_cause = !abort->raised.exchange(true);
    std::lock_guard<std::mutex> lock(mutex);
    if (!error.empty() && (!root_cause || error_is_root_cause)) return;
    error = "rank " + std::to_string(rank) + ": " + error_text(e);
    error_is_input = dynamic_cast<const InputError*>(&e) != nullptr;
    error_is_root_cause = root_cause;
  }
};

}  // namespace

void run_nccl_threads(int gpus, const RankFunction& fn, std::chrono::milliseconds timeout) {
  const int available = device_count();
  if (gpus < 1 || gpus > available)
    throw InputError("--gpus " + std::to_string(gpus) + ": this machine has " + std::to_string(available) +
                     " CUDA device(s)");
  ncclUniqueId id;
  check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  auto run = std::make_shared<NcclRun>(gpus, timeout);
  // A collective that never finishes on the device shows on no host thread: the watch finds it.
  WatchThread watcher(run->watch, [abort = run->abort] { abort->raised.store(true); });
  RankThreads threads(gpus, [run, fn, id, gpus, timeout](int r) {
    set_thread_rank(r);
    try {
      ncclComm_t comm = init_comm(gpus, id, r, r, timeout, run->abort.get());
      NcclRankContext ctx(r, gpus, r, comm, timeout, run->abort, run->barrier, run->watch);
      fn(ctx);
      ctx.quiesce();
      ctx.world().barrier();
      ctx.release();
    } catch (const std::exception& e) {
      run->fail(r, e);
    }
  });
  const std::vector<int> stuck = run->join(threads, watcher);

  std::lock_guard<std::mutex> lock(run->mutex);  // a thread left behind may still fail later
  // A hung collective is the cause of whatever the ranks then reported (aborts, timeouts).
  const std::string hung = watcher.problem();
  std::string error = hung.empty() ? run->error : hung;
  if (error.empty() && stuck.empty()) return;
  if (error.empty()) error = "a rank failed";
  if (!stuck.empty()) error += "; " + left_behind_message(stuck, kStopGrace);
  if (hung.empty() && run->error_is_input) throw InputError(error);
  throw CommError(error);
}

#ifdef LB_HAVE_MPI
namespace {
void check_mpi(int r, const char* what) {
  if (r != MPI_SUCCESS) throw CommError(std::string("MPI ") + what + " failed with code " + std::to_string(r));
}
}  // namespace

void run_nccl_mpi(int expected_ranks, const RankFunction& fn, std::chrono::milliseconds timeout) {
  int initialized = 0;
  check_mpi(MPI_Initialized(&initialized), "MPI_Initialized");
  if (!initialized) {
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  }
  int rank = 0, world = 0;
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &world), "MPI_Comm_size");
  if (expected_ranks > 0 && expected_ranks != world)
    throw InputError("--gpus " + std::to_string(expected_ranks) + " but mpirun started " + std::to_string(world) +
                     " processes (one per GPU)");
  // The local rank picks the GPU: ranks that share a node share its devices.
  MPI_Comm local;
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local), "split_type");
  int local_rank = 0, local_size = 0;
  check_mpi(MPI_Comm_rank(local, &local_rank), "MPI_Comm_rank(local)");
  check_mpi(MPI_Comm_size(local, &local_size), "MPI_Comm_size(local)");
  MPI_Comm_free(&local);
  const int available = device_count();
  if (local_size > available)
    throw InputError(std::to_string(local_size) + " processes on this node but only " + std::to_string(available) +
                     " CUDA device(s)");
  ncclUniqueId id;
  if (rank == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  check_mpi(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast(nccl id)");
  // The rank runs on its own thread so that this one can watch it: a collective hung on the
  // device holds the rank's thread in a CUDA call, where no timeout of ours runs.
  auto run = std::make_shared<NcclRun>(1, timeout);
  run->watch = std::make_shared<CollectiveWatch>(timeout, std::vector<int>{rank});
  WatchThread watcher(run->watch, [abort = run->abort] { abort->raised.store(true); });
  RankThreads threads(1, [run, fn, id, rank, world, local_rank, timeout](int) {
    set_thread_rank(rank);
    try {
      ncclComm_t comm = init_comm(world, id, rank, local_rank, timeout, run->abort.get());
      NcclRankContext ctx(rank, world, local_rank, comm, timeout, run->abort, nullptr, run->watch);
      fn(ctx);
      ctx.world().barrier();
      ctx.release();
    } catch (const std::exception& e) {
      run->fail(rank, e);
    }
  });
  const std::vector<int> stuck = run->join(threads, watcher);
  std::string error;
  bool input_error = false;
  {
    std::lock_guard<std::mutex> lock(run->mutex);
    error = watcher.problem().empty() ? run->error : "rank " + std::to_string(rank) + ": " + watcher.problem();
    input_error = watcher.problem().empty() && run->error_is_input;
  }
  if (!stuck.empty()) error += (error.empty() ? "" : "; ") + left_behind_message({rank}, kStopGrace);
  if (!error.empty()) {
    // Peers blocked in NCCL time out on their own; MPI_Abort ends them sooner. This process's
    // records are written first: MPI_Abort does not return.
    std::cerr << "error: " << error << std::endl;
    run_final_writes({error, ""});
    MPI_Abort(MPI_COMM_WORLD, input_error ? 2 : 1);
  }
  MPI_Finalize();
}
#else
void run_nccl_mpi(int, const RankFunction&, std::chrono::milliseconds) {
  throw InputError("this layoutbench was built without MPI: one process per GPU (mpirun/srun) is not available; "
                   "use --gpus N in one process");
}
#endif

}  // namespace lb
