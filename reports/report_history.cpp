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
  std::map<std::string, bool> failed;
};

struct Value {
  double v = 0;
  bool fail = false;
};

// metric -> series -> night index -> value
using Metrics = std::map<std::string, std::map<std::string, std::map<size_t, Value>>>;

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
      continue;  // a suite.json cut short: that night has nothing to show
    }
    const std::string date = n.index.value("folder", name).substr(0, 15);
    n.label = date + " " + text(n.index, "commit").substr(0, 10);
    if (n.index.contains("runs") && n.index["runs"].is_array())
      for (const json& r : n.index["runs"]) {
        const std::string run = text(r, "name");
        n.failed[run] = number(r, "exit_code").value_or(1) != 0;
        const std::string path = dir + "/" + name + "/" + text(r, "record");
        if (!is_regular_file(path)) continue;
        try {
          n.records[run] = read_run_file(path);
        } catch (const InputError&) {
        }
      }
    nights.push_back(std::move(n));
  }
  return nights;
}

void add(Metrics& m, const std::string& metric, const std::string& series, size_t night, std::optional<double> v,
         bool fail = false) {
  if (v && std::isfinite(*v)) m[metric][series][night] = {*v, fail};
}

// What each record kind contributes, per night.
void collect(Metrics& m, const std::string& run, const json& r, size_t night) {
  const std::string sub = text(r, "subcommand");
  if (sub == "check" && r.contains("layouts")) {
    for (const json& l : r["layouts"]) {
      double worst = 0;
      for (const json& layer : l.value("layers", json::array())) {
        const auto e = number(layer, "rel_l2"), t = number(layer, "threshold");
        if (e && t && *t > 0) worst = std::max(worst, *e / *t);
      }
      add(m, run + ": worst rel_l2 / threshold", text(l, "layout"), night, worst, !flag(l, "pass"));
    }
  } else if (sub == "bench" && r.contains("layouts")) {
    for (const json& l : r["layouts"]) {
      add(m, run + ": prefill tokens/s", text(l, "layout"), night, number(l, "prefill_tokens_per_s"));
      for (const json& d : l.value("decode", json::array()))
        add(m, run + ": decode step ms", text(l, "layout") + " b=" + scalar_text(d.value("batch", json())), night,
            number(d, "step_ms"));
    }
  } else if (sub == "collectives" && r.contains("rows")) {
    std::map<std::string, std::pair<double, double>> largest;  // series -> (bytes, busbw)
    for (const json& row : r["rows"]) {
      const std::string series = text(row, "op") + (text(row, "algo").empty() ? "" : " " + text(row, "algo")) + " " +
                                 text(row, "split");
      const double bytes = number(row, "bytes").value_or(0);
      if (bytes >= largest[series].first) largest[series] = {bytes, number(row, "busbw_GBps").value_or(NAN)};
    }
    for (const auto& [series, b] : largest) add(m, run + ": busbw GB/s at the largest size", series, night, b.second);
  } else if (sub == "gsm8k" && r.contains("runs")) {
    for (const json& g : r["runs"]) {
      if (g.contains("accuracy")) add(m, run + ": accuracy", text(g, "name"), night, number(g["accuracy"], "value"));
      if (g.contains("agreement")) {
        const auto same = number(g["agreement"], "identical"), total = number(g["agreement"], "total");
        if (same && total && *total > 0) add(m, run + ": agreement with the reference", text(g, "name"), night, *same / *total);
      }
    }
  } else if (sub == "reference" && r.contains("metrics")) {
    add(m, run + ": prefill tokens/s", "reference", night, number(r["metrics"], "prefill_tokens_per_s"));
  }
}

const char* const kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b",
                               "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79"};

std::string num(double v) { return format(v, std::fabs(v) >= 100 ? "%.0f" : "%.3g"); }

// A point per night at its index; a night without a value breaks the line there.
std::string line_chart(const std::map<std::string, std::map<size_t, Value>>& series, const std::vector<Night>& nights) {
  const double w = 800, h = 240, left = 70, right = 70, top = 15, bottom = 60;  // room for the end labels
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& [name, points] : series)
    for (const auto& [i, v] : points) lo = std::min(lo, v.v), hi = std::max(hi, v.v);
  if (!(lo <= hi)) return "";
  if (lo == hi) lo -= std::max(1e-12, std::fabs(lo) * 0.1), hi += std::max(1e-12, std::fabs(hi) * 0.1);
  if (lo > 0 && lo < hi * 0.5) lo = 0;  // a wide range of positive values reads best from zero
  const size_t n = nights.size();
  auto x = [&](size_t i) { return left + (n > 1 ? double(i) * (w - left - right) / double(n - 1) : (w - left - right) / 2); };
  auto y = [&](double v) { return top + (hi - v) / (hi - lo) * (h - top - bottom); };
  std::ostringstream s;
  s << "<svg class=\"chart\" width=\"" << w << "\" height=\"" << h << "\" viewBox=\"0 0 " << w << " " << h
    << "\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"10\">\n";
  for (int t = 0; t <= 4; ++t) {
    const double v = lo + (hi - lo) * t / 4;
    s << "<line x1=\"" << left << "\" x2=\"" << w - right << "\" y1=\"" << y(v) << "\" y2=\"" << y(v)
      << "\" stroke=\"#ddd\"/><text x=\"" << left - 4 << "\" y=\"" << y(v) + 3 << "\" text-anchor=\"end\">" << num(v)
      << "</text>\n";
  }
  for (size_t i = 0; i < n; ++i)
    s << "<text x=\"" << x(i) << "\" y=\"" << h - bottom + 14 << "\" text-anchor=\"middle\">"
      << html_escape(nights[i].label.substr(0, 15)) << "</text><text x=\"" << x(i) << "\" y=\"" << h - bottom + 26
      << "\" text-anchor=\"middle\">" << html_escape(nights[i].label.size() > 16 ? nights[i].label.substr(16) : "")
      << "</text>\n";
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

std::string value_table(const std::map<std::string, std::map<size_t, Value>>& series, const std::vector<Night>& nights) {
  std::ostringstream s;
  s << "<table><thead><tr><th>series</th>";
  for (const Night& n : nights) s << "<th>" << html_escape(n.label) << "</th>";
  s << "</tr></thead><tbody>\n";
  for (const auto& [name, points] : series) {
    s << "<tr><td>" << html_escape(name) << "</td>";
    for (size_t i = 0; i < nights.size(); ++i) {
      const auto it = points.find(i);
      if (it == points.end()) s << "<td class=\"gap\">-</td>";
      else s << (it->second.fail ? "<td class=\"fail\">" : "<td>") << num(it->second.v) << (it->second.fail ? " FAIL" : "") << "</td>";
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
    for (const auto& [run, failed] : n.failed) runs[run] = true;
  for (const auto& [run, unused] : runs) {
    s << "<tr><td>" << html_escape(run) << "</td>";
    for (const Night& n : nights) {
      const auto it = n.failed.find(run);
      if (it == n.failed.end()) s << "<td class=\"gap\">-</td>";
      else s << (it->second ? "<td class=\"fail\">FAILED</td>" : "<td>ok</td>");
    }
    s << "</tr>\n";
  }
  s << "</tbody></table>\n";
  for (const auto& [metric, series] : metrics)
    s << "<h2>" << html_escape(metric) << "</h2>\n" << line_chart(series, nights) << value_table(series, nights);
  s << "</body>\n</html>\n";
  return s.str();
}

}  // namespace lb
