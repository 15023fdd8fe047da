#include "datasets/shared_files.h"

#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"

#include <cstdlib>

namespace lb {

std::string shared_dir() {
  const char* dir = std::getenv("LB_SHARED_DIR");
  return dir && *dir ? dir : "../shared";
}

std::string shared_file(const std::string& relative, const std::string& purpose) {
  const std::string path = join_path(shared_dir(), relative);
  if (!is_regular_file(path))
    throw InputError(path + " is missing (" + purpose + "); set LB_SHARED_DIR to the shared folder (the one holding " +
                     relative + "), or run from the repository root with ../shared beside it");
  return path;
}

}  // namespace lb
