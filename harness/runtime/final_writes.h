#pragma once
// Writes that must still happen when a run fails or the process ends without unwinding (SIGINT,
// SIGTERM, MPI_Abort after a rank failed). The open run records register here.
#include <functional>
#include <string>

namespace lb {

struct Ending {
  std::string error;        // why the run ended, for the record's "error"
  std::string interrupted;  // "SIGINT" or "SIGTERM" when a signal ended it, else ""
};

using FinalWrite = std::function<void(const Ending&)>;

// Returns an id for remove_final_write. `write` must not throw and must be safe to call from any
// thread while the run goes on (it takes its own locks).
int add_final_write(FinalWrite write);
void remove_final_write(int id);

// Runs every registered write once, in registration order; later calls do nothing.
void run_final_writes(const Ending& ending);

// A run failed and its error is on its way up the stack: every registered write gets it now,
// while the frames that hold the records still exist (they stay registered; a record keeps the
// first error it is given). run_ranks calls it, so a command need not catch to record a failure.
void note_run_failure(const std::string& error);

}  // namespace lb
