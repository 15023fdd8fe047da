// bench splits each layout's prefill time on rank 0 into compute (outside any collective), the
// collectives' own time, and waiting inside them for the other ranks.
#include "subprocess.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace lb {
namespace {

TEST(BenchTimeSplit, SharesOfThePrefillAddUpAndLayoutsWithCollectivesHaveSome) {
  test::TempDir dir;
  const test::CliResult r = test::run_cli({"bench", "--model", "tiny-qwen3-moe", "--layout", "tp,cp-fused-moe",
                                           "--backend", "cpu", "--ranks", "2", "--layers", "2", "--lengths", "64,64",
                                           "--repeats", "2", "--json", dir / "b.json"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("(time: compute "), std::string::npos) << r.out;
  const nlohmann::json record = nlohmann::json::parse(test::read_file_text(dir / "b.json"));
  ASSERT_EQ(record["layouts"].size(), 2u);
  for (const auto& layout : record["layouts"]) {
    const nlohmann::json& split = layout.at("prefill_time_split");
    double shares = 0;
    for (const char* part : {"compute", "communication", "waiting"}) {
      const double share = split.at(std::string(part) + "_share").get<double>();
      EXPECT_GE(share, 0) << part << " " << layout.dump();
      shares += share;
      EXPECT_NEAR(split.at(std::string(part) + "_ms").get<double>(), share * layout["prefill_ms"].get<double>(), 1e-6);
    }
    EXPECT_NEAR(shares, 1.0, 1e-9) << layout.dump();
    // Both layouts exchange activations every layer: some of the time is inside collectives, and
    // most of it is the model's compute.
    EXPECT_GT(split["communication_ms"].get<double>() + split["waiting_ms"].get<double>(), 0) << layout.dump();
    EXPECT_GT(split["compute_share"].get<double>(), 0.2) << layout.dump();
  }
}

}  // namespace
}  // namespace lb
