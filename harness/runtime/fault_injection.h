#pragma once
// --inject-fault (for tests): one rank crashes, hangs or is slow at its N-th call of one
// collective, on CPU ranks and NCCL alike, so that "a dead or stuck peer ends the run, bounded,
// with a record" can be shown from the command line and not only from unit tests.
//   crash: the rank throws, as a rank that fails (out of memory, a bad shape) does;
//   hang:  the rank's thread stops for good, never returning (not even on abort), as a rank stuck
//          in a driver call or a deadlock does;
//   slow:  the rank sleeps, then goes on (below --timeout the run must complete and be right).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace lb {

enum class FaultKind { Crash, Hang, Slow };

struct FaultSpec {
  FaultKind kind = FaultKind::Crash;
  int rank = 0;              // world rank
  std::string op = "any";    // a collective (all_reduce, all_gatherv, ..., barrier) or any
  int64_t call = 1;          // the rank's N-th call of that op, from 1
  std::chrono::milliseconds delay{0};  // slow only
};

// "KIND:RANK:OP:N", slow with ":MS" after: "crash:1:all_reduce:3", "hang:0:any:5",
// "slow:2:all_gatherv:1:1500". InputError naming --inject-fault on anything else.
FaultSpec parse_fault_spec(const std::string& text);
std::string to_string(const FaultSpec& spec);

// Arms (or, with nullopt, disarms) the fault for this process and resets the call counts.
void set_fault_injection(const std::optional<FaultSpec>& spec);

// Launchers tell which world rank the calling thread runs; -1: none.
void set_thread_rank(int rank);

// Every collective calls this before it starts, with its op name ("all_reduce", or
// "all_gatherv/padded": the part before '/' is matched).
void maybe_inject_fault(const std::string& op);

}  // namespace lb
