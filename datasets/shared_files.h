#pragma once
// Files the harness reads from ../shared by default (the real tokenizers). ../shared is the folder
// beside the repository, as the README's commands name it from the repository root; the
// environment variable LB_SHARED_DIR names it where it lies elsewhere (the GPU machine's carried copy).
#include <string>

namespace lb {

// LB_SHARED_DIR when set, else "../shared".
std::string shared_dir();

// shared_dir()/relative; InputError when it is missing, saying what it was for (`purpose`) and
// how to point at it.
std::string shared_file(const std::string& relative, const std::string& purpose);

}  // namespace lb
