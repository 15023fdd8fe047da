#include "reports/run_record.h"

#include "harness/runtime/atomic_file.h"
#include "harness/runtime/build_info.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>

namespace lb {

namespace {

std::string run_command(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return out;
  std::array<char, 256> buffer{};
  while (fgets(buffer.data(), buffer.size(), pipe)) out += buffer.data();
  pclose(pipe);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string utc_now() {
  std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

}  // namespace

std::string source_commit() {
  if (const char* env = std::getenv("LB_COMMIT"); env && *env) return env;
  const std::string git = "git -C '" LB_SOURCE_DIR "' ";
  std::string commit = run_command(git + "rev-parse HEAD 2>/dev/null");
  if (commit.empty()) return "unknown";
  if (!run_command(git + "status --porcelain --untracked-files=no 2>/dev/null").empty()) commit += "-dirty";
  return commit;
}

bool is_dirty_commit(const std::string& commit) {
  const std::string suffix = "-dirty";
  return commit.size() > suffix.size() && commit.compare(commit.size() - suffix.size(), suffix.size(), suffix) == 0;
}

nlohmann::json run_record(const std::string& subcommand, const std::vector<std::string>& argv,
                          const std::string& device) {
  std::string command;
  for (const auto& arg : argv) command += (command.empty() ? "" : " ") + arg;
  const std::string commit = source_commit();
  const bool dirty = is_dirty_commit(commit);
  // What else a rerun needs: the libraries, the GPUs and the environment this binary ran with.
  const nlohmann::json provenance = {{"dirty_tree", dirty},
                                     {"versions", software_versions()},
                                     {"gpus", gpu_descriptions()},
                                     {"environment", relevant_environment()}};
  return {{"schema", kRunSchema}, {"subcommand", subcommand}, {"command", command}, {"commit", commit},
          {"device", device},     {"date", utc_now()},        {"provenance", provenance}};
}

void write_json(const std::string& path, const nlohmann::json& record) {
  // Generated text may end inside a UTF-8 character (or be bytes of a random model): such bytes
  // are written as U+FFFD rather than failing the whole record.
  write_file_atomically(path, record.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

nlohmann::json read_run_file(const std::string& path) {
  if (!is_regular_file(path)) throw InputError(path + ": no such file");
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot read");
  nlohmann::json run;
  try {
    run = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for a number like 1e309
    throw InputError(path + ": not valid JSON (" + e.what() + ")");
  }
  if (!run.is_object()) throw InputError(path + ": not a run record (a JSON object was expected)");
  return run;
}

}  // namespace lb
