#pragma once
// A suite file: the runs a nightly job (or a paper's reproduction) makes in one go, each one
// layoutbench command line without its --json, which the suite adds.
//   {"name": "smoke-cpu",
//    "runs": [{"name": "check-qwen", "args": ["check", "--model", "tiny-qwen3-moe", ...],
//              "timeout_s": 600}, ...]}
// In args, "{suite_dir}" stands for the suite file's folder and "{shared}" for the shared data
// folder (--shared, by default ../shared beside the repository the suite file is in).
#include <string>
#include <vector>

namespace lb {

struct SuiteRun {
  std::string name;               // the record is <name>.json in the run folder
  std::vector<std::string> args;  // the subcommand first
  int timeout_s = 3600;           // the child is ended past this
};

struct SuiteSpec {
  std::string name;
  std::vector<SuiteRun> runs;
};

// The subcommands a suite may run (the ones that write a run record).
const std::vector<std::string>& suite_subcommands();

// Reads and checks `path` (InputError naming the file and the problem: not JSON, no runs, a run
// without a name or args, a duplicate or unsafe name, an unknown subcommand, a --json of its own,
// a non-positive timeout), with the placeholders in args replaced.
SuiteSpec read_suite(const std::string& path, const std::string& shared_dir);

}  // namespace lb
