#include "harness/cli/cli.h"

int main(int argc, char** argv) { return lb::layoutbench_main(std::vector<std::string>(argv, argv + argc)); }
