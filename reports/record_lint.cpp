#include "reports/record_lint.h"

#include "reports/record_fields.h"
#include "reports/run_record.h"

namespace lb {

using nlohmann::json;

namespace {

// Each of `keys` in `object` that is present and neither a number nor null.
void check_numbers(std::vector<std::string>& out, const json& object, const std::string& where,
                   std::initializer_list<const char*> keys) {
  if (!object.is_object()) return;
  for (const char* key : keys) {
    auto it = object.find(key);
    if (it == object.end() || it->is_number() || it->is_null()) continue;
    std::string value = it->dump();
    if (value.size() > 40) value = value.substr(0, 37) + "...";
    out.push_back(where + key + " is " + value + ", not a number: left out of the report");
  }
}

}  // namespace

std::string schema_problem(const json& run) {
  if (!run.is_object()) return "not a JSON object";
  if (!run.contains("schema")) return "no \"schema\" field";
  if (!run.at("schema").is_string() || run.at("schema").get<std::string>() != kRunSchema)
    return "schema " + run.at("schema").dump() + ", not '" + kRunSchema + "'";
  return "";
}

std::vector<std::string> record_warnings(const json& run) {
  std::vector<std::string> out;
  if (run.contains("error")) out.push_back("a partial record: the run ended with an error: " + text(run, "error"));
  else if (run.contains("complete") && !flag(run, "complete")) out.push_back("a partial record: the run did not complete");
  const json& layouts = array_at(run, "layouts");
  for (size_t i = 0; i < layouts.size(); ++i) {
    const std::string at = "layouts[" + std::to_string(i) + "].";
    check_numbers(out, layouts[i], at, {"layout_ms"});
    const json& layers = array_at(layouts[i], "layers");
    for (size_t j = 0; j < layers.size(); ++j)
      check_numbers(out, layers[j], at + "layers[" + std::to_string(j) + "].",
                    {"layer", "rel_l2", "max_abs", "cosine", "threshold"});
  }
  const json& rows = array_at(run, "rows");
  for (size_t i = 0; i < rows.size(); ++i)
    check_numbers(out, rows[i], "rows[" + std::to_string(i) + "].", {"bytes", "time_us", "algbw_GBps", "busbw_GBps"});
  const json& metrics = object_at(run, "metrics");
  check_numbers(out, metrics, "metrics.", {"prefill_ms", "prefill_tokens_per_s", "peak_memory_bytes"});
  const json& layers = array_at(metrics, "layers");
  for (size_t j = 0; j < layers.size(); ++j)
    check_numbers(out, layers[j], "metrics.layers[" + std::to_string(j) + "].", {"layer", "ms", "rms", "max_abs"});
  return out;
}

}  // namespace lb
