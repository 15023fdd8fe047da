#pragma once
// One self-contained HTML page of how every metric moved over a suite's nights: a folder DIR of
// run folders (`layoutbench suite --out DIR`), each with its suite.json and run records. Per metric,
// a line chart (inline SVG) with a point per night, a line per series (layout, batch size, run),
// failing points red, missing nights as gaps, and the values in a table under it.
#include <string>

namespace lb {

// InputError naming DIR when it is not a folder or holds no run folder.
std::string render_history_html(const std::string& dir);

}  // namespace lb
