#include "reports/record_file.h"

#include "harness/runtime/final_writes.h"
#include "harness/runtime/launch.h"
#include "reports/run_record.h"

#include <iostream>

namespace lb {

RecordFile::RecordFile(std::string path, nlohmann::json record)
    : path_(hosts_world_rank_zero() ? std::move(path) : std::string()), record_(std::move(record)) {
  record_["complete"] = false;
  if (!writes()) return;
  write_locked();  // nothing else can hold the lock yet
  final_write_id_ = add_final_write([this](const Ending& ending) { fail(ending.error, ending.interrupted); });
}

RecordFile::~RecordFile() {
  if (final_write_id_ >= 0) remove_final_write(final_write_id_);
}

void RecordFile::update(const std::function<void(nlohmann::json&)>& edit) {
  std::lock_guard<std::mutex> lock(mutex_);
  edit(record_);
  write_locked();
}

void RecordFile::finish() {
  update([](nlohmann::json& r) { r["complete"] = !r.contains("error"); });
}

void RecordFile::fail(const std::string& error, const std::string& interrupted) noexcept {
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    // The first failure is the cause; a later one (the interrupt of a failing run) adds nothing.
    if (record_.contains("error")) return;
    record_["complete"] = false;
    record_["error"] = error;
    if (!interrupted.empty()) record_["interrupted"] = interrupted;
    write_locked();
    if (writes()) std::cerr << "partial record (what finished, and the error) written to " << path_ << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "warning: the record could not be written: " << e.what() << std::endl;
  }
}

nlohmann::json RecordFile::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return record_;
}

void RecordFile::write_locked() {
  if (writes()) write_json(path_, record_);
}

}  // namespace lb
