#include "reports/record_fields.h"

#include <cstdio>

namespace lb {

using nlohmann::json;

std::string format(double v, const char* printf_spec) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, printf_spec, v);
  return buffer;
}

std::optional<double> number(const json& j, const char* key) {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

std::string scalar_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) return format(v.get<double>(), "%.6g");
  return v.dump();  // integers, bools, null; arrays and objects as compact JSON
}

std::string text(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return "";
  return scalar_text(j.at(key));
}

bool flag(const json& j, const char* key) {
  if (!j.is_object()) return false;
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

const json& array_at(const json& j, const char* key) {
  static const json empty = json::array();
  if (!j.is_object()) return empty;
  auto it = j.find(key);
  return it != j.end() && it->is_array() ? *it : empty;
}

const json& object_at(const json& j, const char* key) {
  static const json empty = json::object();
  if (!j.is_object()) return empty;
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : empty;
}

}  // namespace lb
