#include "reports/report_history.h"

#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"
#include "reports/record_fields.h"
#include "reports/report_html.h"
#include "reports/run_record.h"

#include <dirent.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <sstream>

namespace lb {

using nlohmann::json;

namespace {

struct Night {
  std::string folder, label;  // label: "date commit"
  json index;
  std::map<std::string, json> records;  // by run name; absent when the run failed or wrote none
  // By run name: "ok", or why not ("exit 1", "no record"); a run the suite did not list is absent.
  std::map<std::string, std::string> outcome;
  bool failed(const std::string& run) const {
    const auto it = outcome.find(run);
    return it != outcome.end() && it->second != "ok";
  }
};

struct Value {
  double v = 0;
  bool fail = false;
};

// series -> night index -> value
using SeriesMap = std::map<std::string, std::map<size_t, Value>>;
struct Metric {
  std::string run;  // whose failures explain the gaps in the table
  double limit = 0;  // > 0: a pass/fail line drawn at this value
  bool log_axis = false;
  SeriesMap series;
};
using Metrics = std::map<std::string, Metric>;

std::vector<Night> read_nights(const std::string& dir) {
  if (!is_directory(dir)) throw InputError("report --history " + dir + ": not a folder");
  const std::vector<std::string> names = suite_run_folders(dir);
  if (names.empty())
    throw InputError("report --history " + dir + ": no run folder (a folder holding suite.json, as `suite --out` writes)");
  std::vector<Night> nights;
  for (const std::string& name : names) {
    Night n;
    n.folder = name;
    try {
      n.index = read_run_file(dir + "/" + name + "/suite.json");
    } catch (const InputError&) {
      // A suite.json cut short (the machine died mid-night): the night keeps its column, every
      // chart has a gap there, rather than vanishing from the page.
    }
    // The folder's name is "<date>_<short commit>[-dirty]": the label, as `suite` wrote it (a
    // dirty tree stays visible); the index's full commit only when the name has none.
    const size_t underscore = name.find('_');
    const std::string commit =
        underscore != std::string::npos ? name.substr(underscore + 1) : text(n.index, "commit").substr(0, 10);
    n.label = name.substr(0, 15) + " " + commit;
    for (const json& r : array_at(n.index, "runs")) {
      const std::string run = text(r, "name");
      const std::string path = dir + "/" + name + "/" + text(r, "record");
      // A check that finds a failing layout exits 1 and still writes its whole record: its
      // points are drawn (red), so the record is read whatever the exit code.
      if (is_regular_file(path)) try {
          n.records[run] = read_run_file(path);
        } catch (const InputError&) {
        }
      const std::optional<double> exit_code = number(r, "exit_code");
      if (exit_code && *exit_code != 0) n.outcome[run] = "exit " + format(*exit_code, "%.0f");
      else if (!exit_code) n.outcome[run] = "no exit code";
      else if (!n.records.count(run)) n.outcome[run] = "no record";
      else n.outcome[run] = "ok";
    }
    nights.push_back(std::move(n));
  }
  return nights;
}

void add(Metrics& m, const std::string& run, const std::string& metric, const std::string& series, size_t night,
         std::optional<double> v, bool fail = false) {
  if (!v || !std::isfinite(*v)) return;
  Metric& entry = m[run + ": " + metric];
  entry.run = run;
  entry.series[series][night] = {*v, fail};
}

// What each record kind contributes, per night.
void collect(Metrics& m, const std::string& run, const json& r, size_t night) {
  const std::string sub = text(r, "subcommand");
  if (sub == "check") {
    for (const json& l : array_at(r, "layouts")) {
      // A layout that measured no layer (it threw, ran out of memory) has no worst ratio: a gap,
      // not a 0 that would read as a perfect layout.
      std::optional<double> worst;
      for (const json& layer : array_at(l, "layers")) {
        const auto e = number(layer, "rel_l2"), t = number(layer, "threshold");
        if (e && t && *t > 0) worst = std::max(worst.value_or(0), *e / *t);
      }
      add(m, run, "worst rel_l2 / threshold", text(l, "layout"), night, worst, !flag(l, "pass"));
      if (const auto it = m.find(run + ": worst rel_l2 / threshold"); it != m.end())
        it->second.limit = 1, it->second.log_axis = true;
    }
  } else if (sub == "bench") {
    for (const json& l : array_at(r, "layouts")) {
      add(m, run, "prefill tokens/s", text(l, "layout"), night, number(l, "prefill_tokens_per_s"));
      for (const json& d : array_at(l, "decode"))
        add(m, run, "decode step ms", text(l, "layout") + " b=" + text(d, "batch"), night, number(d, "step_ms"));
    }
  } else if (sub == "collectives") {
    std::map<std::string, std::pair<double, double>> largest;  // series -> (bytes, busbw)
    for (const json& row : array_at(r, "rows")) {
      const std::string series = text(row, "op") + (text(row, "algo").empty() ? "" : " " + text(row, "algo")) + " " +
                                 text(row, "split");
      const double bytes = number(row, "bytes").value_or(0);
      if (bytes >= largest[series].first) largest[series] = {bytes, number(row, "busbw_GBps").value_or(NAN)};
    }
    for (const auto& [series, b] : largest) add(m, run, "busbw GB/s at the largest size", series, night, b.second);
  } else if (sub == "gsm8k") {
    for (const json& g : array_at(r, "runs")) {
      add(m, run, "accuracy", text(g, "name"), night, number(object_at(g, "accuracy"), "value"));
      const auto same = number(object_at(g, "agreement"), "identical"), total = number(object_at(g, "agreement"), "total");
      if (same && total && *total > 0) add(m, run, "agreement with the reference", text(g, "name"), night, *same / *total);
    }
  } else if (sub == "reference") {
    add(m, run, "prefill tokens/s", "reference", night, number(object_at(r, "metrics"), "prefill_tokens_per_s"));
  }
}

const char* const kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b",
                               "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79"};

std::string num(double v) { return format(v, std::fabs(v) >= 100 ? "%.0f" : "%.3g"); }

// A point per night at its index; a night without a value breaks the line there.
std::string line_chart(const Metric& metric, const std::vector<Night>& nights) {
  const SeriesMap& series = metric.series;
  const double w = 800, h = 240, left = 70, right = 70, top = 15, bottom = 60;  // room for the end labels
  // A log axis where values spread over decades (errors: 1e-3 of the threshold for a good layout,
  // 1e4 for a wrong one); a zero sits on the bottom edge, a decade under the smallest value.
  double smallest = metric.limit > 0 ? metric.limit : INFINITY;
  for (const auto& [name, points] : series)
    for (const auto& [i, v] : points)
      if (v.v > 0) smallest = std::min(smallest, v.v);
  const bool log_axis = metric.log_axis && std::isfinite(smallest);
  auto axis = [&](double v) { return log_axis ? std::log10(std::max(v, smallest / 10)) : v; };
  auto value_at = [&](double a) { return log_axis ? std::pow(10.0, a) : a; };
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& [name, points] : series)
    for (const auto& [i, v] : points) lo = std::min(lo, axis(v.v)), hi = std::max(hi, axis(v.v));
  if (!(lo <= hi)) return "";
  // The pass/fail line stays in view, so a point's distance to it reads at a glance.
  if (metric.limit > 0) lo = std::min(lo, axis(metric.limit)), hi = std::max(hi, axis(metric.limit));
  if (log_axis) {
    lo = std::floor(lo), hi = std::max(lo + 1, std::ceil(hi));  // whole decades
  } else {
    if (lo == hi) lo -= std::max(1e-12, std::fabs(lo) * 0.1), hi += std::max(1e-12, std::fabs(hi) * 0.1);
    if (lo > 0 && lo < hi * 0.5) lo = 0;  // a wide range of positive values reads best from zero
  }
  const size_t n = nights.size();
  auto x = [&](size_t i) { return left + (n > 1 ? double(i) * (w - left - right) / double(n - 1) : (w - left - right) / 2); };
  auto y_at = [&](double a) { return top + (hi - a) / (hi - lo) * (h - top - bottom); };
  auto y = [&](double v) { return y_at(axis(v)); };
  std::ostringstream s;
  s << "<svg class=\"chart\" width=\"" << w << "\" height=\"" << h << "\" viewBox=\"0 0 " << w << " " << h
    << "\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"10\">\n";
  // Five lines on a linear axis; on a log one a line per decade, or per few when they are many.
  const int steps = log_axis ? int(hi - lo) : 4;
  const int stride = log_axis ? std::max(1, (steps + 5) / 6) : 1;
  for (int t = 0; t <= steps; t += stride) {
    const double a = lo + (hi - lo) * t / steps;
    s << "<line x1=\"" << left << "\" x2=\"" << w - right << "\" y1=\"" << y_at(a) << "\" y2=\"" << y_at(a)
      << "\" stroke=\"#ddd\"/><text x=\"" << left - 4 << "\" y=\"" << y_at(a) + 3 << "\" text-anchor=\"end\">"
      << num(value_at(a)) << "</text>\n";
  }
  for (size_t i = 0; i < n; ++i)
    s << "<text x=\"" << x(i) << "\" y=\"" << h - bottom + 14 << "\" text-anchor=\"middle\">"
      << html_escape(nights[i].label.substr(0, 15)) << "</text><text x=\"" << x(i) << "\" y=\"" << h - bottom + 26
      << "\" text-anchor=\"middle\">" << html_escape(nights[i].label.size() > 16 ? nights[i].label.substr(16) : "")
      << "</text>\n";
  if (metric.limit > 0)
    s << "<line class=\"limit\" x1=\"" << left << "\" x2=\"" << w - right << "\" y1=\"" << y(metric.limit) << "\" y2=\""
      << y(metric.limit) << "\" stroke=\"#d62728\" stroke-dasharray=\"5 3\"/><text x=\"" << w - right + 4 << "\" y=\""
      << y(metric.limit) + 3 << "\" fill=\"#d62728\">fail above</text>\n";
  size_t c = 0;
  for (const auto& [name, points] : series) {
    const char* color = kColors[c++ % 10];
    std::string path;
    size_t last = size_t(-1);
    for (const auto& [i, v] : points) {
      path += (last != size_t(-1) && i == last + 1 ? " L" : " M") + format(x(i), "%.1f") + " " + format(y(v.v), "%.1f");
      last = i;
    }
    s << "<path d=\"" << path << "\" fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.5\"/>\n";
    for (const auto& [i, v] : points)
      s << "<circle class=\"" << (v.fail ? "point fail" : "point") << "\" cx=\"" << format(x(i), "%.1f") << "\" cy=\""
        << format(y(v.v), "%.1f") << "\" r=\"3.5\" fill=\"" << (v.fail ? "#d62728" : color) << "\"><title>"
        << html_escape(name + " " + nights[i].label + ": " + num(v.v) + (v.fail ? " (FAIL)" : "")) << "</title></circle>\n";
    // Legend: two rows of five under the axis; more series are in the table below the chart.
    if (c <= 10)
      s << "<text x=\"" << left + 140 * double((c - 1) % 5) << "\" y=\"" << h - 18 + 12 * double((c - 1) / 5)
        << "\" fill=\"" << color << "\">" << html_escape(name.substr(0, 24)) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

std::string value_table(const Metric& metric, const std::vector<Night>& nights) {
  const SeriesMap& series = metric.series;
  std::ostringstream s;
  s << "<table><thead><tr><th>series</th>";
  for (const Night& n : nights) s << "<th>" << html_escape(n.label) << "</th>";
  s << "</tr></thead><tbody>\n";
  for (const auto& [name, points] : series) {
    s << "<tr><td>" << html_escape(name) << "</td>";
    for (size_t i = 0; i < nights.size(); ++i) {
      const auto it = points.find(i);
      if (it == points.end()) {
        // Why the gap: the run failed that night, or it ran and this series was not in it.
        s << (nights[i].failed(metric.run) ? "<td class=\"fail\">failed</td>" : "<td class=\"gap\">-</td>");
      } else s << (it->second.fail ? "<td class=\"fail\">" : "<td>") << num(it->second.v) << (it->second.fail ? " FAIL" : "") << "</td>";
    }
    s << "</tr>\n";
  }
  s << "</tbody></table>\n";
  return s.str();
}

}  // namespace

std::vector<std::string> suite_run_folders(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != ".." && is_regular_file(dir + "/" + name + "/suite.json")) names.push_back(name);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string render_history_html(const std::string& dir) {
  const std::vector<Night> nights = read_nights(dir);
  Metrics metrics;
  for (size_t i = 0; i < nights.size(); ++i)
    for (const auto& [run, record] : nights[i].records) collect(metrics, run, record, i);
  std::ostringstream s;
  s << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>layoutbench history</title>\n"
    << "<style>body{font-family:sans-serif;margin:1.5em;max-width:1100px}table{border-collapse:collapse;"
    << "margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px;text-align:right}"
    << "td:first-child{text-align:left}.fail{background:#fdd;color:#a00}.gap{color:#999}</style>\n</head>\n<body>\n"
    << "<h1>History of " << html_escape(dir) << "</h1>\n<p>" << nights.size() << " run folder(s), oldest first.</p>\n";
  // The nights' runs: which failed, so a gap in a chart has its reason next to it.
  s << "<h2>Runs</h2>\n<table><thead><tr><th>run</th>";
  for (const Night& n : nights) s << "<th>" << html_escape(n.label) << "</th>";
  s << "</tr></thead><tbody>\n";
  std::map<std::string, bool> runs;
  for (const Night& n : nights)
    for (const auto& [run, outcome] : n.outcome) runs[run] = true;
  for (const auto& [run, unused] : runs) {
    s << "<tr><td>" << html_escape(run) << "</td>";
    for (const Night& n : nights) {
      const auto it = n.outcome.find(run);
      if (it == n.outcome.end()) s << "<td class=\"gap\">-</td>";
      else if (it->second == "ok") s << "<td>ok</td>";
      else s << "<td class=\"fail\">FAILED: " << html_escape(it->second) << "</td>";
    }
    s << "</tr>\n";
  }
  s << "</tbody></table>\n";
  for (const auto& [name, metric] : metrics)
    s << "<h2>" << html_escape(name) << "</h2>\n" << line_chart(metric, nights) << value_table(metric, nights);
  s << "</body>\n</html>\n";
  return s.str();
}

}  // namespace lb
