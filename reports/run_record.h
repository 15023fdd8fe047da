#pragma once
// The JSON record of one run: what was run (command, commit, device, config) and what it
// measured. Every number in results/ and in the docs comes from one of these.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lb {

constexpr const char* kRunSchema = "layoutbench.run/1";

// The commit: $LB_COMMIT if set (GPU machines get a copy of the tree without .git), else
// `git rev-parse HEAD` in the source tree, with "-dirty" when the tree has changes.
std::string source_commit();
// Whether a commit from source_commit() names a tree with changes.
bool is_dirty_commit(const std::string& commit);

// A record's header: schema, subcommand, command, commit, device, date, and "provenance" (whether
// the tree was dirty, LibTorch/CUDA/NCCL/driver versions, the GPUs with their clocks, and the
// environment variables that change NCCL's or LibTorch's behaviour).
nlohmann::json run_record(const std::string& subcommand, const std::vector<std::string>& argv,
                          const std::string& device);

// Replaces `path` atomically (atomic_file.h): readers never see a half-written record.
void write_json(const std::string& path, const nlohmann::json& record);
// A run record read from disk; InputError naming the file when it is missing or not a JSON object.
nlohmann::json read_run_file(const std::string& path);

}  // namespace lb
