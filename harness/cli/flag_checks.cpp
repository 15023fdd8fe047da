#include "harness/cli/flag_checks.h"

#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace lb {

namespace {

constexpr const char* kInputFile = "INPUT_FILE";
constexpr const char* kOutputFile = "OUTPUT_FILE";

std::string in_quotes(const std::string& s) { return "'" + s + "'"; }

// Plain decimal digits with nothing around them: no sign, no 0x, no spaces.
bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// "" when `text` is a decimal integer in [least, 2^64-1], else why not.
std::string integer_problem(const std::string& text, unsigned long long least, const char* what) {
  if (!all_digits(text)) return in_quotes(text) + " is not " + what + " (decimal digits only)";
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE) return in_quotes(text) + " is out of range (at most " + std::to_string(ULLONG_MAX) + ")";
  if (v < least) return in_quotes(text) + " is not " + what;
  return "";
}

// "" when `text` is a finite number >= least (or > least when strict), else why not.
std::string number_problem(const std::string& text, double least, bool strict) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size()) return in_quotes(text) + " is not a number";
  if (!std::isfinite(v)) return in_quotes(text) + " is not finite";
  if (strict ? !(v > least) : !(v >= least))
    return in_quotes(text) + " must be " + (strict ? "> " : ">= ") + CLI::detail::to_string(least);
  return "";
}

// The directory part of `path` resolved through symlinks, plus the last component: two spellings
// of one file compare equal even when the file does not exist yet.
std::string canonical_path(const std::string& path) {
  const std::string dir = parent_directory(path);
  const size_t slash = path.find_last_of('/');
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  char resolved[PATH_MAX];
  if (!::realpath(dir.c_str(), resolved)) return path;
  return join_path(resolved, base);
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  if (::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0)
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  return canonical_path(a) == canonical_path(b);
}

bool has_validator(CLI::Option* option, const char* name) {
  try {
    option->get_validator(name);
    return true;
  } catch (const CLI::OptionNotFound&) {
    return false;
  }
}

}  // namespace

CLI::Validator positive_integer() {
  return CLI::Validator([](std::string& s) { return integer_problem(s, 1, "a positive integer"); }, "");
}

CLI::Validator non_negative_integer() {
  return CLI::Validator([](std::string& s) { return integer_problem(s, 0, "an integer >= 0"); }, "");
}

CLI::Validator seed_value() {
  return CLI::Validator([](std::string& s) { return integer_problem(s, 0, "a seed in [0, 2^64-1]"); }, "");
}

CLI::Validator positive_number() {
  return CLI::Validator([](std::string& s) { return number_problem(s, 0, true); }, "");
}

CLI::Validator finite_at_least(double least) {
  return CLI::Validator([least](std::string& s) { return number_problem(s, least, false); }, "");
}

CLI::Validator input_file() {
  return CLI::Validator(
      [](std::string& path) -> std::string {
        if (is_directory(path)) return in_quotes(path) + " is a directory, not a file";
        if (!path_exists(path)) return in_quotes(path) + ": no such file";
        if (!is_regular_file(path)) return in_quotes(path) + " is not a regular file";
        if (::access(path.c_str(), R_OK) != 0) return in_quotes(path) + " cannot be read: " + std::strerror(errno);
        return "";
      },
      "", kInputFile);
}

CLI::Validator output_file() {
  return CLI::Validator(
      [](std::string& path) -> std::string {
        if (path.empty()) return "an empty path";
        if (is_directory(path)) return in_quotes(path) + " is a directory, not a file";
        const std::string dir = parent_directory(path);
        if (!is_directory(dir)) return in_quotes(path) + ": its directory " + dir + " does not exist";
        if (::access(dir.c_str(), W_OK) != 0)
          return in_quotes(path) + ": its directory " + dir + " cannot be written: " + std::strerror(errno);
        if (path_exists(path) && ::access(path.c_str(), W_OK) != 0)
          return in_quotes(path) + " cannot be written: " + std::strerror(errno);
        return "";
      },
      "", kOutputFile);
}

void check_outputs_differ_from_inputs(CLI::App& sub) {
  struct Path {
    std::string flag, path;
  };
  std::vector<Path> inputs, outputs;
  for (CLI::Option* option : sub.get_options()) {
    if (option->count() == 0) continue;
    const bool output = has_validator(option, kOutputFile);
    if (!output && !has_validator(option, kInputFile)) continue;
    for (const std::string& path : option->results()) (output ? outputs : inputs).push_back({option->get_name(), path});
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Path& out = outputs[i];
    for (const Path& in : inputs)
      if (same_file(out.path, in.path))
        throw InputError(out.flag + " " + out.path + " is the input " + in.flag + " " + in.path +
                         ": writing it would destroy the input; choose another output path");
    for (size_t j = 0; j < i; ++j)
      if (same_file(out.path, outputs[j].path))
        throw InputError(out.flag + " and " + outputs[j].flag + " are the same file " + out.path +
                         ": give each output its own path");
  }
}

}  // namespace lb
