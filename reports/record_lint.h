#pragma once
// What a reader of a run record should be told before it renders or compares one: a record of
// another schema (or none) is not ours and is skipped, visibly; a field the reports plot that is
// present but not a number is named, rather than left out of a chart without a word.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lb {

// "" for a record of this build's schema, else why not ("no \"schema\" field", "schema 'x/2'").
std::string schema_problem(const nlohmann::json& run);

// The plotted numeric fields of a record that hold something else than a number or null (null is
// how a non-finite number is written), e.g. "layouts[0].layers[2].rel_l2 is \"abc\"", and a note
// when the record is partial (its "error", or "complete": false).
std::vector<std::string> record_warnings(const nlohmann::json& run);

}  // namespace lb
