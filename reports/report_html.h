#pragma once
// One HTML page from one or more run records, readable offline and attachable to an issue: the
// CSS and the charts (inline SVG drawn here) are in the page, and it loads nothing.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lb {

// Per run: a header (command, commit, device, date), then by subcommand
// - check: relative L2 per layer per layout (log y, thresholds dashed), the first divergence,
//   layout time and communication time per collective, a table per layout;
// - collectives: the nccl-tests table and busbw bars;
// - reference: the prefill summary and the per-layer table;
// - bench: per layout prefill time, tokens/s and share of the matmul peak, decode step per batch
//   size and share of the memory floor, time per collective, ratios to the baselines, bars;
// - gsm8k: per run accuracy with its interval, agreement with the reference, tokens/s, where the
//   layouts' texts first differ (histogram), the questions whose answer differs (folded);
// - anything else: a key/value table.
// Every text from a record is HTML-escaped.
std::string render_report_html(const std::vector<nlohmann::json>& runs);

// &, <, >, " and ' as entities: record text (commands, names) cannot open a tag or end an attribute.
std::string html_escape(const std::string& text);

}  // namespace lb
