// bench --trace-prefill: one more prefill per layout under LibTorch's profiler, written as a Chrome
// trace that scripts/nsys_prefill_summary.py reads. Debian's CPU LibTorch 1.13 has no Kineto: there
// the flag is refused up front, naming itself and the reason.
#include "harness/runtime/host_trace.h"
#include "subprocess.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>

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

TEST(HostTrace, BenchTracesOnePrefillPerLayoutOrRefusesTheFlag) {
  test::TempDir dir;
  const std::string folder = dir / "traces";
  const test::CliResult r =
      test::run_cli({"bench", "--model", "tiny-qwen3-moe", "--layout", "tp,cp-fused-moe", "--backend", "cpu",
                     "--ranks", "2", "--layers", "1", "--lengths", "16,8", "--decode-batch", "none", "--repeats", "1",
                     "--trace-prefill", folder});
  std::string why;
  if (!HostTrace::available(&why)) {
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.err.find("--trace-prefill"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(folder)) << "refused, yet it made the folder";
    return;
  }
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (const char* layout : {"tp", "cp-fused-moe"}) {
    const std::string path = folder + "/prefill_" + layout + ".json";
    ASSERT_TRUE(std::filesystem::exists(path)) << path;
    EXPECT_FALSE(nlohmann::json::parse(test::read_file_text(path)).at("traceEvents").empty()) << path;
  }
}

}  // namespace
}  // namespace lb
