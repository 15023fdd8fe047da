#pragma once
// CPU ranks: one thread per rank in this process, moving CPU tensors through shared memory. Slow,
// but exact and deterministic, so it is the backend that tests and CPU-only machines run on.
#include "harness/runtime/rank_context.h"

#include <chrono>

namespace lb {

// Runs fn on `ranks` threads of this process, each with a RankContext whose communicators move
// CPU tensors through shared memory. A rank that throws aborts the others (their pending and later
// collectives throw CommError naming the failed rank); a rank that does not arrive at a collective
// within `timeout` makes the waiting ranks throw CommError naming the group, the op and the absent
// ranks. Once a rank has failed, the others get kStopGrace to end; a thread still running then
// (stuck outside any collective) is left behind and named in the error (rank_threads.h). Then
// rethrows the first rank's own error (the root cause, not the CommErrors it caused) with "rank N: "
// prefixed; std::invalid_argument, InputError and CommError keep their type, anything else
// becomes CommError.
void run_cpu_ranks(int ranks, const RankFunction& fn, std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace lb
