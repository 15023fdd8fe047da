#pragma once
// Small helpers shared by the tests: fixture paths, temp directories, and running the CLI
// in-process with its output captured. No std::filesystem (see harness/runtime/file_util.h).
#include "harness/cli/cli.h"
#include "harness/runtime/file_util.h"
#include "harness/model/safetensors.h"

#include <gtest/gtest.h>

#include <cctype>
#include <map>
#include <string>
#include <vector>

namespace lb::test {

inline std::string fixture_dir(const std::string& name) { return join_path(LB_FIXTURE_DIR, name); }

// A fresh empty directory under the system temp dir, removed when the object dies.
struct TempDir {
  std::string path = make_temp_directory("lb_test_");
  TempDir() = default;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() { remove_tree(path); }
  std::string operator/(const std::string& name) const { return join_path(path, name); }
};

// A gtest parameter name: the case's index and label, with every other character an underscore.
inline std::string param_name(size_t index, const std::string& label) {
  std::string s = std::to_string(index) + "_" + label;
  for (char& ch : s)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

// Every tensor of a safetensors file by name: integers as int64, the rest as float32.
inline std::map<std::string, torch::Tensor> read_all_tensors(const std::string& path) {
  const SafetensorsFile file(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, info] : file.tensors())
    out[name] = file.read(name, info.dtype == StDtype::I64 ? torch::kInt64 : torch::kFloat32);
  return out;
}

struct CliResult {
  int code = 0;
  std::string out;
  std::string err;
};

inline CliResult run_cli(std::vector<std::string> args) {
  args.insert(args.begin(), "layoutbench");
  testing::internal::CaptureStderr();
  testing::internal::CaptureStdout();
  CliResult r;
  r.code = layoutbench_main(args);
  r.out = testing::internal::GetCapturedStdout();
  r.err = testing::internal::GetCapturedStderr();
  return r;
}

}  // namespace lb::test
