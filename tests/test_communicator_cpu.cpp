// CPU ranks: every collective against a naive computation of its result, the exact fp32
// accumulation rule, records, split groups, argument and protocol errors, and the two ways a run
// goes wrong (a peer that never joins, a peer that dies). Inputs are fresh random data each run;
// the seed is in every failure's trace so that it replays.
#include "harness/runtime/cpu_ranks.h"
#include "harness/runtime/errors.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace lb {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const std::vector<torch::ScalarType> kDtypes = {torch::kFloat32, torch::kBFloat16};
const std::vector<VarAlgo> kAlgos = {VarAlgo::Grouped, VarAlgo::Padded, VarAlgo::Auto};

uint64_t fresh_seed() {
  std::random_device device;
  return (uint64_t(device()) << 32) | device();
}

std::string seed_trace(uint64_t seed) { return "seed " + std::to_string(seed); }

std::vector<int64_t> shape_with_rows(int64_t rows, const std::vector<int64_t>& trailing) {
  std::vector<int64_t> shape{rows};
  shape.insert(shape.end(), trailing.begin(), trailing.end());
  return shape;
}

// One rank's input: its own stream of the test's seed, so that the test can rebuild it.
torch::Tensor random_input(uint64_t seed, int rank, int64_t rows, const std::vector<int64_t>& trailing,
                           torch::ScalarType dtype) {
  auto generator = at::detail::createCPUGenerator(seed * 1000003 + uint64_t(rank));
  return torch::randn(shape_with_rows(rows, trailing), generator, torch::kFloat32).to(dtype);
}

std::vector<torch::Tensor> random_inputs(uint64_t seed, const std::vector<int64_t>& rows,
                                         const std::vector<int64_t>& trailing, torch::ScalarType dtype) {
  std::vector<torch::Tensor> inputs;
  for (size_t r = 0; r < rows.size(); ++r) inputs.push_back(random_input(seed, int(r), rows[r], trailing, dtype));
  return inputs;
}

// Row counts in [0, 5] with at least one rank holding none when there are several ranks.
std::vector<int64_t> uneven_rows(uint64_t seed, int ranks) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> rows(ranks);
  for (auto& r : rows) r = int64_t(rng() % 6);
  if (ranks > 1) rows[rng() % ranks] = 0;
  return rows;
}

// The spec written out element by element: fp32 upcasts summed in rank order, one cast at the end.
torch::Tensor naive_sum(const std::vector<torch::Tensor>& parts) {
  std::vector<torch::Tensor> f32;
  for (const auto& p : parts) f32.push_back(p.to(torch::kFloat32).contiguous());
  torch::Tensor sum = torch::empty_like(f32[0]);
  float* out = sum.data_ptr<float>();
  for (int64_t i = 0; i < sum.numel(); ++i) {
    float acc = f32[0].data_ptr<float>()[i];
    for (size_t r = 1; r < f32.size(); ++r) acc += f32[r].data_ptr<float>()[i];
    out[i] = acc;
  }
  return sum.to(parts[0].scalar_type());
}

int64_t sum_before(const std::vector<int64_t>& rows, int rank) {
  return std::accumulate(rows.begin(), rows.begin() + rank, int64_t{0});
}

testing::AssertionResult bitwise_equal(const torch::Tensor& got, const torch::Tensor& want) {
  if (!got.defined()) return testing::AssertionFailure() << "undefined result";
  if (got.scalar_type() != want.scalar_type())
    return testing::AssertionFailure() << "dtype " << got.scalar_type() << " vs " << want.scalar_type();
  if (got.sizes() != want.sizes()) return testing::AssertionFailure() << "shape " << got.sizes() << " vs " << want.sizes();
  const torch::Tensor a = got.contiguous(), b = want.contiguous();
  if (std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "values differ, max |diff| "
                                     << (a.to(torch::kFloat32) - b.to(torch::kFloat32)).abs().max().item<float>();
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Runs fn on `ranks` CPU ranks and returns the message of the error it ends with ("" if none).
template <typename Error = std::exception>
std::string run_expecting(int ranks, const RankFunction& fn, milliseconds timeout) {
  try {
    run_cpu_ranks(ranks, fn, timeout);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const milliseconds kTimeout = std::chrono::seconds(20);

TEST(CpuRanksCommunicator, AllReduceIsTheRankOrderedFp32Sum) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_trace(seed));
  for (int ranks = 1; ranks <= 8; ++ranks)
    for (auto dtype : {torch::kFloat32, torch::kBFloat16, torch::kFloat16})
      for (const std::vector<int64_t>& trailing : {std::vector<int64_t>{}, std::vector<int64_t>{3, 5}}) {
        SCOPED_TRACE(std::to_string(ranks) + " ranks, " + c10::toString(dtype) + ", " +
                     std::to_string(trailing.size()) + " trailing dims");
        const auto inputs = random_inputs(seed + ranks, std::vector<int64_t>(ranks, 7), trailing, dtype);
        std::vector<torch::Tensor> results(ranks);
        run_cpu_ranks(ranks, [&](RankContext& ctx) {
          torch::Tensor t = inputs[ctx.rank()].clone();
          ctx.world().all_reduce(t);
          results[ctx.rank()] = t;
        }, kTimeout);
        const torch::Tensor want = naive_sum(inputs);
        for (int r = 0; r < ranks; ++r) EXPECT_TRUE(bitwise_equal(results[r], want)) << "rank " << r;
      }
}

TEST(CpuRanksCommunicator, AllGatherConcatenatesInRankOrder) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_trace(seed));
  for (int ranks = 1; ranks <= 8; ++ranks)
    for (auto dtype : kDtypes)
      for (int64_t rows : {0, 3}) {
        SCOPED_TRACE(std::to_string(ranks) + " ranks, " + c10::toString(dtype) + ", " + std::to_string(rows) + " rows");
        const auto inputs = random_inputs(seed + ranks, std::vector<int64_t>(ranks, rows), {3, 5}, dtype);
        std::vector<torch::Tensor> results(ranks);
        run_cpu_ranks(ranks, [&](RankContext& ctx) {
          results[ctx.rank()] = ctx.world().all_gather(inputs[ctx.rank()]);
        }, kTimeout);
        const torch::Tensor want = torch::cat(inputs);
        for (int r = 0; r < ranks; ++r) EXPECT_TRUE(bitwise_equal(results[r], want)) << "rank " << r;
      }
}

TEST(CpuRanksCommunicator, AllGathervUnevenRowsEveryAlgorithm) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_trace(seed));
  for (int ranks = 1; ranks <= 8; ++ranks)
    for (auto dtype : kDtypes)
      for (auto algo : kAlgos) {
        const auto rows = uneven_rows(seed + ranks, ranks);
        SCOPED_TRACE(std::to_string(ranks) + " ranks, " + c10::toString(dtype) + ", " + to_string(algo));
        const auto inputs = random_inputs(seed + ranks, rows, {3, 5}, dtype);
        std::vector<torch::Tensor> results(ranks);
        run_cpu_ranks(ranks, [&](RankContext& ctx) {
          ctx.world().set_var_algo(algo);
          results[ctx.rank()] = ctx.world().all_gatherv(inputs[ctx.rank()], rows);
        }, kTimeout);
        const torch::Tensor want = torch::cat(inputs);
        for (int r = 0; r < ranks; ++r) EXPECT_TRUE(bitwise_equal(results[r], want)) << "rank " << r;
      }
}

TEST(CpuRanksCommunicator, ReduceScatterGivesEachRankItsChunkOfTheSum) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_trace(seed));
  for (int ranks = 1; ranks <= 8; ++ranks)
    for (auto dtype : kDtypes)
      for (int64_t chunk : {0, 2}) {
        SCOPED_TRACE(std::to_string(ranks) + " ranks, " + c10::toString(dtype) + ", chunk " + std::to_string(chunk));
        const auto inputs = random_inputs(seed + ranks, std::vector<int64_t>(ranks, chunk * ranks), {3, 5}, dtype);
        std::vector<torch::Tensor> results(ranks);
        run_cpu_ranks(ranks, [&](RankContext& ctx) {
          results[ctx.rank()] = ctx.world().reduce_scatter(inputs[ctx.rank()]);
        }, kTimeout);
        const torch::Tensor sum = naive_sum(inputs);
        for (int r = 0; r < ranks; ++r)
          EXPECT_TRUE(bitwise_equal(results[r], sum.narrow(0, r * chunk, chunk))) << "rank " << r;
      }
}

TEST(CpuRanksCommunicator, ReduceScattervUnevenRowsEveryAlgorithmBitwiseEqual) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_trace(seed));
  for (int ranks = 1; ranks <= 8; ++ranks)
    for (auto dtype : kDtypes) {
      const auto rows = uneven_rows(seed + ranks, ranks);
      const int64_t total = std::accumulate(rows.begin(), rows.end(), int64_t{0});
      SCOPED_TRACE(std::to_string(ranks) + " ranks, " + c10::toString(dtype));
      const auto inputs = random_inputs(seed + ranks, std::vector<int64_t>(ranks, total), {3, 5}, dtype);
      // results[algo][rank], all algorithms in one run.
      std::vector<std::vector<torch::Tensor>> results(kAlgos.size(), std::vector<torch::Tensor>(ranks));
      run_cpu_ranks(ranks, [&](RankContext& ctx) {
        for (size_t a = 0; a < kAlgos.size(); ++a) {
          ctx.world().set_var_algo(kAlgos[a]);
          results[a][ctx.rank()] = ctx.world().reduce_scatterv(inputs[ctx.rank()], rows);
        }
      }, kTimeout);
      const torch::Tensor sum = naive_sum(inputs);
      for (size_t a = 0; a < kAlgos.size(); ++a)
        for (int r = 0; r < ranks; ++r)
          EXPECT_TRUE(bitwise_equal(results[a][r], sum.narrow(0, sum_before(rows, r), rows[r])))
              << to_string(kAlgos[a]) << ", rank " << r;
    }
}

TEST(CpuRanksCommunicator, AllToAllvMovesEveryBlock) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_trace(seed));
  for (int ranks = 1; ranks <= 8; ++ranks)
    for (auto dtype : kDtypes) {
      SCOPED_TRACE(std::to_string(ranks) + " ranks, " + c10::toString(dtype));
      // send[i][j]: rows rank i sends to rank j, zeros included.
      std::mt19937_64 rng(seed + ranks);
      std::vector<std::vector<int64_t>> send(ranks, std::vector<int64_t>(ranks));
      for (auto& row : send)
        for (auto& n : row) n = int64_t(rng() % 4);
      std::vector<int64_t> rows;
      for (const auto& row : send) rows.push_back(std::accumulate(row.begin(), row.end(), int64_t{0}));
      const auto inputs = random_inputs(seed + ranks, rows, {3, 5}, dtype);
      std::vector<torch::Tensor> results(ranks);
      run_cpu_ranks(ranks, [&](RankContext& ctx) {
        const int me = ctx.rank();
        std::vector<int64_t> recv;
        for (int i = 0; i < ranks; ++i) recv.push_back(send[i][me]);
        results[me] = ctx.world().all_to_allv(inputs[me], send[me], recv);
      }, kTimeout);
      for (int j = 0; j < ranks; ++j) {
        std::vector<torch::Tensor> blocks;
        for (int i = 0; i < ranks; ++i) blocks.push_back(inputs[i].narrow(0, sum_before(send[i], j), send[i][j]));
        EXPECT_TRUE(bitwise_equal(results[j], torch::cat(blocks))) << "rank " << j;
      }
    }
}

TEST(CpuRanksCommunicator, BroadcastCopiesTheRootEverywhere) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_trace(seed));
  for (int ranks = 1; ranks <= 8; ++ranks)
    for (auto dtype : kDtypes)
      for (int root = 0; root < ranks; ++root) {
        SCOPED_TRACE(std::to_string(ranks) + " ranks, " + c10::toString(dtype) + ", root " + std::to_string(root));
        const auto inputs = random_inputs(seed + ranks, std::vector<int64_t>(ranks, 4), {3, 5}, dtype);
        std::vector<torch::Tensor> results(ranks);
        run_cpu_ranks(ranks, [&](RankContext& ctx) {
          torch::Tensor t = inputs[ctx.rank()].clone();
          ctx.world().broadcast(t, root);
          results[ctx.rank()] = t;
        }, kTimeout);
        for (int r = 0; r < ranks; ++r) EXPECT_TRUE(bitwise_equal(results[r], inputs[root])) << "rank " << r;
      }
}

TEST(CpuRanksCommunicator, BarrierWaitsForEveryRank) {
  for (int ranks = 1; ranks <= 8; ++ranks) {
    SCOPED_TRACE(std::to_string(ranks) + " ranks");
    std::atomic<int> before{0};
    std::vector<int> seen(ranks, -1);
    run_cpu_ranks(ranks, [&](RankContext& ctx) {
      // Later ranks arrive later, so a barrier that lets anyone through early shows it.
      std::this_thread::sleep_for(milliseconds(2 * ctx.rank()));
      ++before;
      ctx.world().barrier();
      seen[ctx.rank()] = before.load();
    }, kTimeout);
    for (int r = 0; r < ranks; ++r) EXPECT_EQ(seen[r], ranks) << "rank " << r;
  }
}

TEST(CpuRanksCommunicator, ContextReportsRankSizeAndCpuDevice) {
  std::vector<std::string> seen(3);
  run_cpu_ranks(3, [&](RankContext& ctx) {
    seen[ctx.rank()] = std::to_string(ctx.world_size()) + " " + ctx.device().str() + " " + ctx.world().name() + " " +
                       std::to_string(ctx.world().rank()) + "/" + std::to_string(ctx.world().size());
  }, kTimeout);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(seen[r], "3 cpu world " + std::to_string(r) + "/3");
}

TEST(CpuRanksCommunicator, AutoPickStaysInStepWithAZeroRowRank) {
  // A rank with no rows used to land in another size class than its peers, skip the measurement
  // they ran on the second call, and leave them waiting.
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_trace(seed));
  const std::vector<std::vector<int64_t>> calls = {{0, 4}, {0, 64}, {0, 64}, {64, 0}};
  std::vector<std::vector<torch::Tensor>> inputs;
  for (size_t c = 0; c < calls.size(); ++c) inputs.push_back(random_inputs(seed + c, calls[c], {8}, torch::kFloat32));
  std::vector<std::vector<torch::Tensor>> results(calls.size(), std::vector<torch::Tensor>(2));
  run_cpu_ranks(2, [&](RankContext& ctx) {
    for (size_t c = 0; c < calls.size(); ++c)
      results[c][ctx.rank()] = ctx.world().all_gatherv(inputs[c][ctx.rank()], calls[c]);
  }, milliseconds(3000));
  for (size_t c = 0; c < calls.size(); ++c)
    for (int r = 0; r < 2; ++r) EXPECT_TRUE(bitwise_equal(results[c][r], torch::cat(inputs[c]))) << "call " << c;
}

TEST(CpuRanksCommunicator, RecordsOneEntryPerCall) {
  std::vector<std::vector<CollectiveRecord>> world_records(2), tp_records(2);
  run_cpu_ranks(2, [&](RankContext& ctx) {
    Communicator& world = ctx.world();
    const int me = ctx.rank();
    torch::Tensor t = torch::ones({4, 3});  // 48 bytes
    world.all_reduce(t);
    world.all_gather(torch::ones({2, 3}, torch::kBFloat16));  // 12 bytes
    world.set_var_algo(VarAlgo::Grouped);
    world.all_gatherv(torch::ones({me + 1, 3}), {1, 2});  // 12 or 24 bytes
    world.set_var_algo(VarAlgo::Padded);
    world.reduce_scatterv(torch::ones({5, 3}), {2, 3});  // 60 bytes
    world.reduce_scatter(torch::ones({2, 3}));           // 24 bytes
    world.all_to_allv(torch::ones({2, 3}), {1, 1}, {1, 1});
    world.broadcast(t, 1);
    world.barrier();
    auto tp = ctx.split("tp", {{0, 1}});
    tp->set_var_algo(VarAlgo::Auto);
    tp->all_gatherv(torch::ones({me, 3}), {0, 1});  // the measurement is not recorded
    tp->barrier();
    world_records[me] = world.records();
    tp_records[me] = tp->records();
  }, kTimeout);
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    const std::vector<std::pair<std::string, int64_t>> want = {
        {"all_reduce", 48},     {"all_gather", 12},  {"all_gatherv/grouped", 12 * (r + 1)},
        {"reduce_scatterv/padded", 60}, {"reduce_scatter", 24}, {"all_to_allv", 24},
        {"broadcast", 48},      {"barrier", 0}};
    ASSERT_EQ(world_records[r].size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(world_records[r][i].op, want[i].first);
      EXPECT_EQ(world_records[r][i].group, "world");
      EXPECT_EQ(world_records[r][i].bytes, want[i].second) << want[i].first;
      EXPECT_GE(world_records[r][i].ms, 0.0);
    }
    ASSERT_EQ(tp_records[r].size(), 2u);
    EXPECT_TRUE(tp_records[r][0].op == "all_gatherv/grouped" || tp_records[r][0].op == "all_gatherv/padded")
        << tp_records[r][0].op;
    EXPECT_EQ(tp_records[r][0].group, "tp");
    EXPECT_EQ(tp_records[r][0].bytes, 12 * r);
    EXPECT_EQ(tp_records[r][1].op, "barrier");
  }
}

TEST(CpuRanksCommunicator, SplitGroupsWorkIndependently) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_trace(seed));
  const std::vector<std::vector<int>> tp = {{0, 1, 2, 3}, {4, 5, 6, 7}};
  const std::vector<std::vector<int>> dp = {{0, 2, 4, 6}, {1, 3, 5, 7}};
  const auto inputs = random_inputs(seed, std::vector<int64_t>(8, 3), {5}, torch::kFloat32);
  std::vector<torch::Tensor> tp_sum(8), dp_gather(8), world_sum(8);
  std::vector<std::string> ids(8);
  run_cpu_ranks(8, [&](RankContext& ctx) {
    const int me = ctx.rank();
    auto tp_comm = ctx.split("tp", tp);
    auto dp_comm = ctx.split("dp", dp);
    ids[me] = tp_comm->name() + " " + std::to_string(tp_comm->rank()) + "/" + std::to_string(tp_comm->size()) + " " +
              dp_comm->name() + " " + std::to_string(dp_comm->rank()) + "/" + std::to_string(dp_comm->size());
    // The two tp groups run different numbers of collectives; neither waits for the other.
    torch::Tensor t = inputs[me].clone();
    if (me < 4) {
      tp_comm->barrier();
      tp_comm->barrier();
    }
    tp_comm->all_reduce(t);
    tp_sum[me] = t;
    dp_gather[me] = dp_comm->all_gather(inputs[me]);
    torch::Tensor w = inputs[me].clone();
    ctx.world().all_reduce(w);
    world_sum[me] = w;
  }, kTimeout);
  const torch::Tensor all = naive_sum(inputs);
  for (int r = 0; r < 8; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    const auto& tp_group = tp[r / 4];
    const auto& dp_group = dp[r % 2];
    EXPECT_EQ(ids[r], "tp " + std::to_string(r % 4) + "/4 dp " + std::to_string(r / 2) + "/4");
    std::vector<torch::Tensor> tp_parts, dp_parts;
    for (int m : tp_group) tp_parts.push_back(inputs[m]);
    for (int m : dp_group) dp_parts.push_back(inputs[m]);
    EXPECT_TRUE(bitwise_equal(tp_sum[r], naive_sum(tp_parts)));
    EXPECT_TRUE(bitwise_equal(dp_gather[r], torch::cat(dp_parts)));
    EXPECT_TRUE(bitwise_equal(world_sum[r], all));
  }
}

TEST(CpuRanksCommunicator, SplittingTwiceUnderOneNameGivesIndependentGroups) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_trace(seed));
  const std::vector<std::vector<int>> first = {{0, 1}, {2, 3}};
  const std::vector<std::vector<int>> second = {{3, 0}, {1, 2}};
  const auto inputs = random_inputs(seed, std::vector<int64_t>(4, 2), {3}, torch::kFloat32);
  std::vector<torch::Tensor> a_gather(4), b_gather(4);
  std::vector<int> b_rank(4);
  run_cpu_ranks(4, [&](RankContext& ctx) {
    const int me = ctx.rank();
    auto a = ctx.split("g", first);
    auto b = ctx.split("g", second);
    b_rank[me] = b->rank();
    // Group 0 of each split holds different ranks; shared state would mix them up.
    a_gather[me] = a->all_gather(inputs[me]);
    b_gather[me] = b->all_gather(inputs[me]);
  }, milliseconds(3000));
  EXPECT_EQ(b_rank, (std::vector<int>{1, 0, 1, 0}));
  for (int r = 0; r < 4; ++r) {
    const auto& ga = first[r / 2];
    const auto& gb = r == 0 || r == 3 ? second[0] : second[1];
    EXPECT_TRUE(bitwise_equal(a_gather[r], torch::cat({inputs[ga[0]], inputs[ga[1]]}))) << "rank " << r;
    EXPECT_TRUE(bitwise_equal(b_gather[r], torch::cat({inputs[gb[0]], inputs[gb[1]]}))) << "rank " << r;
  }
}

TEST(CpuRanksCommunicator, ArgumentErrorsNameTheOpAndGroup) {
  // Each bad call throws on every rank before any data moves, so the ranks stay in step.
  std::vector<std::vector<std::string>> messages(2);
  run_cpu_ranks(2, [&](RankContext& ctx) {
    auto tp = ctx.split("tp", {{0, 1}});
    Communicator& world = ctx.world();
    const int me = ctx.rank();
    auto expect = [&](const std::function<void()>& call) {
      try {
        call();
        messages[me].push_back("(no error)");
      } catch (const std::invalid_argument& e) {
        messages[me].push_back(e.what());
      }
    };
    expect([&] { world.all_gatherv(torch::ones({1, 3}), {1}); });
    expect([&] { tp->all_gatherv(torch::ones({2, 3}), {1, 1}); });
    expect([&] { torch::Tensor t = torch::ones({3, 4}).t(); world.all_reduce(t); });
    expect([&] { tp->all_gather(torch::ones({2, 3}, torch::kInt32)); });
    expect([&] { world.reduce_scatterv(torch::ones({4, 3}), {1, 2}); });
    expect([&] { tp->reduce_scatter(torch::ones({3, 3})); });
    expect([&] { world.all_to_allv(torch::ones({3, 3}), {1, 1}, {1, 1}); });
    expect([&] { torch::Tensor t = torch::ones({2}); tp->broadcast(t, 2); });
    world.barrier();  // still in step
  }, kTimeout);
  const std::vector<std::pair<std::string, std::string>> want = {
      {"all_gatherv on group world", "1 row counts for 2 ranks"},
      {"all_gatherv on group tp", "has 2 rows but rows["},
      {"all_reduce on group world", "not contiguous"},
      {"all_gather on group tp", "dtype"},
      {"reduce_scatterv on group world", "sum to 3"},
      {"reduce_scatter on group tp", "do not split evenly"},
      {"all_to_allv on group world", "send counts"},
      {"broadcast on group tp", "root 2"}};
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(messages[r].size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_TRUE(contains(messages[r][i], want[i].first)) << messages[r][i];
      EXPECT_TRUE(contains(messages[r][i], want[i].second)) << messages[r][i];
    }
  }
  // Uncaught, the error leaves run_cpu_ranks as std::invalid_argument with the rank in front.
  const std::string error = run_expecting<std::invalid_argument>(2, [](RankContext& ctx) {
    ctx.world().all_gatherv(torch::ones({1, 3}), {1, 1, 1});
  }, kTimeout);
  EXPECT_TRUE(contains(error, "rank ")) << error;
  EXPECT_TRUE(contains(error, "all_gatherv on group world")) << error;
  EXPECT_THROW(run_cpu_ranks(0, [](RankContext&) {}), std::invalid_argument);
  EXPECT_THROW(run_cpu_ranks(2, [](RankContext& ctx) { ctx.split("bad", {{0}, {0, 1}}); }), std::invalid_argument);
}

TEST(CpuRanksCommunicator, MismatchedCallsAreCommErrors) {
  // Different ops at the same point.
  std::string error = run_expecting<CommError>(2, [](RankContext& ctx) {
    ctx.world().set_var_algo(VarAlgo::Grouped);
    if (ctx.rank() == 0) ctx.world().reduce_scatterv(torch::ones({4, 3}), {2, 2});
    else ctx.world().all_gather(torch::ones({2, 3}));
  }, kTimeout);
  EXPECT_TRUE(contains(error, "rank 0 called reduce_scatterv while rank 1 called all_gather")) << error;

  // Same op, different row counts.
  error = run_expecting<CommError>(2, [](RankContext& ctx) {
    ctx.world().set_var_algo(VarAlgo::Grouped);
    const std::vector<int64_t> rows = ctx.rank() == 0 ? std::vector<int64_t>{1, 2} : std::vector<int64_t>{1, 3};
    ctx.world().all_gatherv(torch::ones({rows[ctx.rank()], 3}), rows);
  }, kTimeout);
  EXPECT_TRUE(contains(error, "all_gatherv on group world")) << error;
  EXPECT_TRUE(contains(error, "row counts")) << error;

  // Same op, different dtypes.
  error = run_expecting<CommError>(2, [](RankContext& ctx) {
    torch::Tensor t = torch::ones({2}, ctx.rank() == 0 ? torch::kFloat32 : torch::kBFloat16);
    ctx.world().all_reduce(t);
  }, kTimeout);
  EXPECT_TRUE(contains(error, "all_reduce on group world")) << error;
  EXPECT_TRUE(contains(error, "BFloat16")) << error;

  // Receive counts that do not match what the peer sends.
  error = run_expecting<CommError>(2, [](RankContext& ctx) {
    const std::vector<int64_t> recv = ctx.rank() == 0 ? std::vector<int64_t>{1, 2} : std::vector<int64_t>{1, 1};
    ctx.world().all_to_allv(torch::ones({2, 3}), {1, 1}, recv);
  }, kTimeout);
  EXPECT_TRUE(contains(error, "all_to_allv on group world")) << error;
  EXPECT_TRUE(contains(error, "rank 1 sends 1 rows to rank 0, which expects 2")) << error;

  // Different broadcast roots.
  error = run_expecting<CommError>(2, [](RankContext& ctx) {
    torch::Tensor t = torch::ones({2});
    ctx.world().broadcast(t, ctx.rank());
  }, kTimeout);
  EXPECT_TRUE(contains(error, "root")) << error;
}

TEST(CpuRanksCommunicator, PeerThatNeverJoinsTimesOut) {
  const auto start = Clock::now();
  const std::string error = run_expecting<CommError>(4, [](RankContext& ctx) {
    if (ctx.rank() == 2) return;
    torch::Tensor t = torch::ones({3});
    ctx.world().all_reduce(t);
  }, milliseconds(200));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(contains(error, "all_reduce on group world: rank(s) 2 did not arrive within 200 ms")) << error;
}

TEST(CpuRanksCommunicator, PeerThatNeverJoinsASplitGroupIsNamedInIt) {
  const auto start = Clock::now();
  std::atomic<int> completed{0};
  const std::string error = run_expecting<CommError>(4, [&](RankContext& ctx) {
    auto tp = ctx.split("attn_tp", {{0, 1}, {2, 3}});
    if (ctx.rank() == 3) return;
    torch::Tensor t = torch::ones({3});
    tp->all_reduce(t);
    ++completed;
  }, milliseconds(200));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(contains(error, "all_reduce on group attn_tp: rank(s) 1 (world rank(s) 3) did not arrive")) << error;
  EXPECT_EQ(completed.load(), 2);  // the other group was not held up
}

TEST(CpuRanksCommunicator, PeerThatDiesAbortsTheOthersPromptly) {
  for (int delay_ms : {0, 50}) {
    SCOPED_TRACE("dies after " + std::to_string(delay_ms) + " ms");
    const auto start = Clock::now();
    std::vector<std::string> first(4), later(4);
    std::string error;
    try {
      run_cpu_ranks(4, [&](RankContext& ctx) {
        const int me = ctx.rank();
        if (me == 1) {
          // With a delay the others are already waiting when it dies; without, some arrive after.
          std::this_thread::sleep_for(milliseconds(delay_ms));
          throw std::runtime_error("boom");
        }
        torch::Tensor t = torch::ones({3});
        try {
          ctx.world().all_reduce(t);
        } catch (const CommError& e) {
          first[me] = e.what();
        }
        try {
          ctx.world().barrier();
        } catch (const CommError& e) {
          later[me] = e.what();
          throw;
        }
      }, std::chrono::seconds(30));
    } catch (const CommError& e) {
      error = e.what();
    }
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
    EXPECT_TRUE(contains(error, "rank 1")) << error;
    EXPECT_TRUE(contains(error, "boom")) << error;
    for (int r : {0, 2, 3}) {
      EXPECT_TRUE(contains(first[r], "all_reduce on group world: rank 1 failed: boom")) << first[r];
      EXPECT_TRUE(contains(later[r], "barrier on group world: rank 1 failed: boom")) << later[r];
    }
  }
}

TEST(CpuRanksCommunicator, RootCauseKeepsItsType) {
  auto failing = [](int who, std::function<void()> raise) {
    return [who, raise](RankContext& ctx) {
      if (ctx.rank() == who) raise();
      ctx.world().barrier();
    };
  };
  EXPECT_EQ(run_expecting<InputError>(3, failing(2, [] { throw InputError("bad flag"); }), kTimeout),
            "rank 2: bad flag");
  EXPECT_EQ(run_expecting<std::invalid_argument>(3, failing(0, [] { throw std::invalid_argument("bad arg"); }), kTimeout),
            "rank 0: bad arg");
  EXPECT_EQ(run_expecting<CommError>(3, failing(1, [] { throw 42; }), kTimeout), "rank 1: unknown exception");
}

}  // namespace
}  // namespace lb
