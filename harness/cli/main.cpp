#include "harness/cli/cli.h"
#include "harness/runtime/interrupts.h"

int main(int argc, char** argv) {
  lb::end_cleanly_on_interrupt();
  return lb::layoutbench_main(std::vector<std::string>(argv, argv + argc));
}
