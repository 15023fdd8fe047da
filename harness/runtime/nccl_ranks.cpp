#include "harness/runtime/nccl_ranks.h"

#include "harness/runtime/errors.h"
#include "harness/runtime/nccl_communicator.h"

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
                  std::shared_ptr<AbortSignal> abort, ThreadBarrier* threads)
      : rank_(rank), world_size_(world), device_(device), timeout_(timeout), abort_(abort), threads_(threads),
        world_(std::make_shared<NcclCommunicator>("world", rank, world, comm, device, timeout, abort)) {}

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
    return std::make_shared<NcclCommunicator>(name, key, int(members.size()), comm, device_, timeout_, abort_);
  }

  // Destroys the world communicator before the process tears CUDA down.
  void release() { world_.reset(); }

 private:
  int rank_, world_size_, device_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<AbortSignal> abort_;
  ThreadBarrier* threads_;
  std::shared_ptr<NcclCommunicator> world_;
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

void run_nccl_threads(int gpus, const RankFunction& fn, std::chrono::milliseconds timeout) {
  const int available = device_count();
  if (gpus < 1 || gpus > available)
    throw InputError("--gpus " + std::to_string(gpus) + ": this machine has " + std::to_string(available) +
                     " CUDA device(s)");
  ncclUniqueId id;
  check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  auto abort = std::make_shared<AbortSignal>();
  ThreadBarrier barrier(gpus);
  std::mutex mutex;
  std::exception_ptr first_error;
  bool first_is_root_cause = false;
  std::vector<std::thread> threads;
  for (int r = 0; r < gpus; ++r) {
    threads.emplace_back([&, r] {
      try {
        ncclComm_t comm = init_comm(gpus, id, r, r, timeout, abort.get());
        NcclRankContext ctx(r, gpus, r, comm, timeout, abort, &barrier);
        fn(ctx);
        ctx.quiesce();
        ctx.world().barrier();
        ctx.release();
      } catch (const std::exception& e) {
        // The first failure is the cause; errors it triggers on other ranks mention the abort.
        const bool root_cause = !abort->raised.exchange(true);
        std::lock_guard<std::mutex> lock(mutex);
        if (!first_error || (root_cause && !first_is_root_cause)) {
          first_error = std::make_exception_ptr(CommError("rank " + std::to_string(r) + ": " + e.what()));
          if (dynamic_cast<const InputError*>(&e))
            first_error = std::make_exception_ptr(InputError("rank " + std::to_string(r) + ": " + e.what()));
          first_is_root_cause = root_cause;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first_error) std::rethrow_exception(first_error);
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
  auto abort = std::make_shared<AbortSignal>();
  try {
    ncclComm_t comm = init_comm(world, id, rank, local_rank, timeout, abort.get());
    NcclRankContext ctx(rank, world, local_rank, comm, timeout, abort, nullptr);
    fn(ctx);
    ctx.world().barrier();
    ctx.release();
  } catch (const std::exception& e) {
    // Peers blocked in NCCL time out on their own; MPI_Abort ends them sooner.
    std::cerr << "rank " << rank << ": " << e.what() << std::endl;
    MPI_Abort(MPI_COMM_WORLD, dynamic_cast<const InputError*>(&e) ? 2 : 1);
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
