#pragma once
// The layoutbench command line: subcommands registered here, errors turned into one clear
// message and a non-zero exit code.
#include <string>
#include <vector>

namespace lb {

// Runs the CLI as if called with `args` (args[0] is the program name); returns the exit code.
int layoutbench_main(const std::vector<std::string>& args);

}  // namespace lb
