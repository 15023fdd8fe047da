#include "harness/runtime/file_util.h"

#include <ftw.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace lb {

namespace {
bool stat_mode(const std::string& path, mode_t& mode) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  mode = st.st_mode;
  return true;
}
}  // namespace

bool is_directory(const std::string& path) {
  mode_t m;
  return stat_mode(path, m) && S_ISDIR(m);
}

bool is_regular_file(const std::string& path) {
  mode_t m;
  return stat_mode(path, m) && S_ISREG(m);
}

bool path_exists(const std::string& path) {
  mode_t m;
  return stat_mode(path, m);
}

std::string join_path(const std::string& dir, const std::string& file) {
  return (dir.empty() || dir.back() == '/') ? dir + file : dir + "/" + file;
}

std::string parent_directory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string make_temp_directory(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string name = join_path(tmp && *tmp ? tmp : "/tmp", prefix + "XXXXXX");
  if (!::mkdtemp(name.data())) throw std::runtime_error("mkdtemp " + name + ": " + std::strerror(errno));
  return name;
}

void remove_tree(const std::string& path) {
  if (path.empty() || !path_exists(path)) return;
  auto remove_one = [](const char* p, const struct stat*, int, struct FTW*) { return std::remove(p); };
  ::nftw(path.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

void copy_file(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw std::runtime_error("copy_file: cannot open " + from);
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("copy_file: cannot create " + to);
  out << in.rdbuf();
  if (!out) throw std::runtime_error("copy_file: write failed for " + to);
}

}  // namespace lb
