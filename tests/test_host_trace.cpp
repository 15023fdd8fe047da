// bench --trace-prefill and --trace-decode: one more prefill per layout, and one more burst of
// decode steps per layout and batch, under LibTorch's profiler, written as Chrome traces that
// scripts/nsys_prefill_summary.py and scripts/decode_trace_summary.py read. Debian's CPU LibTorch
// 1.13 has no Kineto: there each flag is refused up front, naming itself and the reason.
#include "harness/runtime/host_trace.h"
#include "subprocess.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

namespace lb {
namespace {

TEST(HostTrace, RecordsTheOpsItSaw) {
  std::string why;
  if (!HostTrace::available(&why)) GTEST_SKIP() << "this LibTorch cannot write a trace: " << why;
  test::TempDir dir;
  const std::string path = dir / "t.json";
  {
    HostTrace trace;
    const torch::Tensor a = torch::randn({32, 32});
    EXPECT_GT(torch::mm(a, a.t()).trace().item<float>(), 0.0f);  // a A^T is positive semi-definite
    trace.save(path);
  }
  const nlohmann::json t = nlohmann::json::parse(test::read_file_text(path));
  bool saw_mm = false;
  for (const auto& e : t.at("traceEvents")) saw_mm = saw_mm || e.value("name", "") == "aten::mm";
  EXPECT_TRUE(saw_mm) << "no aten::mm event in " << path;
}

// bench with `flag` naming `folder`: where this LibTorch cannot trace, refused up front (the flag
// named, no folder made); else each of `files` (in the folder) written with events.
void expect_traces_or_refusal(std::vector<std::string> args, const std::string& flag, const std::string& folder,
                              const std::vector<std::string>& files) {
  args.insert(args.end(), {flag, folder});
  const test::CliResult r = test::run_cli(args);
  std::string why;
  if (!HostTrace::available(&why)) {
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.err.find(flag), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(folder)) << "refused, yet it made the folder";
    return;
  }
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (const std::string& file : files) {
    const std::string path = folder + "/" + file;
    ASSERT_TRUE(std::filesystem::exists(path)) << path;
    EXPECT_FALSE(nlohmann::json::parse(test::read_file_text(path)).at("traceEvents").empty()) << path;
  }
}

TEST(HostTrace, BenchTracesOnePrefillPerLayoutOrRefusesTheFlag) {
  test::TempDir dir;
  expect_traces_or_refusal({"bench", "--model", "tiny-qwen3-moe", "--layout", "tp,cp-fused-moe", "--backend", "cpu",
                            "--ranks", "2", "--layers", "1", "--lengths", "16,8", "--decode-batch", "none", "--repeats",
                            "1"},
                           "--trace-prefill", dir / "traces", {"prefill_tp.json", "prefill_cp-fused-moe.json"});
}

TEST(HostTrace, BenchTracesDecodeStepsPerLayoutAndBatchOrRefusesTheFlag) {
  test::TempDir dir;
  expect_traces_or_refusal({"bench", "--model", "tiny-qwen3-moe", "--layout", "tp", "--backend", "cpu", "--ranks", "2",
                            "--layers", "1", "--lengths", "16,8", "--decode-batch", "1,3", "--decode-context", "8",
                            "--decode-steps", "1", "--repeats", "1"},
                           "--trace-decode", dir / "decode_traces", {"decode_tp_b1.json", "decode_tp_b3.json"});
}

}  // namespace
}  // namespace lb
