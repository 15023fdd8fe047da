#pragma once
// Reading fields of run records that may come from any writer (the CLI, tests, logs parsed after
// a failed run): every field may be absent or of another type, and these readers never throw.
#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace lb {

std::string format(double v, const char* printf_spec);

// NaN and inf are written to JSON as null, so a missing number is also how a non-finite one looks.
std::optional<double> number(const nlohmann::json& j, const char* key);
// Strings as they are, floats as %.6g, anything else as compact JSON; "" when absent.
std::string scalar_text(const nlohmann::json& v);
std::string text(const nlohmann::json& j, const char* key);
// True only for a JSON true: a missing or odd "pass" is not a pass.
bool flag(const nlohmann::json& j, const char* key);
// The array or object at `key`, or an empty one.
const nlohmann::json& array_at(const nlohmann::json& j, const char* key);
const nlohmann::json& object_at(const nlohmann::json& j, const char* key);

}  // namespace lb
