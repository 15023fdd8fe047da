// The benchmarks' summaries of repeated timings.
#include "harness/runtime/timing.h"

#include <gtest/gtest.h>

namespace lb {
namespace {

// Rounds that drift together (round 3 is 1.6x slower for both) with one round where the layout
// alone was slow: the per-round ratio stays 1.25, while the ratio of medians (13 / 12.8) says 1.02.
TEST(Timing, MedianRoundSpeedupCancelsADriftBetweenRounds) {
  const std::vector<double> base = {10, 13, 16};
  const std::vector<double> layout = {8, 14, 12.8};
  EXPECT_NEAR(median_round_speedup(base, layout), 1.25, 1e-12);
  EXPECT_NEAR(median(base) / median(layout), 13 / 12.8, 1e-12);
  // Unequal lengths use the rounds both have; none gives 0.
  EXPECT_NEAR(median_round_speedup({10, 10, 10, 99}, {5, 5, 5}), 2.0, 1e-12);
  EXPECT_EQ(median_round_speedup({}, {1.0}), 0.0);
}

}  // namespace
}  // namespace lb
