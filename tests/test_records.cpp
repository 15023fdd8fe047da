// Nothing lost: records are on disk from the start of a run, rewritten whole (atomically) after
// every layout, row or run, and keep what finished when the run fails, times out or is
// interrupted (SIGINT -> 130, SIGTERM -> 143). Output paths are checked before any compute, and an
// output equal to an input is refused.
#include "harness/runtime/atomic_file.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/final_writes.h"
#include "reports/record_file.h"
#include "reports/run_diff.h"
#include "reports/run_record.h"
#include "subprocess.h"
#include "test_util.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include <torch/version.h>

namespace lb {
namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

nlohmann::json read_json_file(const std::string& path) { return nlohmann::json::parse(test::read_file_text(path)); }

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  while (dirent* e = ::readdir(d))
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
  ::closedir(d);
  return names;
}

// What a rerun needs beside the command and commit: versions, GPUs, and the NCCL-relevant environment.
TEST(RunRecord, CarriesItsProvenance) {
  ::setenv("NCCL_TEST_PROVENANCE_KNOB", "7", 1);
  const nlohmann::json r = run_record("check", {"layoutbench", "check"}, "cpu");
  ::unsetenv("NCCL_TEST_PROVENANCE_KNOB");
  ASSERT_TRUE(r.contains("provenance")) << r.dump();
  const nlohmann::json& p = r["provenance"];
  EXPECT_EQ(p["versions"]["libtorch"], std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                                           "." + std::to_string(TORCH_VERSION_PATCH));
  EXPECT_EQ(p["environment"]["NCCL_TEST_PROVENANCE_KNOB"], "7");
  EXPECT_FALSE(p["environment"].contains("HOME"));  // only what changes a measurement
  EXPECT_TRUE(p["gpus"].is_array());
  EXPECT_EQ(p["dirty_tree"].get<bool>(), r["commit"].get<std::string>().find("-dirty") != std::string::npos);
}

TEST(AtomicFile, ReplacesWholeAndLeavesNoTemporary) {
  test::TempDir dir;
  write_file_atomically(dir / "a.txt", "first");
  write_file_atomically(dir / "a.txt", "second, longer");
  EXPECT_EQ(test::read_file_text(dir / "a.txt"), "second, longer");
  EXPECT_EQ(entries(dir.path), std::vector<std::string>{"a.txt"});
  EXPECT_THROW(write_file_atomically(dir / "no/such/dir/a.txt", "x"), InputError);
}

// A write that fails halfway (here: past a file-size limit, as a full disk would) leaves the
// previous record whole. The old in-place write truncated it first: gsm8k's finished runs were lost.
TEST(AtomicFile, AFailedWriteKeepsThePreviousFile) {
  test::TempDir dir;
  const std::string path = dir / "run.json";
  write_json(path, {{"schema", kRunSchema}, {"runs", {1, 2, 3}}});
  const std::string before = test::read_file_text(path);
  const pid_t child = ::fork();
  if (child == 0) {  // the limit applies to this child only
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = {4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    try {
      write_json(path, {{"schema", kRunSchema}, {"runs", std::string(100000, 'x')}});
    } catch (const InputError&) {
      ::_exit(0);
    }
    ::_exit(1);  // the write should have failed
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the oversized write did not fail";
  EXPECT_EQ(test::read_file_text(path), before);
  EXPECT_EQ(entries(dir.path), std::vector<std::string>{"run.json"});
}

TEST(RecordFile, IsOnDiskAtOnceAndKeepsTheFirstError) {
  test::TempDir dir;
  const std::string path = dir / "r.json";
  {
    RecordFile record(path, {{"schema", kRunSchema}, {"layouts", nlohmann::json::array()}});
    EXPECT_EQ(read_json_file(path)["complete"], false);
    record.update([](nlohmann::json& r) { r["layouts"].push_back("tp"); });
    EXPECT_EQ(read_json_file(path)["layouts"].size(), 1u);
    record.fail("rank 1: out of memory");
    record.fail("a later error");
    record.finish();  // an errored record never turns complete
  }
  const nlohmann::json r = read_json_file(path);
  EXPECT_EQ(r["error"], "rank 1: out of memory");
  EXPECT_EQ(r["complete"], false);
  EXPECT_EQ(r["layouts"].size(), 1u);
}

TEST(RecordFile, FinalWritesReachOpenRecordsOnly) {
  test::TempDir dir;
  RecordFile open(dir / "open.json", {{"schema", kRunSchema}});
  { RecordFile closed(dir / "closed.json", {{"schema", kRunSchema}}); }
  note_run_failure("rank 0: collective timed out");
  EXPECT_EQ(read_json_file(dir / "open.json")["error"], "rank 0: collective timed out");
  EXPECT_FALSE(read_json_file(dir / "closed.json").contains("error"));
}

TEST(RecordFile, AnUnwritablePathFailsAtOnce) {
  test::TempDir dir;
  EXPECT_THROW(RecordFile(dir / "missing/r.json", {}), InputError);
}

std::vector<std::string> check_all(const std::string& json, const std::string& fault) {
  return {"check", "--model", "tiny-qwen3-moe", "--layout", "all", "--backend", "cpu", "--ranks", "2", "--layers",
          "2", "--timeout", "600", "--inject-fault", fault, "--json", json};
}

// A failure partway keeps the layouts that finished, with the error.
TEST(CheckRecord, AFailurePartwayKeepsTheFinishedLayouts) {
  test::TempDir dir;
  // Barrier 6 of rank 1 is the first of the second layout (1 after the references, 4 per layout).
  const test::CliResult r = test::run_cli(check_all(dir / "r.json", "crash:1:barrier:6"));
  EXPECT_EQ(r.code, 1) << r.err;
  const nlohmann::json record = read_json_file(dir / "r.json");
  EXPECT_EQ(record["layouts"].size(), 1u) << record.dump();
  EXPECT_TRUE(contains(record.value("error", ""), "injected fault")) << record.dump();
  EXPECT_EQ(record["complete"], false);
  EXPECT_TRUE(record.contains("thresholds"));
}

// bench keeps what finished too: the prefills of every layout, then each decode batch as it ends.
TEST(BenchRecord, AFailurePartwayKeepsThePrefillsAndTheFinishedDecodeBatches) {
  test::TempDir dir;
  // Rank 1's 14th barrier falls in the decode batches (2 layouts x 2 batch sizes, 3 barriers a round).
  const test::CliResult r = test::run_cli({"bench", "--model", "tiny-qwen3-moe", "--layout", "tp,cp-fused-moe",
                                           "--backend", "cpu", "--ranks", "2", "--layers", "2", "--lengths", "64,64",
                                           "--decode-batch", "1,2", "--decode-context", "16", "--decode-steps", "1",
                                           "--repeats", "1", "--inject-fault", "crash:1:barrier:14", "--json",
                                           dir / "b.json"});
  EXPECT_EQ(r.code, 1) << r.err;
  const nlohmann::json record = read_json_file(dir / "b.json");
  EXPECT_EQ(record["complete"], false);
  EXPECT_TRUE(contains(record.value("error", ""), "injected fault")) << record.dump();
  // How the decode steps ran, for telling an A/B apart: CPU ranks capture no graphs and chain nothing.
  EXPECT_EQ(record["cuda_graphs"], false);
  EXPECT_EQ(record["chained_launches"], false);
  ASSERT_EQ(record["layouts"].size(), 2u) << record.dump();
  size_t batches = 0;
  for (const auto& layout : record["layouts"]) {
    EXPECT_GT(layout["prefill_ms"].get<double>(), 0) << layout.dump();
    batches += layout["decode"].size();
  }
  EXPECT_GE(batches, 1u) << record.dump();
  EXPECT_LT(batches, 4u) << record.dump();
}

class Interrupted : public testing::TestWithParam<int> {};

// The signal comes while rank 1 hangs in the second layout: the record keeps the first, says so,
// and the process exits with 128 + the signal.
TEST_P(Interrupted, WritesTheRecordAndExitsWith128PlusTheSignal) {
  const int sig = GetParam();
  test::TempDir dir;
  const std::string path = dir / "r.json";
  test::Child child(check_all(path, "hang:1:barrier:6"));
  const bool one_layout = child.wait_until(
      [&] {
        try {
          return read_json_file(path)["layouts"].size() == 1;
        } catch (const std::exception&) {
          return false;  // not written yet
        }
      },
      std::chrono::seconds(120));
  ASSERT_TRUE(one_layout) << child.err();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // rank 0 is in the second layout
  child.signal(sig);
  ASSERT_TRUE(child.wait(std::chrono::seconds(30))) << child.err();
  EXPECT_EQ(child.exit_code(), 128 + sig) << child.err();
  const std::string name = sig == SIGINT ? "SIGINT" : "SIGTERM";
  const nlohmann::json record = read_json_file(path);
  EXPECT_EQ(record["interrupted"], name);
  EXPECT_TRUE(contains(record.value("error", ""), name));
  EXPECT_EQ(record["layouts"].size(), 1u);
  EXPECT_EQ(record["complete"], false);
}

INSTANTIATE_TEST_SUITE_P(Signals, Interrupted, testing::Values(SIGINT, SIGTERM),
                         [](const testing::TestParamInfo<int>& info) {
                           return std::string(info.param == SIGINT ? "SIGINT" : "SIGTERM");
                         });

// A partial record is not the same measurement as a complete one, and diff says so.
TEST(PartialRecords, DiffCallsANewPartialRunARegression) {
  const nlohmann::json base = read_json_file(test::fixture_dir("reports/check_old.json"));
  nlohmann::json partial = base;
  partial["error"] = "rank 1: all_reduce on group world: rank(s) 0 did not arrive within 5000 ms";
  partial["complete"] = false;
  const DiffResult d = diff_runs(base, partial);
  ASSERT_FALSE(d.regressions.empty());
  EXPECT_EQ(d.regressions.front().subject, "new run");
  EXPECT_TRUE(contains(d.regressions.front().change, "did not arrive")) << format_diff(d);
  const DiffResult back = diff_runs(partial, base);
  EXPECT_TRUE(contains(format_diff(back), "old run: ended with an error")) << format_diff(back);
  nlohmann::json interrupted = base;
  interrupted["interrupted"] = "SIGINT";
  EXPECT_TRUE(contains(format_diff(diff_runs(base, interrupted)), "new run: interrupted by SIGINT"));
}

// ---- output paths, before any compute ----

void expect_refused(const std::vector<std::string>& args, const std::vector<std::string>& needles) {
  const test::CliResult r = test::run_cli(args);
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_EQ(r.out, "") << "something ran before the refusal";
  for (const std::string& n : needles) EXPECT_TRUE(contains(r.err, n)) << "'" << n << "' not in: " << r.err;
}

TEST(OutputPaths, AreCheckedBeforeAnyCompute) {
  test::TempDir dir;
  const std::vector<std::string> check = {"check", "--model", "tiny-qwen3-moe", "--layout", "tp", "--backend", "cpu",
                                          "--ranks", "2"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = check;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  expect_refused(with({"--json", dir / "no/such/dir/r.json"}), {"--json", "does not exist"});
  expect_refused(with({"--json", dir.path}), {"--json", "is a directory"});
  expect_refused({"reference", "--model", "tiny-qwen3-moe", "--dump", dir / "x", "--json", dir / "x"},
                 {"--json", "--dump", "same file"});
  EXPECT_EQ(entries(dir.path).size(), 0u);
}

TEST(OutputPaths, AnOutputEqualToAnInputIsRefused) {
  test::TempDir dir;
  const std::string record = dir / "a.json";
  test::CliResult r = test::run_cli({"reference", "--model", "tiny-qwen3-moe", "--tokens", "8", "--json", record});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string before = test::read_file_text(record);
  expect_refused({"report", record, "-o", record}, {"--output", "is the input", "a.json"});
  // Another spelling of the same file, and a hard link to it.
  expect_refused({"report", record, "-o", dir.path + "/./a.json"}, {"is the input"});
  ASSERT_EQ(::link(record.c_str(), (dir / "b.json").c_str()), 0);
  expect_refused({"report", dir / "b.json", "-o", record}, {"is the input"});
  EXPECT_EQ(test::read_file_text(record), before);
  test::write_file_text(dir / "ids.json", "[1, 2, 3]");
  expect_refused({"reference", "--model", "tiny-qwen3-moe", "--input", dir / "ids.json", "--json", dir / "ids.json"},
                 {"--json", "--input"});
}

}  // namespace
}  // namespace lb
