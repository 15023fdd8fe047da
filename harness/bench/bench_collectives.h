#pragma once
// What the benchmarks say about a run's collectives: totals, medians over repeats, and the calls a
// new layout changed against its baseline.
#include "harness/runtime/communicator.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lb {

double total_ms(const std::vector<CollectiveRecord>& records);

// Call by call, the median time over repeats of the same run (every repeat makes the same calls);
// std::logic_error when they do not.
std::vector<CollectiveRecord> median_records(const std::vector<std::vector<CollectiveRecord>>& repeats);

// The collectives ("op@group", keys of summarize_collectives) that only one of two layouts runs:
// the communication a new layout changed against its baseline, the time of each side, and their
// ratio ("speedup", baseline over layout) when both sides have some.
nlohmann::json changed_collectives(const nlohmann::json& layout, const nlohmann::json& baseline);

// ", changed collectives 1.26x (2.02 against 2.56 ms)" from changed_collectives' record, or "" when
// one side has none.
std::string describe_changed_collectives(const nlohmann::json& changed);

}  // namespace lb
