#include "datasets/tokenizer_file.h"

#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"

#include <fstream>
#include <sstream>

namespace lb {

using json = nlohmann::json;

TokenizerFile::TokenizerFile(std::string path) : path_(std::move(path)) {
  if (!is_regular_file(path_)) refuse("no such tokenizer file");
  std::ifstream in(path_, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) refuse("cannot read the tokenizer file");
  try {
    root_ = json::parse(text.str());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e309
    refuse(std::string("not valid JSON: ") + e.what());
  }
  if (!root_.is_object()) refuse("not a tokenizer.json (the top level is not an object)");
}

void TokenizerFile::refuse(const std::string& what) const { throw InputError(path_ + ": " + what); }

const json& TokenizerFile::member(const json& obj, const char* key, const std::string& name) const {
  if (!obj.is_object() || !obj.contains(key)) refuse("missing key " + name);
  return obj.at(key);
}

std::string TokenizerFile::type_of(const json& part, const std::string& name) const {
  const json& type = member(part, "type", name + ".type");
  if (!type.is_string()) refuse(name + ".type must be a string");
  return type.get<std::string>();
}

bool TokenizerFile::flag(const json& part, const char* key, const std::string& name, bool absent) const {
  const json value = optional_member(part, key);
  if (value.is_null()) return absent;
  if (!value.is_boolean()) refuse(name + "." + key + " must be true or false");
  return value.get<bool>();
}

int64_t TokenizerFile::id(const json& value, const std::string& name) const {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > INT32_MAX)
    refuse(name + " must be an id in [0, 2^31)");
  return value.get<int64_t>();
}

std::string TokenizerFile::text(const json& value, const std::string& name) const {
  if (!value.is_string() || value.get_ref<const std::string&>().empty()) refuse(name + " must be a non-empty string");
  return value.get<std::string>();
}

json optional_member(const json& obj, const char* key) {
  return obj.is_object() && obj.contains(key) ? obj.at(key) : json();
}

}  // namespace lb
