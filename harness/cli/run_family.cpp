#include "harness/cli/run_family.h"

#include "harness/cli/deepseek_v4_family.h"
#include "harness/cli/deepseek_v4_run.h"
#include "harness/cli/layout_spec_family.h"

namespace lb {

std::unique_ptr<RunFamily> open_run_family(const RunFlags& flags) {
  if (is_deepseek_v4_model(flags.model)) return open_deepseek_v4_family(flags);
  return open_layout_spec_family(flags);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace lb
