#pragma once
// One run of a suite as a child process of this same executable, so that a crash, a hang or a
// leak of one run cannot take the suite or the next run with it.
#include "harness/cli/suite_spec.h"

#include <string>

namespace lb {

struct SuiteChildResult {
  int exit_code = 0;  // the child's, or 128 + the signal that ended it
  double wall_s = 0;
  bool timed_out = false;
  std::string error;  // the last line of the child's stderr when it failed
};

// Runs `run.args` plus `--json record` with stdout and stderr into `log`; past run.timeout_s the
// child gets SIGTERM (it writes its partial record), then SIGKILL 30 s later.
SuiteChildResult run_suite_child(const SuiteRun& run, const std::string& record, const std::string& log);

}  // namespace lb
