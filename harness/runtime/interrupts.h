#pragma once
// SIGINT and SIGTERM end a run with its records written: a watcher thread takes the signal, lets a
// record write in progress finish, writes every open record with "interrupted" and "error"
// (run_final_writes), and exits with 128 + the signal number (130, 143). A second signal while
// that happens ends the process at once, as an impatient user expects.
namespace lb {

// Installs the handlers and starts the watcher; main() calls it, a test process does not.
void end_cleanly_on_interrupt();

}  // namespace lb
