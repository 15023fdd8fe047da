#pragma once
// Replacing a file so that a reader (or the next run) sees either the old contents or the new,
// never a mix or a truncated file: the bytes go to a temporary file in the same directory, are
// flushed to disk, and the temporary is renamed over the target. A full disk or a crash mid-write
// leaves the previous version in place.
#include <string>

namespace lb {

// Throws InputError naming `path` (and the system's reason) when the file cannot be written.
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace lb
