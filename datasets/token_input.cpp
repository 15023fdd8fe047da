#include "datasets/token_input.h"

#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <random>
#include <sstream>

namespace lb {

std::vector<int64_t> parse_lengths(const std::string& text, const std::string& flag) {
  std::vector<int64_t> lengths;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || value <= 0)
      throw InputError(flag + " '" + text + "': '" + item + "' is not a positive integer");
    lengths.push_back(value);
  }
  if (lengths.empty()) throw InputError(flag + ": no lengths given");
  return lengths;
}

TokenBatch random_tokens(const std::vector<int64_t>& seq_lens, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x746f6b656e73ULL);  // mt19937_64's sequence is fixed by the standard
  std::vector<int64_t> ids;
  for (int64_t len : seq_lens)
    for (int64_t i = 0; i < len; ++i) ids.push_back(int64_t(rng() % uint64_t(vocab)));
  return {torch::tensor(ids, torch::kInt64), seq_lens};
}

TokenBatch read_token_file(const std::string& path, int64_t vocab) {
  // An ifstream opens a directory and fails only on reading, with "basic_filebuf::underflow".
  if (is_directory(path)) throw InputError(path + ": a directory, not a token file");
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot open token file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": not valid JSON (" + e.what() + ")");
  }
  if (j.is_object() && j.contains("input_ids")) j = j.at("input_ids");
  if (!j.is_array() || j.empty()) throw InputError(path + ": expected a non-empty list of token ids or of lists");
  if (!j.front().is_array()) j = nlohmann::json::array({j});
  TokenBatch batch;
  std::vector<int64_t> ids;
  for (size_t s = 0; s < j.size(); ++s) {
    if (!j[s].is_array() || j[s].empty()) throw InputError(path + ": sequence " + std::to_string(s) + " is empty or not a list");
    for (const auto& id : j[s]) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab)
        throw InputError(path + ": sequence " + std::to_string(s) + " holds " + id.dump() +
                         ", not a token id in [0, " + std::to_string(vocab) + ")");
      ids.push_back(id.get<int64_t>());
    }
    batch.seq_lens.push_back(int64_t(j[s].size()));
  }
  batch.ids = torch::tensor(ids, torch::kInt64);
  return batch;
}

}  // namespace lb
