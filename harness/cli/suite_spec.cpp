#include "harness/cli/suite_spec.h"

#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>

namespace lb {

namespace {

std::string folder_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

std::string replaced(std::string text, const std::string& key, const std::string& value) {
  for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + value.size()))
    text.replace(at, key.size(), value);
  return text;
}

// A run's name becomes a file name: letters, digits, '-', '_' and '.' only, not starting with '.'.
bool safe_name(const std::string& name) {
  if (name.empty() || name[0] == '.' || name.size() > 100) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'; });
}

}  // namespace

const std::vector<std::string>& suite_subcommands() {
  static const std::vector<std::string> names = {"check", "bench", "bench-moe", "bench-layer", "collectives", "gsm8k",
                                                 "reference"};
  return names;
}

SuiteSpec read_suite(const std::string& path, const std::string& shared_dir) {
  if (!is_regular_file(path)) throw InputError(path + ": no such suite file");
  std::ifstream in(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": not valid JSON (" + e.what() + ")");
  }
  auto fail = [&](const std::string& what) { throw InputError(path + ": " + what); };
  if (!j.is_object() || !j.contains("runs") || !j["runs"].is_array() || j["runs"].empty())
    fail("a suite is an object with a non-empty \"runs\" array");
  SuiteSpec spec;
  spec.name = j.value("name", "suite");
  const std::string suite_dir = folder_of(path);
  std::set<std::string> names;
  for (size_t i = 0; i < j["runs"].size(); ++i) {
    const nlohmann::json& r = j["runs"][i];
    const std::string where = "run " + std::to_string(i);
    if (!r.is_object() || !r.contains("name") || !r["name"].is_string()) fail(where + " has no \"name\"");
    SuiteRun run;
    run.name = r["name"].get<std::string>();
    if (!safe_name(run.name))
      fail(where + " name '" + run.name + "': use letters, digits, '-', '_' and '.' (it names the record file)");
    if (!names.insert(run.name).second) fail("two runs are named '" + run.name + "'");
    if (!r.contains("args") || !r["args"].is_array() || r["args"].empty())
      fail("run '" + run.name + "' has no \"args\" (the command line after layoutbench)");
    for (const nlohmann::json& a : r["args"]) {
      if (!a.is_string()) fail("run '" + run.name + "': every arg must be a string");
      std::string arg = replaced(replaced(a.get<std::string>(), "{suite_dir}", suite_dir), "{shared}", shared_dir);
      if (arg == "--json" || arg.rfind("--json=", 0) == 0)
        fail("run '" + run.name + "' names its own --json: the suite writes each record into the run folder");
      run.args.push_back(std::move(arg));
    }
    const auto& subs = suite_subcommands();
    if (std::find(subs.begin(), subs.end(), run.args[0]) == subs.end()) {
      std::string list;
      for (const auto& s : subs) list += (list.empty() ? "" : ", ") + s;
      fail("run '" + run.name + "': '" + run.args[0] + "' is not a subcommand a suite runs (" + list + ")");
    }
    if (r.contains("timeout_s")) {
      if (!r["timeout_s"].is_number_integer() || r["timeout_s"].get<int64_t>() < 1 || r["timeout_s"].get<int64_t>() > 86400)
        fail("run '" + run.name + "': timeout_s must be an integer from 1 to 86400");
      run.timeout_s = r["timeout_s"].get<int>();
    }
    spec.runs.push_back(std::move(run));
  }
  return spec;
}

}  // namespace lb
