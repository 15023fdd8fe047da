// The progress display stays out of logs: with stderr not a terminal (ctest, CI, files) it
// prints nothing, so records and tables are never interleaved with it.
#include "harness/runtime/progress.h"

#include <gtest/gtest.h>

namespace lb {
namespace {

TEST(Progress, SilentWhenStderrIsNotATerminal) {
  testing::internal::CaptureStderr();
  {
    Progress progress("layers", 3);
    progress.step("one");
    progress.clear();
    progress.step();
    progress.step("three");
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

}  // namespace
}  // namespace lb
