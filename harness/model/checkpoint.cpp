#include "harness/model/checkpoint.h"

#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"

#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

namespace lb {

namespace {

using nlohmann::json;

constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kSingleFile = "model.safetensors";

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}


json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw InputError(path + ": read failed");
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw InputError(path + ": not valid JSON (" + e.what() + ")");
  }
}

}  // namespace

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) throw InputError("checkpoint directory " + dir + " does not exist");
    throw InputError("checkpoint directory " + dir + ": " + std::strerror(err));
  }
  if (!S_ISDIR(st.st_mode)) throw InputError("checkpoint " + dir + " is not a directory");

  const std::string index_path = join_path(dir, kIndexFile);
  const std::string single_path = join_path(dir, kSingleFile);
  if (::stat(index_path.c_str(), &st) == 0) {
    const json index = read_json(index_path);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw InputError(index_path + ": no \"weight_map\" object");
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw InputError(index_path + ": weight_map entry for tensor '" + it.key() + "' is not a file name");
      shard_of_[it.key()] = it.value().get<std::string>();
    }
    // Shards are opened on first use, but a missing one is reported now, before any compute.
    std::map<std::string, std::string> first_tensor;  // shard file -> one tensor it holds
    for (const auto& [name, file] : shard_of_) first_tensor.emplace(file, name);
    for (const auto& [file, name] : first_tensor) {
      const std::string shard = join_path(dir, file);
      if (!is_regular_file(shard))
        throw InputError(shard + ": missing, but " + kIndexFile + " lists tensor '" + name + "' in it");
    }
  } else if (::stat(single_path.c_str(), &st) == 0) {
    auto file = std::make_unique<SafetensorsFile>(single_path);
    for (const auto& entry : file->tensors()) shard_of_[entry.first] = kSingleFile;
    shards_[kSingleFile] = std::move(file);
  } else {
    throw InputError("checkpoint " + dir + " has neither " + kIndexFile + " nor " + kSingleFile);
  }
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(shard_of_.size());
  for (const auto& entry : shard_of_) out.push_back(entry.first);  // std::map: already sorted
  return out;
}

const SafetensorsFile& Checkpoint::shard_for(const std::string& name) const {
  const std::string& file = shard_of_.at(name);
  std::lock_guard<std::mutex> lock(*mutex_);
  auto it = shards_.find(file);
  if (it != shards_.end()) return *it->second;

  auto shard = std::make_unique<SafetensorsFile>(join_path(dir_, file));
  // Check the whole index against this shard once, so a stale index fails on open, not mid-run.
  for (const auto& [tensor, tensor_file] : shard_of_)
    if (tensor_file == file && !shard->has(tensor))
      throw InputError(shard->path() + ": tensor '" + tensor + "' is listed in " + kIndexFile +
                       " but absent from the file");
  return *shards_.emplace(file, std::move(shard)).first->second;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  if (!has(name)) throw InputError("checkpoint " + dir_ + " has no tensor '" + name + "'");
  return shard_for(name).info(name);
}

torch::Tensor Checkpoint::read(const std::string& name, torch::ScalarType out, std::optional<Slice> slice) const {
  if (!has(name)) throw InputError("checkpoint " + dir_ + " has no tensor '" + name + "'");
  return shard_for(name).read(name, out, slice);
}

std::string Checkpoint::fingerprint() const {
  uint64_t hash = 1469598103934665603ull;  // FNV-1a, 64 bit
  auto mix = [&](const void* data, size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
  };
  auto mix_text = [&](const std::string& s) { mix(s.data(), s.size() + 1); };  // with its terminator
  for (const auto& [name, file] : shard_of_) {  // sorted by name
    const TensorInfo& t = info(name);
    mix_text(name);
    mix_text(to_string(t.dtype));
    mix_text(shape_str(t.shape));
    if (t.shape.size() == 1) {
      const torch::Tensor values = read(name, torch::kFloat32).contiguous();
      mix(values.data_ptr(), size_t(values.numel()) * sizeof(float));
    }
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  return std::string("checkpoint:") + hex;
}

torch::Tensor Checkpoint::read_expect(const std::string& name, const std::vector<int64_t>& shape,
                                      torch::ScalarType out, std::optional<Slice> slice) const {
  if (!has(name)) throw InputError("checkpoint " + dir_ + " has no tensor '" + name + "'");
  const SafetensorsFile& shard = shard_for(name);
  const TensorInfo& t = shard.info(name);
  if (t.shape != shape)
    throw InputError(shard.path() + ": tensor '" + name + "' has shape " + shape_str(t.shape) + ", expected " +
                     shape_str(shape));
  return shard.read(name, out, slice);
}

}  // namespace lb
