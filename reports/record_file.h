#pragma once
// A run record kept on disk while the run goes: written whole (atomically, see atomic_file.h) when
// the run starts, after every finished layout, run or row, and at the end, so a failure, a timeout,
// a signal or a full disk leaves the last complete version, never a truncated file.
//   "complete": false until finish(); a record without "complete": true is a partial one;
//   "error": why the run ended early (a rank's error, a timeout, a signal);
//   "interrupted": "SIGINT" or "SIGTERM" when a signal ended it.
// While open, it is registered for run_final_writes, so an interrupt or a hard exit writes it too.
// Under mpirun/srun only the process of world rank 0 writes (the others hold the record in memory).
#include <nlohmann/json.hpp>

#include <functional>
#include <mutex>
#include <string>

namespace lb {

class RecordFile {
 public:
  // An empty `path` keeps the record in memory only. Writes the record at once (marked incomplete),
  // so an unwritable path fails here, before any compute; InputError naming the path.
  RecordFile(std::string path, nlohmann::json record);
  ~RecordFile();
  RecordFile(const RecordFile&) = delete;
  RecordFile& operator=(const RecordFile&) = delete;

  const std::string& path() const { return path_; }
  bool writes() const { return !path_.empty(); }

  // Changes the record under its lock and writes it. `edit` must not throw.
  void update(const std::function<void(nlohmann::json&)>& edit);
  // Marks the record complete and writes it.
  void finish();
  // Writes the record with `error` (and `interrupted`, when given); never throws: a record that
  // cannot be written then is reported on stderr, since the run is failing already.
  void fail(const std::string& error, const std::string& interrupted = "") noexcept;
  // A copy, for the printed summary.
  nlohmann::json snapshot() const;

 private:
  void write_locked();

  std::string path_;
  nlohmann::json record_;
  mutable std::mutex mutex_;
  int final_write_id_ = -1;
};

}  // namespace lb
