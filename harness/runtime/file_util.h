#pragma once
// Path checks and temp directories in plain POSIX. Not std::filesystem: pip LibTorch 2.x exports
// its own copies of the std::filesystem symbols (pytorch/pytorch#133437); calls can bind to those
// and crash, so nothing in this project uses std::filesystem.
#include <string>

namespace lb {

bool is_directory(const std::string& path);
bool is_regular_file(const std::string& path);
bool path_exists(const std::string& path);

// "dir/file", with no doubled slash.
std::string join_path(const std::string& dir, const std::string& file);

// The directory part of a path: "a/b.json" -> "a", "b.json" -> ".".
std::string parent_directory(const std::string& path);

// A fresh empty directory under $TMPDIR (or /tmp), named from `prefix`; throws on failure.
std::string make_temp_directory(const std::string& prefix);

// Removes a directory tree; quietly does nothing when it is absent.
void remove_tree(const std::string& path);

// Copies one file byte for byte; throws on failure.
void copy_file(const std::string& from, const std::string& to);

}  // namespace lb
