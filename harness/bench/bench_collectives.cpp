#include "harness/bench/bench_collectives.h"

#include "harness/runtime/timing.h"

#include <iomanip>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace lb {

double total_ms(const std::vector<CollectiveRecord>& records) {
  double ms = 0;
  for (const auto& r : records) ms += r.ms;
  return ms;
}

std::vector<CollectiveRecord> median_records(const std::vector<std::vector<CollectiveRecord>>& repeats) {
  std::vector<CollectiveRecord> out = repeats.at(0);
  for (size_t i = 0; i < out.size(); ++i) {
    std::vector<double> ms;
    for (const auto& r : repeats) {
      if (r.size() != out.size() || r[i].op != out[i].op || r[i].group != out[i].group)
        throw std::logic_error("bench: the repeats made different collective calls");
      ms.push_back(r[i].ms);
    }
    out[i].ms = median(ms);
  }
  return out;
}

nlohmann::json changed_collectives(const nlohmann::json& layout, const nlohmann::json& baseline) {
  auto only_in = [](const nlohmann::json& a, const nlohmann::json& b) {
    nlohmann::json ops = nlohmann::json::array();
    double ms = 0;
    for (const auto& [key, v] : a.items())
      if (!b.contains(key)) ops.push_back(key), ms += v["ms"].get<double>();
    return std::make_pair(ops, ms);
  };
  const auto [new_ops, new_ms] = only_in(layout, baseline);
  const auto [old_ops, old_ms] = only_in(baseline, layout);
  nlohmann::json j = {{"layout_ops", new_ops}, {"layout_ms", new_ms}, {"baseline_ops", old_ops},
                      {"baseline_ms", old_ms}};
  if (new_ms > 0 && old_ms > 0) j["speedup"] = old_ms / new_ms;
  return j;
}

std::string describe_changed_collectives(const nlohmann::json& changed) {
  if (!changed.contains("speedup")) return "";
  std::ostringstream out;
  out << std::fixed << std::setprecision(3) << ", changed collectives " << changed["speedup"].get<double>() << "x ("
      << changed["layout_ms"].get<double>() << " against " << changed["baseline_ms"].get<double>() << " ms)";
  return out.str();
}

}  // namespace lb
