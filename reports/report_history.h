#pragma once
// One self-contained HTML page of how every metric moved over a suite's nights: a folder DIR of
// run folders (`layoutbench suite --out DIR`), each with its suite.json and run records. Per metric,
// a line chart (inline SVG) with a point per night, a line per series (layout, batch size, run),
// failing points red, missing nights as gaps, and the values in a table under it.
#include <string>
#include <vector>

namespace lb {

// The run folders in `dir` (those holding a suite.json), oldest first: their names start with the
// UTC date. Empty when there is none or `dir` is not a folder.
std::vector<std::string> suite_run_folders(const std::string& dir);

// InputError naming DIR when it is not a folder or holds no run folder.
std::string render_history_html(const std::string& dir);

}  // namespace lb
