#include "reports/report_html.h"

#include "reports/record_fields.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>
#include <utility>

namespace lb {

using nlohmann::json;

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

// ---- reading records ------------------------------------------------------------------------
// Records come from several writers (the CLI, tests, logs parsed after a failed run), so every
// field may be absent or of another type: a report shows what is there and never throws.

std::string cell(const std::optional<double>& v, const char* spec) { return v ? format(*v, spec) : "-"; }

// [[0, 9], [40, 49]] -> "0-9, 40-49"; [0, 1] -> "0, 1".
std::string list_text(const json& v) {
  if (!v.is_array()) return scalar_text(v);
  std::string out;
  for (const json& e : v) {
    if (!out.empty()) out += ", ";
    if (e.is_array() && e.size() == 2) out += scalar_text(e[0]) + "-" + scalar_text(e[1]);
    else out += scalar_text(e);
  }
  return out;
}

std::string bytes_text(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  return format(bytes, bytes == std::floor(bytes) ? "%.0f" : "%.1f") + " " + units[u];
}

// "tp=2 dp=1 attn_cp=1 ..."
std::string parallel_text(const json& p) {
  if (!p.is_object()) return scalar_text(p);
  std::string out;
  for (const auto& [k, v] : p.items()) out += (out.empty() ? "" : " ") + k + "=" + scalar_text(v);
  return out;
}

// ---- HTML pieces (every argument is plain text and is escaped here) ---------------------------

using Rows = std::vector<std::vector<std::string>>;

std::string table(const std::vector<std::string>& header, const Rows& rows, const std::vector<bool>& fail = {}) {
  std::ostringstream out;
  out << "<table><thead><tr>";
  for (const auto& h : header) out << "<th>" << html_escape(h) << "</th>";
  out << "</tr></thead><tbody>\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    out << (i < fail.size() && fail[i] ? "<tr class=\"fail\">" : "<tr>");
    for (const auto& c : rows[i]) out << "<td>" << html_escape(c) << "</td>";
    out << "</tr>\n";
  }
  out << "</tbody></table>\n";
  return out.str();
}

std::string kv_table(const std::vector<std::pair<std::string, std::string>>& rows) {
  std::ostringstream out;
  out << "<table class=\"kv\"><tbody>\n";
  for (const auto& [k, v] : rows)
    out << "<tr><th>" << html_escape(k) << "</th><td>" << html_escape(v.empty() ? "(not recorded)" : v)
        << "</td></tr>\n";
  out << "</tbody></table>\n";
  return out.str();
}

std::string verdict_span(bool pass) {
  return pass ? "<span class=\"pass\">pass</span>" : "<span class=\"failtext\">FAIL</span>";
}

// ---- SVG charts -----------------------------------------------------------------------------

// Ten colors that stay apart on white; an eleventh layout reuses the first.
const char* const kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b",
                               "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79"};
const char* color(size_t i) { return kColors[i % (sizeof kColors / sizeof kColors[0])]; }

std::string px(double v) { return format(v, "%.1f"); }

struct Point {
  double x = 0, y = 0;
  bool fail = false;
  std::string tip;
};
struct Series {
  std::string name;
  std::vector<Point> points;
};
struct ReferenceLine {
  std::string name;
  std::vector<std::pair<double, double>> points;
  const char* dash;  // stroke-dasharray
};

// Values spread over decades (1e-7 in fp32, 1e-3 in bf16, 1 for a wrong layout), hence log y.
std::string log_chart(const std::vector<Series>& series, const std::vector<ReferenceLine>& lines,
                      const std::string& x_title, const std::string& y_title) {
  double x_min = INFINITY, x_max = -INFINITY, y_min = INFINITY, y_max = -INFINITY;
  auto extend = [&](double x, double y) {
    x_min = std::min(x_min, x), x_max = std::max(x_max, x);
    if (y > 0) y_min = std::min(y_min, y), y_max = std::max(y_max, y);
  };
  for (const auto& s : series)
    for (const auto& p : s.points) extend(p.x, p.y);
  for (const auto& l : lines)
    for (const auto& [x, y] : l.points) extend(x, y);
  if (x_min > x_max) return "<p>No values to plot.</p>\n";
  if (x_min == x_max) x_min -= 0.5, x_max += 0.5;
  if (y_min > y_max) y_min = 1e-8, y_max = 1;  // every value zero: any axis will do
  const int lo = int(std::floor(std::log10(y_min)));
  const int hi = std::max(lo + 1, int(std::ceil(std::log10(y_max))));

  const double left = 80, right = 230, top = 16, bottom = 50, width = 980;
  const size_t legend_rows = series.size() + lines.size();
  const double height = std::max(380.0, top + 20.0 * legend_rows + 20);
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  auto map_x = [&](double x) { return left + (x - x_min) / (x_max - x_min) * plot_w; };
  // A zero (bit-identical layer) sits on the bottom edge rather than at minus infinity.
  auto map_y = [&](double y) {
    const double d = y > 0 ? std::max(double(lo), std::log10(y)) : double(lo);
    return top + plot_h - (d - lo) / (hi - lo) * plot_h;
  };

  std::ostringstream out;
  out << "<svg class=\"chart\" viewBox=\"0 0 " << width << " " << height << "\" width=\"" << width << "\" height=\""
      << height << "\" role=\"img\" font-size=\"12\">\n";
  out << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << plot_w << "\" height=\"" << plot_h
      << "\" fill=\"#fff\" stroke=\"#999\"/>\n";
  const int y_step = (hi - lo) > 12 ? 2 : 1;
  for (int d = lo; d <= hi; d += y_step) {
    const double y = map_y(std::pow(10.0, d));
    out << "<line x1=\"" << left << "\" x2=\"" << left + plot_w << "\" y1=\"" << px(y) << "\" y2=\"" << px(y)
        << "\" stroke=\"#e4e4e4\"/>"
        << "<text x=\"" << left - 6 << "\" y=\"" << px(y + 4) << "\" text-anchor=\"end\">1e" << d << "</text>\n";
  }
  // At most 21 ticks whatever the range: an int step overflowed on a huge layer index, and a step
  // below the spacing of doubles near x_max never advanced.
  const double x_step = std::max(1.0, std::ceil((x_max - x_min) / 20));
  for (int tick = 0; tick <= 20; ++tick) {
    const double x = std::ceil(x_min) + tick * x_step;
    if (x > x_max) break;
    out << "<text x=\"" << px(map_x(x)) << "\" y=\"" << px(top + plot_h + 16) << "\" text-anchor=\"middle\">"
        << format(x, "%.0f") << "</text>\n";
  }
  out << "<text x=\"" << px(left + plot_w / 2) << "\" y=\"" << px(height - 10) << "\" text-anchor=\"middle\">"
      << html_escape(x_title) << "</text>\n"
      << "<text transform=\"translate(16 " << px(top + plot_h / 2) << ") rotate(-90)\" text-anchor=\"middle\">"
      << html_escape(y_title) << "</text>\n";

  auto polyline = [&](const std::vector<std::pair<double, double>>& pts, const char* stroke, const char* dash) {
    out << "<polyline fill=\"none\" stroke=\"" << stroke << "\" stroke-width=\"" << (dash ? 1.5 : 2) << "\"";
    if (dash) out << " stroke-dasharray=\"" << dash << "\"";
    out << " points=\"";
    for (const auto& [x, y] : pts) out << px(map_x(x)) << "," << px(map_y(y)) << " ";
    out << "\"/>\n";
  };
  for (const auto& l : lines) polyline(l.points, "#333", l.dash);
  for (size_t i = 0; i < series.size(); ++i) {
    std::vector<std::pair<double, double>> pts;
    for (const auto& p : series[i].points) pts.push_back({p.x, p.y});
    polyline(pts, color(i), nullptr);
    // Hovering a marker names it (an SVG <title>, no script); a failing layer gets a red ring.
    for (const auto& p : series[i].points)
      out << "<circle cx=\"" << px(map_x(p.x)) << "\" cy=\"" << px(map_y(p.y)) << "\" r=\"" << (p.fail ? 5 : 3)
          << "\" fill=\"" << (p.fail ? "#fff" : color(i)) << "\" stroke=\"" << (p.fail ? "#d00000" : color(i))
          << "\" stroke-width=\"2\"><title>" << html_escape(p.tip) << "</title></circle>\n";
  }

  double ly = top + 12;
  const double lx = left + plot_w + 16;
  auto legend = [&](const std::string& name, const char* stroke, const char* dash) {
    out << "<line x1=\"" << lx << "\" x2=\"" << lx + 26 << "\" y1=\"" << px(ly - 4) << "\" y2=\"" << px(ly - 4)
        << "\" stroke=\"" << stroke << "\" stroke-width=\"2\"";
    if (dash) out << " stroke-dasharray=\"" << dash << "\"";
    out << "/><text x=\"" << lx + 32 << "\" y=\"" << px(ly) << "\">" << html_escape(name) << "</text>\n";
    ly += 20;
  };
  for (size_t i = 0; i < series.size(); ++i) legend(series[i].name, color(i), nullptr);
  for (const auto& l : lines) legend(l.name, "#333", l.dash);
  out << "</svg>\n";
  return out.str();
}

struct Bar {
  std::string label;
  double value = 0;
  std::string note;  // after the value: "9 calls, 48 MiB"
  bool bad = false;  // a failing layout, a row with wrong elements: drawn red
};

// Horizontal bars on a linear scale from zero, one row each, value printed at the bar's end.
std::string bar_chart(const std::vector<Bar>& bars, const std::string& unit, const char* spec) {
  if (bars.empty()) return "<p>Nothing recorded.</p>\n";
  size_t longest = 0;
  double max_value = 0;
  for (const auto& b : bars) longest = std::max(longest, b.label.size()), max_value = std::max(max_value, b.value);
  const double width = 980, row = 20, top = 6;
  const double label_w = std::clamp(7.0 * longest + 12, 80.0, 420.0);
  const double bar_w = width - label_w - 260;
  const double height = top * 2 + row * bars.size();

  std::ostringstream out;
  out << "<svg class=\"chart\" viewBox=\"0 0 " << width << " " << height << "\" width=\"" << width << "\" height=\""
      << height << "\" role=\"img\" font-size=\"12\">\n";
  for (size_t i = 0; i < bars.size(); ++i) {
    const Bar& b = bars[i];
    const double y = top + row * i;
    const double w = max_value > 0 ? std::max(0.0, b.value) / max_value * bar_w : 0;
    const std::string value = format(b.value, spec) + " " + unit + (b.note.empty() ? "" : "  (" + b.note + ")");
    out << "<text x=\"" << px(label_w - 6) << "\" y=\"" << px(y + 14) << "\" text-anchor=\"end\">"
        << html_escape(b.label) << "</text>"
        << "<rect x=\"" << px(label_w) << "\" y=\"" << px(y + 3) << "\" width=\"" << px(w) << "\" height=\""
        << px(row - 6) << "\" fill=\"" << (b.bad ? "#d00000" : "#4a7fb5") << "\"><title>" << html_escape(b.label)
        << ": " << html_escape(value) << "</title></rect>"
        << "<text x=\"" << px(label_w + w + 6) << "\" y=\"" << px(y + 14) << "\">" << html_escape(value)
        << "</text>\n";
  }
  out << "</svg>\n";
  return out.str();
}

// A value per series in each group; nullopt where that series has none (no bar, "-" printed).
struct BarGroup {
  std::string label;
  std::vector<std::optional<double>> values;
};

// Horizontal bars in groups (a heading row, then a bar per series); a series keeps its color in
// every group. Each group has its own linear scale from zero: groups can differ tenfold (a decode
// step at batch 1 and at 64) and a shared scale would flatten the small group's bars to slivers;
// the values printed at the bars' ends keep the groups comparable.
std::string grouped_bar_chart(const std::vector<std::string>& series, const std::vector<BarGroup>& groups,
                              const std::string& unit, const char* spec) {
  if (series.empty() || groups.empty()) return "<p>Nothing recorded.</p>\n";
  size_t longest = 0;
  for (const auto& s : series) longest = std::max(longest, s.size());
  const double width = 980, row = 20, top = 6;
  const double label_w = std::clamp(7.0 * longest + 24, 80.0, 420.0);
  const double bar_w = width - label_w - 200;
  const double height = top * 2 + row * groups.size() * (series.size() + 1);

  std::ostringstream out;
  out << "<svg class=\"chart\" viewBox=\"0 0 " << width << " " << height << "\" width=\"" << width << "\" height=\""
      << height << "\" role=\"img\" font-size=\"12\">\n";
  double y = top;
  for (const auto& g : groups) {
    out << "<text x=\"4\" y=\"" << px(y + 14) << "\" font-weight=\"600\">" << html_escape(g.label) << "</text>\n";
    y += row;
    double max_value = 0;
    for (const auto& v : g.values)
      if (v) max_value = std::max(max_value, *v);
    for (size_t i = 0; i < series.size(); ++i, y += row) {
      const std::optional<double> v = i < g.values.size() ? g.values[i] : std::nullopt;
      const double w = v && max_value > 0 ? std::max(0.0, *v) / max_value * bar_w : 0;
      const std::string value = v ? format(*v, spec) + " " + unit : "-";
      out << "<text x=\"" << px(label_w - 6) << "\" y=\"" << px(y + 14) << "\" text-anchor=\"end\">"
          << html_escape(series[i]) << "</text>";
      if (v)
        out << "<rect x=\"" << px(label_w) << "\" y=\"" << px(y + 3) << "\" width=\"" << px(w) << "\" height=\""
            << px(row - 6) << "\" fill=\"" << color(i) << "\"><title>" << html_escape(g.label + ", " + series[i])
            << ": " << html_escape(value) << "</title></rect>";
      out << "<text x=\"" << px(label_w + w + 6) << "\" y=\"" << px(y + 14) << "\">" << html_escape(value)
          << "</text>\n";
    }
  }
  out << "</svg>\n";
  return out.str();
}

// ---- sections -------------------------------------------------------------------------------

std::string run_header(const json& run, size_t index) {
  std::ostringstream out;
  out << "<h2 id=\"run-" << index << "\">Run " << index << ": " << html_escape(text(run, "subcommand")) << "</h2>\n"
      << kv_table({{"command", text(run, "command")},
                   {"commit", text(run, "commit")},
                   {"device", text(run, "device")},
                   {"date", text(run, "date")},
                   {"schema", text(run, "schema")}});
  return out.str();
}

std::string first_divergence(const json& d) {
  std::vector<std::pair<std::string, std::string>> rows;
  for (const char* key : {"layout", "layer", "op", "ranks", "tokens"})
    if (d.contains(key)) rows.push_back({key, list_text(d.at(key))});
  for (const auto& [k, v] : d.items())  // anything else a writer added (rel_l2, threshold, ...)
    if (k != "layout" && k != "layer" && k != "op" && k != "ranks" && k != "tokens" && k != "worst_rows")
      rows.push_back({k, list_text(v)});  // the worst rows have their own table
  return "<div class=\"divergence\"><h3>First divergence</h3>\n" + kv_table(rows) + "</div>\n";
}

std::string layer_table(const json& layout) {
  Rows rows;
  std::vector<bool> fail;
  bool row_verdicts = false;  // bf16/f16 records judge every row too
  for (const json& l : array_at(layout, "layers")) row_verdicts = row_verdicts || l.contains("rows_past_bound");
  for (const json& l : array_at(layout, "layers")) {
    const bool pass = flag(l, "pass");
    const bool finite = !l.contains("finite") || flag(l, "finite");
    rows.push_back({text(l, "layer"), cell(number(l, "max_abs"), "%.4g"), cell(number(l, "rel_l2"), "%.3e"),
                    cell(number(l, "cosine"), "%.7f"), cell(number(l, "threshold"), "%.3e")});
    if (row_verdicts)
      for (std::string c : {text(l, "flips"), text(l, "rows_past_bound"), cell(number(l, "worst_row_ratio"), "%.3f")})
        rows.back().push_back(c);
    rows.back().push_back(pass ? "pass" : finite ? "FAIL" : "FAIL (not finite)");
    fail.push_back(!pass);
  }
  std::vector<std::string> header = {"layer", "max_abs", "rel_l2", "cosine", "threshold"};
  if (row_verdicts) header.insert(header.end(), {"flips", "rows past bound", "worst row / bound"});
  header.push_back("verdict");
  return table(header, rows, fail);
}

// Every layer output and capture point with rows past their bound: its worst rows, where they sit
// in the batch and on which ranks.
std::string rows_past_bound(const json& layout) {
  Rows rows;
  auto add = [&](const json& verdict, const std::string& where) {
    if (number(verdict, "rows_past_bound").value_or(0) <= 0) return;
    for (const json& w : array_at(verdict, "worst_rows")) {
      const bool infinite = w.is_object() && w.contains("ratio") && w.at("ratio").is_null();  // JSON has no inf
      if (!infinite && number(w, "ratio").value_or(0) <= 1) continue;
      rows.push_back({text(verdict, "layer"), where.empty() ? text(w, "op") : where, text(verdict, "rows_past_bound"),
                      "seq " + text(w, "sequence") + " pos " + text(w, "position"), text(w, "token"),
                      list_text(w.contains("ranks") ? w.at("ranks") : json()), cell(number(w, "rel_l2"), "%.3e"),
                      cell(number(w, "bound"), "%.3e"), cell(number(w, "ratio"), "%.2f")});
    }
  };
  for (const json& l : array_at(layout, "layers")) add(l, "");
  for (const json& o : array_at(layout, "ops")) add(o, text(o, "op"));
  if (rows.empty()) return "";
  return "<h4>Rows past their bound (worst first)</h4>\n" +
         table({"layer", "at", "rows past bound", "row", "token", "ranks", "rel_l2", "bound", "ratio"}, rows,
               std::vector<bool>(rows.size(), true));
}

std::string collective_bars(const json& layout) {
  std::vector<Bar> bars;
  for (const auto& [name, c] : object_at(layout, "collectives").items()) {
    const std::string note = text(c, "calls") + " calls, " + bytes_text(number(c, "bytes").value_or(0));
    bars.push_back({name, number(c, "ms").value_or(0), note, false});
  }
  if (bars.empty()) return "";
  return "<h4>Communication time per collective (rank 0, summed over layers)</h4>\n" + bar_chart(bars, "ms", "%.2f");
}

// A line per layout over the layers, with the run's thresholds (dashed) and, in bf16, the noise
// floor they were calibrated on (dotted).
std::string rel_l2_plot(const json& run) {
  const json& layouts = array_at(run, "layouts");
  std::vector<Series> series;
  for (const json& layout : layouts) {
    Series s{text(layout, "layout"), {}};
    for (const json& l : array_at(layout, "layers")) {
      const auto x = number(l, "layer"), y = number(l, "rel_l2");
      if (!x || !y) continue;  // a non-finite rel_l2 (null) has no place on the axis; the table shows it
      const bool fail = !flag(l, "pass");
      s.points.push_back({*x, *y, fail, s.name + ", layer " + format(*x, "%.0f") + ": rel_l2 " + format(*y, "%.3e") +
                                            (fail ? " FAIL" : "")});
    }
    series.push_back(std::move(s));
  }
  // One threshold per layer for every layout of a run; records that lack the top-level list
  // carry it on each layer.
  auto per_layer = [](const json& values) {
    std::vector<std::pair<double, double>> pts;
    for (size_t i = 0; i < values.size(); ++i)
      if (values[i].is_number()) pts.push_back({double(i), values[i].get<double>()});
    return pts;
  };
  std::vector<ReferenceLine> lines;
  auto thresholds = per_layer(array_at(run, "thresholds"));
  if (thresholds.empty() && !layouts.empty())
    for (const json& l : array_at(layouts[0], "layers"))
      if (number(l, "layer") && number(l, "threshold")) thresholds.push_back({*number(l, "layer"), *number(l, "threshold")});
  if (!thresholds.empty()) lines.push_back({"threshold", thresholds, "7 4"});
  auto noise = per_layer(array_at(run, "noise_floor"));
  if (!noise.empty()) lines.push_back({"noise floor", noise, "2 3"});
  return log_chart(series, lines, "layer", "relative L2 vs reference");
}

std::string check_section(const json& run, size_t index) {
  std::ostringstream out;
  const json& layouts = array_at(run, "layouts");
  const json& model = object_at(run, "model");
  std::string model_name = model.contains("name") ? text(model, "name") : text(run, "model_name");
  if (model_name.empty()) model_name = text(run, "model");
  const bool pass = flag(run, "pass");
  out << "<h3>Check " << verdict_span(pass) << "</h3>\n"
      << kv_table({{"model", model_name},
                   {"weights", text(run, "weights")},
                   {"dtype", text(run, "dtype")},
                   {"ranks", text(run, "ranks") + " (" + text(run, "backend") + ")"},
                   {"sequence lengths", text(run, "seq_lens")},
                   {"layouts", std::to_string(layouts.size())}});
  if (run.contains("first_divergence") && run.at("first_divergence").is_object())
    out << first_divergence(run.at("first_divergence"));

  out << "<h3>Relative L2 error per layer</h3>\n" << rel_l2_plot(run);

  std::vector<Bar> times;
  for (const json& layout : layouts)
    if (auto ms = number(layout, "layout_ms"))
      times.push_back({text(layout, "layout"), *ms, "", !flag(layout, "pass")});
  if (!times.empty()) out << "<h3>Layout time (all layers, rank 0)</h3>\n" << bar_chart(times, "ms", "%.2f");

  for (size_t i = 0; i < layouts.size(); ++i) {
    const json& layout = layouts[i];
    out << "<h3 id=\"run-" << index << "-layout-" << i + 1 << "\">Layout " << html_escape(text(layout, "layout"))
        << " " << verdict_span(flag(layout, "pass")) << "</h3>\n";
    std::vector<std::pair<std::string, std::string>> facts = {
        {"replaces", text(layout, "replaces").empty() ? "(a baseline)" : text(layout, "replaces")},
        {"split", text(layout, "split")},
        {"parallel", parallel_text(object_at(layout, "parallel"))},
        {"tokens per rank", text(layout, "rank_tokens")},
        {"layout ms", cell(number(layout, "layout_ms"), "%.2f")}};
    if (layout.contains("worst_row_ratio"))
      facts.push_back({"worst row / bound", cell(number(layout, "worst_row_ratio"), "%.3f")});
    out << kv_table(facts);
    if (layout.contains("first_divergence") && layout.at("first_divergence").is_object())
      out << first_divergence(layout.at("first_divergence"));
    out << layer_table(layout) << rows_past_bound(layout) << collective_bars(layout);
  }
  return out.str();
}

std::string collectives_section(const json& run) {
  std::ostringstream out;
  out << "<h3>Collectives</h3>\n"
      << kv_table({{"backend", text(run, "backend")},
                   {"ranks", text(run, "ranks")},
                   {"group", text(run, "group")},
                   {"iterations", "warmup " + text(run, "warmup") + ", >= " + text(run, "iters") + " per batch, " +
                                      text(run, "repeats") + " batches (median)"},
                   {"wrong elements", text(run, "wrong_total")}});
  const json& rows = array_at(run, "rows");
  bool direct = false;
  for (const json& r : rows) direct = direct || number(r, "nccl_direct_time_us").has_value();
  std::vector<std::string> header = {"op",    "algo",      "split",        "group",        "size (B)",
                                     "count", "type",      "time (us)",    "algbw (GB/s)", "busbw (GB/s)",
                                     "#wrong"};
  if (direct) header.insert(header.end(), {"nccl time (us)", "nccl busbw (GB/s)", "busbw / nccl"});
  Rows cells;
  std::vector<bool> fail;
  std::vector<Bar> bars;
  for (const json& r : rows) {
    const bool wrong = number(r, "wrong").value_or(0) != 0;
    std::vector<std::string> c = {text(r, "op"),
                                  text(r, "algo"),
                                  text(r, "split"),
                                  text(r, "group"),
                                  text(r, "bytes"),
                                  text(r, "count"),
                                  text(r, "type"),
                                  cell(number(r, "time_us"), "%.1f"),
                                  cell(number(r, "algbw_GBps"), "%.2f"),
                                  cell(number(r, "busbw_GBps"), "%.2f"),
                                  text(r, "wrong")};
    if (direct)
      c.insert(c.end(), {cell(number(r, "nccl_direct_time_us"), "%.1f"), cell(number(r, "nccl_direct_busbw_GBps"), "%.2f"),
                         cell(number(r, "busbw_ratio_to_direct"), "%.3f")});
    cells.push_back(std::move(c));
    fail.push_back(wrong);
    std::string label = text(r, "op");
    if (!text(r, "algo").empty()) label += " " + text(r, "algo");
    label += " " + text(r, "split") + " " + bytes_text(number(r, "bytes").value_or(0));
    bars.push_back({label, number(r, "busbw_GBps").value_or(0), wrong ? "#wrong " + text(r, "wrong") : "", wrong});
  }
  out << table(header, cells, fail) << "<h3>Bus bandwidth</h3>\n" << bar_chart(bars, "GB/s", "%.1f");
  return out.str();
}

std::string reference_section(const json& run) {
  const json& config = object_at(run, "config");
  const json& metrics = object_at(run, "metrics");
  auto gib = [&](const char* key) { return cell(number(metrics, key).value_or(NAN) / double(1 << 30), "%.2f GiB"); };
  std::ostringstream out;
  out << "<h3>Reference</h3>\n"
      << kv_table({{"model", text(config, "name")},
                   {"layers", text(config, "num_layers")},
                   {"weights", text(run, "weights")},
                   {"dtype", text(run, "dtype")},
                   {"tokens", text(run, "tokens")},
                   {"prefill", cell(number(metrics, "prefill_ms"), "%.2f ms")},
                   {"prefill tokens/s", cell(number(metrics, "prefill_tokens_per_s"), "%.0f")},
                   {"peak memory", number(metrics, "peak_memory_bytes") ? gib("peak_memory_bytes") : ""},
                   {"weights in memory", number(metrics, "weight_bytes") ? gib("weight_bytes") : ""}});
  Rows rows;
  for (const json& l : array_at(metrics, "layers"))
    rows.push_back({text(l, "layer"), text(l, "kind"), cell(number(l, "ms"), "%.3f"), cell(number(l, "rms"), "%.5f"),
                    cell(number(l, "max_abs"), "%.4g")});
  if (!rows.empty()) out << table({"layer", "kind", "ms", "rms", "max_abs"}, rows);
  return out.str();
}

// ---- bench ----------------------------------------------------------------------------------

std::string percent(const std::optional<double>& share) { return share ? format(100 * *share, "%.0f%%") : "-"; }

// The time of every prefill collective of a layout summed; "-" for records that kept none, while
// a 1-rank layout's empty object is a real zero.
std::string collectives_total(const json& layout) {
  if (!layout.is_object() || !layout.contains("prefill_collectives")) return "-";
  double ms = 0;
  for (const auto& item : object_at(layout, "prefill_collectives").items()) ms += number(item.value(), "ms").value_or(0);
  return format(ms, "%.3f");
}

std::string bench_facts(const json& run) {
  const json& model = object_at(run, "model");
  return "<h3>Bench</h3>\n" +
         kv_table({{"model", model.contains("name") ? text(model, "name") : text(run, "model")},
                   {"weights", text(run, "weights")},
                   {"dtype", text(run, "dtype")},
                   {"kernels", text(run, "kernels")},
                   {"ranks", text(run, "ranks") + (run.contains("backend") ? " (" + text(run, "backend") + ")" : "")},
                   {"sequence lengths", run.contains("seq_lens") ? list_text(run.at("seq_lens")) : ""},
                   {"measured matmul peak", cell(number(run, "peak_matmul_tflops"), "%.0f TFLOP/s")},
                   {"measured copy peak", cell(number(run, "peak_copy_gbps"), "%.0f GB/s")},
                   {"decode context", text(run, "decode_context")},
                   {"CUDA graphs", text(run, "cuda_graphs")}});
}

std::string bench_prefill(const json& run) {
  Rows rows;
  std::vector<Bar> bars;
  for (const json& l : array_at(run, "layouts")) {
    const std::string name = text(l, "layout");
    const json& split = object_at(l, "prefill_time_split");  // rank 0's time, where the record has it
    rows.push_back({name, text(l, "replaces"), cell(number(l, "prefill_ms"), "%.2f"),
                    cell(number(l, "prefill_tokens_per_s"), "%.0f"), cell(number(l, "prefill_tflops_per_rank"), "%.1f"),
                    percent(number(l, "prefill_share_of_matmul_peak")), collectives_total(l),
                    percent(number(split, "compute_share")), percent(number(split, "communication_share")),
                    percent(number(split, "waiting_share"))});
    bars.push_back({name, number(l, "prefill_tokens_per_s").value_or(0), "", false});
  }
  if (rows.empty()) return "<p>No layouts recorded.</p>\n";
  return "<h3>Prefill</h3>\n" +
         table({"layout", "replaces", "ms", "tokens/s", "TFLOP/s per rank", "of the measured peak",
                "collectives ms (all)", "compute", "communication", "waiting"},
               rows) +
         "<h3>Prefill tokens/s</h3>\n" + bar_chart(bars, "tokens/s", "%.0f");
}

// A row per layout and batch size; the chart groups the layouts' steps by batch size, so that
// each group answers "which layout decodes fastest at this batch".
std::string bench_decode(const json& run) {
  Rows rows;
  std::vector<std::string> names;
  std::vector<std::string> batches;  // in first-seen order
  std::map<std::pair<std::string, size_t>, double> step;  // (batch, layout index) -> step ms
  const json& layouts = array_at(run, "layouts");
  for (size_t i = 0; i < layouts.size(); ++i) {
    names.push_back(text(layouts[i], "layout"));
    for (const json& d : array_at(layouts[i], "decode")) {
      const std::string batch = text(d, "batch");
      rows.push_back({names.back(), batch, cell(number(d, "step_ms"), "%.3f"), cell(number(d, "tokens_per_s"), "%.0f"),
                      percent(number(d, "share_of_memory_floor"))});
      if (std::find(batches.begin(), batches.end(), batch) == batches.end()) batches.push_back(batch);
      if (auto ms = number(d, "step_ms")) step[{batch, i}] = *ms;
    }
  }
  if (rows.empty()) return "";  // prefill-only runs (no --decode-batch)
  std::vector<BarGroup> groups;
  for (const auto& batch : batches) {
    BarGroup g{"batch " + batch, {}};
    for (size_t i = 0; i < names.size(); ++i) {
      const auto it = step.find({batch, i});
      g.values.push_back(it == step.end() ? std::nullopt : std::optional<double>(it->second));
    }
    groups.push_back(std::move(g));
  }
  return "<h3>Decode steps</h3>\n" +
         table({"layout", "batch", "step ms", "tokens/s", "of the memory floor"}, rows) +
         "<h3>Decode step latency per batch size (each batch on its own scale)</h3>\n" +
         grouped_bar_chart(names, groups, "ms/step", "%.3f");
}

std::string bench_collectives(const json& run) {
  Rows rows;
  for (const json& l : array_at(run, "layouts"))
    for (const auto& item : object_at(l, "prefill_collectives").items()) {
      const json& v = item.value();
      rows.push_back({text(l, "layout"), item.key(), text(v, "calls"), cell(number(v, "ms"), "%.3f"),
                      number(v, "bytes") ? bytes_text(*number(v, "bytes")) : "-"});
    }
  if (rows.empty()) return "";
  return "<h3>Prefill collectives</h3>\n" + table({"layout", "collective", "calls", "ms", "bytes"}, rows);
}

// "all_reduce@attn_tp, all_reduce@moe (3.301 ms)"; "(none)" where the layout dropped them all.
std::string ops_text(const json& changed, const char* ops, const char* ms) {
  std::string out = list_text(array_at(changed, ops));
  if (out.empty()) return "(none)";
  if (auto v = number(changed, ms)) out += " (" + format(*v, "%.3f") + " ms)";
  return out;
}

// "b=1 0.939x, b=8 0.928x, b=64 0.932x": by batch size, not by the keys' alphabetical order.
std::string decode_ratios(const json& ratio) {
  std::vector<std::pair<double, std::string>> by_batch;
  if (ratio.is_object())
    for (const auto& item : ratio.items()) {
      const std::string& key = item.key();
      if (key.rfind("decode_speedup_b", 0) != 0) continue;
      const std::string batch = key.substr(16);
      by_batch.push_back(
          {std::strtod(batch.c_str(), nullptr), "b=" + batch + " " + cell(number(ratio, key.c_str()), "%.3fx")});
    }
  std::sort(by_batch.begin(), by_batch.end());
  std::string out;
  for (const auto& [batch, part] : by_batch) out += (out.empty() ? "" : ", ") + part;
  return out.empty() ? "-" : out;
}

std::string bench_ratios(const json& run) {
  Rows rows;
  for (const json& r : array_at(run, "ratios")) {
    const json& changed = object_at(r, "changed_collectives");
    const bool has_changed = !changed.empty();
    rows.push_back({text(r, "layout"), text(r, "baseline"), cell(number(r, "prefill_speedup"), "%.3fx"),
                    decode_ratios(r),
                    has_changed ? ops_text(changed, "baseline_ops", "baseline_ms") : "-",
                    has_changed ? ops_text(changed, "layout_ops", "layout_ms") : "-",
                    cell(number(changed, "speedup"), "%.3fx")});
  }
  if (rows.empty()) return "";
  return "<h3>New layouts against their baselines (above 1: faster)</h3>\n" +
         table({"layout", "baseline", "prefill", "decode", "baseline's collectives", "layout's collectives",
                "collectives"},
               rows);
}

// Per layout: prefill time, rate, TFLOP/s and share of the measured matmul peak, collective time;
// decode step per batch size with its share of the memory floor; time and bytes per collective;
// each new layout's ratios to its baseline; bars of the prefill rates and the decode steps.
std::string bench_section(const json& run) {
  return bench_facts(run) + bench_prefill(run) + bench_decode(run) + bench_collectives(run) + bench_ratios(run);
}

// ---- gsm8k ----------------------------------------------------------------------------------

// An extracted answer; null when the text held none.
std::string answer_text(const json& question) {
  if (!question.is_object() || !question.contains("answer") || question.at("answer").is_null()) return "(none)";
  return text(question, "answer");
}

// The reference generation run: named so by the CLI, else the first run that is not compared to one.
const json* reference_run(const json& runs) {
  for (const json& r : runs)
    if (text(r, "name") == "reference") return &r;
  for (const json& r : runs)
    if (r.is_object() && !r.contains("agreement")) return &r;
  return nullptr;
}

std::string gsm8k_runs_table(const json& runs, bool meaningful) {
  Rows rows;
  for (const json& r : runs) {
    const json& a = object_at(r, "accuracy");
    const json& g = object_at(r, "agreement");
    std::string accuracy = cell(number(a, "value"), "%.3f");
    if (!meaningful && number(a, "value")) accuracy += " (not meaningful: random weights)";
    const auto low = number(a, "low95"), high = number(a, "high95");
    rows.push_back({text(r, "name"), accuracy, low && high ? format(*low, "%.3f") + "-" + format(*high, "%.3f") : "-",
                    a.contains("correct") ? text(a, "correct") + "/" + text(a, "total") : "-",
                    g.empty() ? "-" : text(g, "identical") + "/" + text(g, "total"),
                    cell(number(r, "prefill_tokens_per_s"), "%.0f"), cell(number(r, "decode_tokens_per_s"), "%.0f")});
  }
  return table({"run", "accuracy", "95% interval", "correct", "identical to the reference", "prefill tokens/s",
                "decode tokens/s"},
               rows);
}

// first_difference is the 0-based index of the first generated token where the layout's tokens
// leave the reference's (the shorter length when one is a prefix of the other), null when the
// generations are identical. Bins are a power of two wide, at most 16 of them, and empty bins are
// drawn too so that the shape is a histogram.
std::string first_difference_histogram(const json& layout_run) {
  std::vector<int64_t> at;
  int identical = 0;
  bool recorded = false;
  for (const json& q : array_at(layout_run, "questions")) {
    if (!q.is_object() || !q.contains("first_difference")) continue;
    recorded = true;
    const auto d = number(q, "first_difference");
    if (q.at("first_difference").is_null() || (d && *d < 0)) ++identical;
    else if (d) at.push_back(int64_t(std::min(*d, 1e15)));  // a corrupt huge value must not overflow the bins
  }
  if (!recorded) return "<p>No first differences recorded.</p>\n";
  int64_t width = 1;
  const int64_t last = at.empty() ? 0 : *std::max_element(at.begin(), at.end());
  while (last / width >= 16) width *= 2;
  std::vector<int> bins(size_t(last / width) + 1, 0);
  for (int64_t a : at) ++bins[size_t(a / width)];
  std::vector<Bar> bars = {{"identical", double(identical), "", false}};
  if (!at.empty())
    for (size_t b = 0; b < bins.size(); ++b) {
      const int64_t lo = int64_t(b) * width;
      bars.push_back({width == 1 ? "token " + std::to_string(lo)
                                 : "tokens " + std::to_string(lo) + "-" + std::to_string(lo + width - 1),
                      double(bins[b]), "", false});
    }
  return bar_chart(bars, "questions", "%.0f");
}

// The questions whose extracted answer differs from the reference run's, matched by dataset line
// (by position for records without lines), folded: a 200-question run lists many.
std::string differing_answers(const json& layout_run, const json& reference) {
  const json& ref_questions = array_at(reference, "questions");
  std::map<std::string, const json*> by_line;
  for (const json& q : ref_questions)
    if (q.is_object() && q.contains("line")) by_line[text(q, "line")] = &q;
  const json& questions = array_at(layout_run, "questions");
  Rows rows;
  for (size_t i = 0; i < questions.size(); ++i) {
    const json& q = questions[i];
    const json* ref = nullptr;
    if (q.is_object() && q.contains("line")) {
      const auto it = by_line.find(text(q, "line"));
      if (it != by_line.end()) ref = it->second;
    } else if (i < ref_questions.size()) {
      ref = &ref_questions[i];
    }
    if (!ref || answer_text(q) == answer_text(*ref)) continue;
    rows.push_back({text(q, "line"), text(q, "reference_answer"), answer_text(*ref), answer_text(q),
                    cell(number(q, "first_difference"), "%.0f"), text(*ref, "text"), text(q, "text")});
  }
  std::ostringstream out;
  out << "<details><summary>" << rows.size()
      << " question(s) whose answer differs from the reference run's</summary>\n";
  if (!rows.empty())
    out << table({"line", "dataset answer", "reference run's answer", "layout's answer", "first differing token",
                  "reference run's text", "layout's text"},
                 rows);
  out << "</details>\n";
  return out.str();
}

// Per generation run (the reference, then each layout): accuracy with its 95% interval, agreement
// with the reference, tokens/s; per layout, a histogram of where its text first leaves the
// reference's and the questions whose answer differs, both texts, folded.
std::string gsm8k_section(const json& run) {
  // Random weights answer nothing right; the agreement with the reference is what such a run checks.
  const bool meaningful = !run.contains("accuracy_meaningful") || flag(run, "accuracy_meaningful");
  const json& model = object_at(run, "model");
  std::ostringstream out;
  out << "<h3>GSM8K</h3>\n"
      << kv_table({{"model", model.contains("name") ? text(model, "name") : text(run, "model")},
                   {"weights", text(run, "weights")},
                   {"dtype", text(run, "dtype")},
                   {"ranks", text(run, "ranks")},
                   {"data", text(run, "data")},
                   {"shots", text(run, "shots")},
                   {"max new tokens", text(run, "max_new_tokens")},
                   {"accuracy", meaningful ? "meaningful" : "not meaningful: random weights (agreement with the "
                                                            "reference is what this run checks)"}});
  const json& runs = array_at(run, "runs");
  if (runs.empty()) return out.str() + "<p>No runs recorded.</p>\n";
  out << gsm8k_runs_table(runs, meaningful);
  const json* reference = reference_run(runs);
  for (const json& r : runs) {
    if (&r == reference) continue;
    out << "<h3>" << html_escape(text(r, "name")) << ": first generated token that differs from the reference</h3>\n"
        << first_difference_histogram(r);
    if (reference) out << differing_answers(r, *reference);
  }
  return out.str();
}

// Any JSON as HTML: objects as key/value tables, arrays of objects as tables with a column per key,
// other arrays as lists, scalars as text.
std::string json_html(const json& v) {
  std::ostringstream out;
  if (v.is_object()) {
    out << "<table class=\"kv\"><tbody>\n";
    for (const auto& [k, e] : v.items()) out << "<tr><th>" << html_escape(k) << "</th><td>" << json_html(e) << "</td></tr>\n";
    out << "</tbody></table>\n";
  } else if (v.is_array() && !v.empty() && std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_object(); })) {
    std::vector<std::string> columns;  // every key of any element, in first-seen order
    for (const json& e : v)
      for (const auto& item : e.items())
        if (std::find(columns.begin(), columns.end(), item.key()) == columns.end()) columns.push_back(item.key());
    out << "<table><thead><tr>";
    for (const auto& c : columns) out << "<th>" << html_escape(c) << "</th>";
    out << "</tr></thead><tbody>\n";
    for (const json& e : v) {
      out << "<tr>";
      for (const auto& c : columns) out << "<td>" << (e.contains(c) ? json_html(e.at(c)) : "") << "</td>";
      out << "</tr>\n";
    }
    out << "</tbody></table>\n";
  } else {
    out << html_escape(v.is_array() ? "[" + list_text(v) + "]" : scalar_text(v));
  }
  return out.str();
}

// A subcommand this page has no layout for (tests' records, newer writers): every field as is.
std::string generic_section(const json& run) {
  json fields = run;
  for (const char* header : {"schema", "subcommand", "command", "commit", "device", "date"}) fields.erase(header);
  return "<h3>Fields</h3>\n" + json_html(fields);
}

const char* const kStyle = R"(
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 24px; } h2 { border-top: 2px solid #444; padding-top: 12px; margin-top: 36px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
thead th { background: #f0f0f0; }
table.kv th { background: #f7f7f7; font-weight: 600; white-space: nowrap; }
table.kv td { font-family: ui-monospace, monospace; }
table.kv > tbody > tr > td { overflow-wrap: anywhere; }
table table td { overflow-wrap: normal; }
tr.fail td { background: #ffd9d9; font-weight: 600; }
.pass { color: #177a17; } .failtext { color: #c00000; }
.divergence { border: 2px solid #c00000; padding: 4px 12px; margin: 12px 0; background: #fff5f5; }
svg.chart { display: block; margin: 8px 0 16px; }
)";

}  // namespace

std::string render_report_html(const std::vector<nlohmann::json>& runs) {
  std::ostringstream out;
  out << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      << "<title>layoutbench report</title>\n<style>" << kStyle << "</style>\n</head>\n<body>\n"
      << "<h1>layoutbench report</h1>\n<p>" << runs.size() << " run record" << (runs.size() == 1 ? "" : "s")
      << "</p>\n";
  if (runs.size() > 1) {
    out << "<ul>\n";
    for (size_t i = 0; i < runs.size(); ++i)
      out << "<li><a href=\"#run-" << i + 1 << "\">Run " << i + 1 << ": " << html_escape(text(runs[i], "subcommand"))
          << " " << html_escape(text(runs[i], "command")) << "</a></li>\n";
    out << "</ul>\n";
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    const json& run = runs[i];
    out << "<section class=\"run\">\n" << run_header(run, i + 1);
    const std::string sub = text(run, "subcommand");
    if (!run.is_object()) out << "<p>Not a run record: " << html_escape(run.dump()) << "</p>\n";
    else if (sub == "check") out << check_section(run, i + 1);
    else if (sub == "collectives") out << collectives_section(run);
    else if (sub == "reference") out << reference_section(run);
    else if (sub == "bench") out << bench_section(run);
    else if (sub == "gsm8k") out << gsm8k_section(run);
    else out << generic_section(run);
    out << "</section>\n";
  }
  out << "</body>\n</html>\n";
  return out.str();
}

}  // namespace lb
