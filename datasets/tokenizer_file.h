#pragma once
// A HF tokenizer.json as its parts read it: every refusal is an InputError that names the file and
// the dotted key at fault ("pre_tokenizer.pretokenizers[2].pattern"), so a bad file is one message.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace lb {

class TokenizerFile {
 public:
  // Reads and parses `path`; InputError when it is missing, not JSON, or not a JSON object.
  explicit TokenizerFile(std::string path);

  const std::string& path() const { return path_; }
  const nlohmann::json& root() const { return root_; }

  [[noreturn]] void refuse(const std::string& what) const;

  // obj[key], which must exist; `name` is the dotted key the message shows.
  const nlohmann::json& member(const nlohmann::json& obj, const char* key, const std::string& name) const;
  // part["type"] as a string.
  std::string type_of(const nlohmann::json& part, const std::string& name) const;
  // part[key] as true or false; `absent` when the key is missing or null.
  bool flag(const nlohmann::json& part, const char* key, const std::string& name, bool absent) const;
  // An id in [0, 2^31), as HF's u32 ids that fit int32 embeddings.
  int64_t id(const nlohmann::json& value, const std::string& name) const;
  // A non-empty string.
  std::string text(const nlohmann::json& value, const std::string& name) const;

 private:
  std::string path_;
  nlohmann::json root_;
};

// obj[key], or null when the file leaves it out, as HF reads an absent optional part.
nlohmann::json optional_member(const nlohmann::json& obj, const char* key);

}  // namespace lb
