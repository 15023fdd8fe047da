#include "harness/runtime/fault_injection.h"

#include "harness/runtime/errors.h"

#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace lb {

namespace {

const char* const kOps[] = {"all_reduce",      "all_gather",  "all_gatherv", "reduce_scatter",
                            "reduce_scatterv", "all_to_allv", "broadcast",   "barrier", "any"};

struct Armed {
  std::mutex mutex;
  std::optional<FaultSpec> spec;
  std::map<std::string, int64_t> calls;  // the armed rank's calls per op ("any" counts all)
};

Armed& armed() {
  static Armed* a = new Armed;  // never destroyed: a hung rank thread may outlive static destruction
  return *a;
}

thread_local int thread_rank = -1;

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ':')) parts.push_back(part);
  return parts;
}

int64_t positive(const std::string& text, const std::string& spec, const char* what, int64_t least) {
  size_t used = 0;
  long long v = -1;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || v < least)
    throw InputError("--inject-fault '" + spec + "': " + what + " '" + text + "' must be an integer >= " +
                     std::to_string(least));
  return v;
}

}  // namespace

FaultSpec parse_fault_spec(const std::string& text) {
  const std::string usage = " (expected KIND:RANK:OP:N with KIND crash, hang or slow, slow taking :MS after: "
                            "crash:1:all_reduce:3, slow:0:any:1:1500)";
  const std::vector<std::string> parts = split(text);
  if (parts.size() < 4) throw InputError("--inject-fault '" + text + "': too few fields" + usage);
  FaultSpec spec;
  if (parts[0] == "crash") spec.kind = FaultKind::Crash;
  else if (parts[0] == "hang") spec.kind = FaultKind::Hang;
  else if (parts[0] == "slow") spec.kind = FaultKind::Slow;
  else throw InputError("--inject-fault '" + text + "': unknown kind '" + parts[0] + "'" + usage);
  const size_t fields = spec.kind == FaultKind::Slow ? 5 : 4;
  if (parts.size() != fields)
    throw InputError("--inject-fault '" + text + "': " + parts[0] + " takes " + std::to_string(fields) + " fields" + usage);
  spec.rank = int(positive(parts[1], text, "rank", 0));
  spec.op = parts[2];
  bool known = false;
  for (const char* op : kOps) known = known || spec.op == op;
  if (!known) throw InputError("--inject-fault '" + text + "': unknown collective '" + spec.op + "'" + usage);
  spec.call = positive(parts[3], text, "call", 1);
  if (spec.kind == FaultKind::Slow) spec.delay = std::chrono::milliseconds(positive(parts[4], text, "delay", 1));
  return spec;
}

std::string to_string(const FaultSpec& spec) {
  const char* kind = spec.kind == FaultKind::Crash ? "crash" : spec.kind == FaultKind::Hang ? "hang" : "slow";
  std::string s = std::string(kind) + ":" + std::to_string(spec.rank) + ":" + spec.op + ":" + std::to_string(spec.call);
  if (spec.kind == FaultKind::Slow) s += ":" + std::to_string(spec.delay.count());
  return s;
}

void set_fault_injection(const std::optional<FaultSpec>& spec) {
  Armed& a = armed();
  std::lock_guard<std::mutex> lock(a.mutex);
  a.spec = spec;
  a.calls.clear();
}

void set_thread_rank(int rank) { thread_rank = rank; }

void maybe_inject_fault(const std::string& op) {
  Armed& a = armed();
  FaultSpec spec;
  {
    std::lock_guard<std::mutex> lock(a.mutex);
    if (!a.spec || a.spec->rank != thread_rank) return;
    const std::string base = op.substr(0, op.find('/'));
    if (a.spec->op != "any" && a.spec->op != base) return;
    if (++a.calls[a.spec->op] != a.spec->call) return;
    spec = *a.spec;
  }
  const std::string what = "injected fault " + to_string(spec) + ": rank " + std::to_string(spec.rank) + " at its call " +
                           std::to_string(spec.call) + " of " + spec.op + " (" + op + ")";
  switch (spec.kind) {
    case FaultKind::Crash:
      throw std::runtime_error(what + " (crash)");
    case FaultKind::Slow:
      std::this_thread::sleep_for(spec.delay);
      return;
    case FaultKind::Hang:
      std::cerr << what << ": this thread stops here for good" << std::endl;
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  }
}

}  // namespace lb
