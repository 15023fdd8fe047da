#include "reports/run_diff.h"

#include "harness/runtime/errors.h"
#include "reports/record_fields.h"
#include "reports/run_record.h"

#include <map>
#include <optional>
#include <sstream>
#include <tuple>

namespace lb {

using nlohmann::json;

namespace {

std::string signed_percent(double old_v, double new_v) { return format(100.0 * (new_v / old_v - 1), "%+.1f%%"); }

std::string cell_or_dash(const std::optional<double>& v) { return v ? format(*v, "%.3f") : "-"; }

// A time (lower is better) or a rate (higher is better), judged by the fraction it got worse.
void compare_metric(DiffResult& d, const std::string& subject, const std::string& name, std::optional<double> old_v,
                    std::optional<double> new_v, bool higher_is_better, double max_worse, const char* spec) {
  if (!old_v || !new_v || *old_v <= 0) return;
  const double change = *new_v / *old_v - 1;
  const double worse = higher_is_better ? -change : change;
  const DiffLine line{subject, name + " " + format(*old_v, spec) + " -> " + format(*new_v, spec) + " (" +
                                   signed_percent(*old_v, *new_v) + ")"};
  if (worse > max_worse) d.regressions.push_back(line);
  else if (worse < -max_worse) d.improvements.push_back(line);
}

// Entries of an array of objects by a key field ("layout", "layer"), in the array's order.
std::vector<std::pair<std::string, const json*>> keyed(const json& array, const char* key) {
  std::vector<std::pair<std::string, const json*>> out;
  for (const json& e : array) out.push_back({text(e, key), &e});
  return out;
}

const json* find_key(const std::vector<std::pair<std::string, const json*>>& entries, const std::string& key) {
  for (const auto& [k, e] : entries)
    if (k == key) return e;
  return nullptr;
}

std::string rel_l2_text(const json& layer) {
  const auto v = number(layer, "rel_l2");
  return v ? format(*v, "%.2e") : "non-finite";
}

void diff_layer(DiffResult& d, const std::string& subject, const json& o, const json& n, const DiffThresholds& t) {
  const bool old_pass = flag(o, "pass"), new_pass = flag(n, "pass");
  const std::string values = "rel_l2 " + rel_l2_text(o) + " -> " + rel_l2_text(n) + ", threshold " +
                             format(number(n, "threshold").value_or(0), "%.2e");
  if (old_pass && !new_pass) return d.regressions.push_back({subject, "passed, now fails (" + values + ")"});
  if (!old_pass && new_pass) return d.improvements.push_back({subject, "failed, now passes (" + values + ")"});
  const auto old_e = number(o, "rel_l2"), new_e = number(n, "rel_l2");
  if (!old_e || !new_e) return;
  const std::string growth = *old_e > 0 ? " (x" + format(*new_e / *old_e, "%.2f") + ")" : "";
  if (*new_e > t.max_rel_l2_growth * *old_e && *new_e > t.rel_l2_floor)
    d.regressions.push_back({subject, values + growth});
  else if (*old_e > t.max_rel_l2_growth * *new_e && *old_e > t.rel_l2_floor)
    d.improvements.push_back({subject, values + growth});
}

void diff_layout(DiffResult& d, const std::string& name, const json& o, const json& n, const DiffThresholds& t) {
  const std::string subject = "layout " + name;
  if (flag(o, "pass") && !flag(n, "pass")) d.regressions.push_back({subject, "passed, now fails"});
  if (!flag(o, "pass") && flag(n, "pass")) d.improvements.push_back({subject, "failed, now passes"});
  const auto new_layers = keyed(array_at(n, "layers"), "layer");
  for (const auto& [layer, old_layer] : keyed(array_at(o, "layers"), "layer")) {
    const json* new_layer = find_key(new_layers, layer);
    if (!new_layer) d.regressions.push_back({subject + ", layer " + layer, "checked in the old run, missing in the new"});
    else diff_layer(d, subject + ", layer " + layer, *old_layer, *new_layer, t);
  }
  compare_metric(d, subject, "layout_ms", number(o, "layout_ms"), number(n, "layout_ms"), false, t.max_slowdown, "%.2f");
}

void diff_check(DiffResult& d, const json& o, const json& n, const DiffThresholds& t) {
  const auto old_layouts = keyed(array_at(o, "layouts"), "layout");
  const auto new_layouts = keyed(array_at(n, "layouts"), "layout");
  for (const auto& [name, old_layout] : old_layouts) {
    const json* new_layout = find_key(new_layouts, name);
    if (!new_layout) d.regressions.push_back({"layout " + name, "in the old run, missing in the new"});
    else diff_layout(d, name, *old_layout, *new_layout, t);
  }
  for (const auto& [name, new_layout] : new_layouts)
    if (!find_key(old_layouts, name))
      d.info.push_back({"layout " + name, std::string("new (") + (flag(*new_layout, "pass") ? "pass" : "FAIL") + ")"});
}

// A benchmark row is the same measurement when all of these agree. "auto:grouped" and
// "auto:padded" are one row: auto's pick is a result of the run, not part of the question.
std::string row_key(const json& r) {
  std::string algo = text(r, "algo");
  if (algo.rfind("auto:", 0) == 0) algo = "auto";
  return text(r, "op") + (algo.empty() ? "" : " " + algo) + " " + text(r, "split") + " " + text(r, "type") + " " +
         text(r, "bytes") + " B @" + text(r, "group");
}

void diff_collectives(DiffResult& d, const json& o, const json& n, const DiffThresholds& t) {
  std::map<std::string, const json*> new_rows;
  for (const json& r : array_at(n, "rows")) new_rows[row_key(r)] = &r;
  std::map<std::string, bool> seen;
  for (const json& r : array_at(o, "rows")) {
    const std::string key = row_key(r);
    seen[key] = true;
    auto it = new_rows.find(key);
    if (it == new_rows.end()) {
      d.regressions.push_back({key, "in the old run, missing in the new"});
      continue;
    }
    const json& m = *it->second;
    if (text(r, "algo") != text(m, "algo"))
      d.info.push_back({key, "algorithm " + text(r, "algo") + " -> " + text(m, "algo")});
    const double old_wrong = number(r, "wrong").value_or(0), new_wrong = number(m, "wrong").value_or(0);
    if (old_wrong == 0 && new_wrong != 0)
      d.regressions.push_back({key, "wrong elements 0 -> " + format(new_wrong, "%.0f")});
    if (old_wrong != 0 && new_wrong == 0)
      d.improvements.push_back({key, "wrong elements " + format(old_wrong, "%.0f") + " -> 0"});
    // time and busbw are one measurement seen two ways: one line per row, judged on either.
    const auto old_time = number(r, "time_us"), new_time = number(m, "time_us");
    const auto old_bw = number(r, "busbw_GBps"), new_bw = number(m, "busbw_GBps");
    if (!old_time || !new_time || !old_bw || !new_bw || *old_time <= 0 || *old_bw <= 0) continue;
    const double slowdown = *new_time / *old_time - 1, drop = 1 - *new_bw / *old_bw;
    const DiffLine line{key, "time_us " + format(*old_time, "%.1f") + " -> " + format(*new_time, "%.1f") + " (" +
                                 signed_percent(*old_time, *new_time) + "), busbw " + format(*old_bw, "%.2f") +
                                 " -> " + format(*new_bw, "%.2f") + " GB/s (" + signed_percent(*old_bw, *new_bw) +
                                 ")"};
    if (slowdown > t.max_slowdown || drop > t.max_busbw_drop) d.regressions.push_back(line);
    else if (slowdown < -t.max_slowdown || drop < -t.max_busbw_drop) d.improvements.push_back(line);
  }
  for (const auto& [key, r] : new_rows)
    if (!seen.count(key)) d.info.push_back({key, "new row"});
}

void diff_reference(DiffResult& d, const json& o, const json& n, const DiffThresholds& t) {
  const json& om = o.contains("metrics") ? o.at("metrics") : json::object();
  const json& nm = n.contains("metrics") ? n.at("metrics") : json::object();
  compare_metric(d, "prefill", "tokens/s", number(om, "prefill_tokens_per_s"), number(nm, "prefill_tokens_per_s"), true,
                 t.max_slowdown, "%.0f");
}

// An array of a record whose entries are matched across the two runs by one field, and what a
// subject calls an entry: {"layouts", "layout", "layout "}, {"decode", "batch", "decode b="}.
struct Matched {
  const char* array;
  const char* key;
  const char* label;
};

// The entries of `m.array` in `parent` by their key, in the array's order. An entry without its
// key, or two entries with one key, would be compared with the wrong entry of the other run, so
// such a record is refused instead of read.
std::vector<std::pair<std::string, const json*>> keyed_uniquely(const json& parent, const Matched& m,
                                                                const std::string& where, const char* run) {
  const std::string place =
      std::string("the ") + run + " run's \"" + m.array + "\"" + (where.empty() ? "" : " of " + where);
  std::vector<std::pair<std::string, const json*>> out;
  for (const json& e : array_at(parent, m.array)) {
    const std::string name = text(e, m.key);
    if (name.empty()) throw InputError("cannot compare runs: an entry of " + place + " has no \"" + m.key + "\"");
    if (find_key(out, name))
      throw InputError("cannot compare runs: " + place + " has two entries with \"" + m.key + "\" " + name);
    out.push_back({name, &e});
  }
  return out;
}

// Entries matched across the runs: one gone is a regression, a new one info, the others compared
// by `compare(subject, old, new)`. `where` names the parent ("layout tp"), "" at the top.
template <typename Compare>
void diff_matched(DiffResult& d, const std::string& where, const json& o, const json& n, const Matched& m,
                  Compare compare) {
  const auto old_entries = keyed_uniquely(o, m, where, "old"), new_entries = keyed_uniquely(n, m, where, "new");
  const std::string prefix = (where.empty() ? "" : where + ", ") + m.label;
  for (const auto& [name, old_entry] : old_entries) {
    const json* new_entry = find_key(new_entries, name);
    if (!new_entry) d.regressions.push_back({prefix + name, "in the old run, missing in the new"});
    else compare(prefix + name, *old_entry, *new_entry);
  }
  for (const auto& [name, unused] : new_entries)
    if (!find_key(old_entries, name)) d.info.push_back({prefix + name, "new"});
}

// A collective that a layout no longer calls (or newly calls) is a change of the layout, not of
// its speed: its time is in the prefill rate, so it is only said.
void diff_prefill_collectives(DiffResult& d, const std::string& subject, const json& o, const json& n,
                              const DiffThresholds& t) {
  const json& old_calls = object_at(o, "prefill_collectives");
  const json& new_calls = object_at(n, "prefill_collectives");
  for (const auto& [name, c] : old_calls.items()) {
    if (!new_calls.contains(name)) d.info.push_back({subject + ", prefill " + name, "no longer called"});
    else
      compare_metric(d, subject + ", prefill " + name, "ms", number(c, "ms"), number(new_calls.at(name), "ms"), false,
                     t.max_slowdown, "%.3f");
  }
  for (const auto& [name, c] : new_calls.items())
    if (!old_calls.contains(name)) d.info.push_back({subject + ", prefill " + name, "newly called"});
}

// bench: per layout its prefill rate and collective times, its decode step per batch size, and
// per new layout its ratio to the baseline it replaced (the number the layout exists for).
void diff_bench_layout(DiffResult& d, const std::string& subject, const json& o, const json& n, const DiffThresholds& t) {
  compare_metric(d, subject, "prefill tokens/s", number(o, "prefill_tokens_per_s"), number(n, "prefill_tokens_per_s"),
                 true, t.max_slowdown, "%.0f");
  diff_prefill_collectives(d, subject, o, n, t);
  diff_matched(d, subject, o, n, {"decode", "batch", "decode b="},
               [&](const std::string& step, const json& a, const json& b) {
                 compare_metric(d, step, "step ms", number(a, "step_ms"), number(b, "step_ms"), false, t.max_slowdown,
                                "%.3f");
               });
}

void diff_bench_ratio(DiffResult& d, const std::string& name, const json& o, const json& n, const DiffThresholds& t) {
  const std::string subject = name + " vs " + text(o, "baseline");
  for (const auto& [key, value] : o.items())
    if (key == "prefill_speedup" || key.rfind("decode_speedup_b", 0) == 0)
      compare_metric(d, subject, key, number(o, key.c_str()), number(n, key.c_str()), true, t.max_slowdown, "%.3f");
}

void diff_bench(DiffResult& d, const json& o, const json& n, const DiffThresholds& t) {
  diff_matched(d, "", o, n, {"layouts", "layout", "layout "},
               [&](const std::string& subject, const json& a, const json& b) { diff_bench_layout(d, subject, a, b, t); });
  const Matched ratios{"ratios", "layout", ""};
  const auto new_ratios = keyed_uniquely(n, ratios, "", "new");
  for (const auto& [name, old_ratio] : keyed_uniquely(o, ratios, "", "old"))
    // A ratio is gone when its layout or its baseline is, which is said above.
    if (const json* new_ratio = find_key(new_ratios, name)) diff_bench_ratio(d, name, *old_ratio, *new_ratio, t);
}

// gsm8k: accuracy regresses only when the new 95% interval lies wholly below the old one (two runs
// of the same layout on the same questions differ by chance within their intervals); agreement with
// the reference by any drop past max_agreement_drop; a question's answer that changed is listed
// (correct -> wrong a regression, the reverse an improvement), at most kListedAnswers per run.
constexpr size_t kListedAnswers = 20;

std::string interval_text(const json& accuracy) {
  return "[" + cell_or_dash(number(accuracy, "low95")) + ", " + cell_or_dash(number(accuracy, "high95")) + "]";
}

void diff_accuracy(DiffResult& d, const std::string& subject, const json& o, const json& n) {
  const json& oa = object_at(o, "accuracy");
  const json& na = object_at(n, "accuracy");
  const auto old_v = number(oa, "value"), new_v = number(na, "value");
  if (!old_v || !new_v || *old_v == *new_v) return;
  const auto old_low = number(oa, "low95"), old_high = number(oa, "high95");
  const auto new_low = number(na, "low95"), new_high = number(na, "high95");
  const bool wholly_below = old_low && new_high && *new_high < *old_low;
  const bool wholly_above = old_high && new_low && *new_low > *old_high;
  const DiffLine line{subject, "accuracy " + format(*old_v, "%.3f") + " -> " + format(*new_v, "%.3f") + " (95% " +
                                   interval_text(oa) + " -> " + interval_text(na) + ")"};
  (wholly_below ? d.regressions : wholly_above ? d.improvements : d.info).push_back(line);
}

// The share of a layout's answers identical to the reference's; the reference run has none.
std::optional<double> agreement_share(const json& run) {
  const json& a = object_at(run, "agreement");
  const auto identical = number(a, "identical"), total = number(a, "total");
  if (!identical || !total || *total <= 0) return std::nullopt;
  return *identical / *total;
}

void diff_agreement(DiffResult& d, const std::string& subject, const json& o, const json& n, const DiffThresholds& t) {
  const auto old_share = agreement_share(o), new_share = agreement_share(n);
  if (!old_share || !new_share) return;
  const DiffLine line{subject, "agreement with the reference " + format(*old_share, "%.3f") + " -> " +
                                   format(*new_share, "%.3f")};
  if (*old_share - *new_share > t.max_agreement_drop) d.regressions.push_back(line);
  else if (*new_share - *old_share > t.max_agreement_drop) d.improvements.push_back(line);
}

// Past kListedAnswers the changed answers are only counted, so a long run does not flood the
// output; a correct answer lost among them still makes the summary a regression.
void diff_answers(DiffResult& d, const std::string& subject, const json& o, const json& n) {
  const Matched questions{"questions", "line", ""};
  const auto new_questions = keyed_uniquely(n, questions, subject, "new");
  size_t listed = 0, lost = 0, gained = 0, other = 0;
  for (const auto& [line, old_q] : keyed_uniquely(o, questions, subject, "old")) {
    const json* new_q = find_key(new_questions, line);
    if (!new_q) continue;  // a question dropped from the data set: the accuracy's total says so
    const std::string old_answer = scalar_text(old_q->value("answer", json()));
    const std::string new_answer = scalar_text(new_q->value("answer", json()));
    if (old_answer == new_answer) continue;
    const bool was = flag(*old_q, "correct"), is = flag(*new_q, "correct");
    if (listed < kListedAnswers) {
      ++listed;
      (was && !is ? d.regressions : !was && is ? d.improvements : d.info)
          .push_back({subject + ", question on line " + line, "answer " + old_answer + " -> " + new_answer});
    } else {
      ++(was && !is ? lost : !was && is ? gained : other);
    }
  }
  const size_t unlisted = lost + gained + other;
  if (unlisted == 0) return;
  const DiffLine more{subject, std::to_string(unlisted) + " more questions changed their answer (" +
                                   std::to_string(lost) + " correct -> wrong, " + std::to_string(gained) +
                                   " wrong -> correct)"};
  (lost > 0 ? d.regressions : gained > 0 ? d.improvements : d.info).push_back(more);
}

void diff_gsm8k_run(DiffResult& d, const std::string& subject, const json& o, const json& n, const DiffThresholds& t) {
  diff_accuracy(d, subject, o, n);
  diff_agreement(d, subject, o, n, t);
  compare_metric(d, subject, "decode tokens/s", number(o, "decode_tokens_per_s"), number(n, "decode_tokens_per_s"), true,
                 t.max_slowdown, "%.0f");
  compare_metric(d, subject, "prefill tokens/s", number(o, "prefill_tokens_per_s"), number(n, "prefill_tokens_per_s"),
                 true, t.max_slowdown, "%.0f");
  diff_answers(d, subject, o, n);
}

// Within the new record: a layout whose accuracy lies outside the reference's 95% interval on the
// same questions computes another model. Only where accuracy means something (a trained checkpoint;
// with random weights every answer is wrong).
void diff_layouts_against_reference(DiffResult& d, const json& n) {
  if (!n.value("accuracy_meaningful", false) || !n.contains("runs") || !n["runs"].is_array()) return;
  const json* reference = nullptr;
  for (const json& run : n["runs"])
    if (run.is_object() && run.value("name", "") == "reference") reference = &run;
  if (!reference) return;
  const json& ra = object_at(*reference, "accuracy");
  const auto low = number(ra, "low95"), high = number(ra, "high95");
  if (!low || !high) return;
  for (const json& run : n["runs"]) {
    if (!run.is_object() || &run == reference) continue;
    const auto v = number(object_at(run, "accuracy"), "value");
    if (v && (*v < *low || *v > *high))
      d.regressions.push_back({"run " + run.value("name", std::string("?")),
                               "accuracy " + format(*v, "%.3f") + " outside the reference's 95% interval " +
                                   interval_text(ra) + " in the same run"});
  }
}

void diff_gsm8k(DiffResult& d, const json& o, const json& n, const DiffThresholds& t) {
  diff_matched(d, "", o, n, {"runs", "name", "run "},
               [&](const std::string& subject, const json& a, const json& b) { diff_gsm8k_run(d, subject, a, b, t); });
  diff_layouts_against_reference(d, n);
}

}  // namespace

std::string model_difference(const json& o, const json& n) {
  // The config: "model" (check, bench, gsm8k) or "config" (reference); its name is the preset or
  // the directory it was read from, so it does not take part.
  auto config = [](const json& r) {
    for (const char* key : {"model", "config"})
      if (r.contains(key) && r.at(key).is_object()) {
        json c = r.at(key);
        c.erase("name");
        return c;
      }
    return json();
  };
  auto name = [](const json& r) {
    if (r.contains("model") && r.at("model").is_object()) return text(r.at("model"), "name");
    if (r.contains("config") && r.at("config").is_object()) return text(r.at("config"), "name");
    return text(r, r.contains("model_name") ? "model_name" : "model");
  };
  const json oc = config(o), nc = config(n);
  if (!oc.is_null() && !nc.is_null()) {
    if (oc != nc) {
      for (auto it = oc.begin(); it != oc.end(); ++it)
        if (!nc.contains(it.key()) || nc.at(it.key()) != it.value())
          return "'" + name(o) + "' and '" + name(n) + "' differ in " + it.key() + " (" + it.value().dump() + " -> " +
                 (nc.contains(it.key()) ? nc.at(it.key()).dump() : std::string("absent")) + ")";
      return "'" + name(o) + "' and '" + name(n) + "' differ in their configs";
    }
  } else if (!name(o).empty() && !name(n).empty() && name(o) != name(n)) {
    return "the old run has '" + name(o) + "', the new run has '" + name(n) + "'";
  }
  // The weights: their fingerprint where recorded; random weights are named by their seed.
  if (o.contains("weights_id") && n.contains("weights_id")) {
    if (text(o, "weights_id") != text(n, "weights_id"))
      return "the weights differ (" + text(o, "weights") + " -> " + text(n, "weights") + ", fingerprints " +
             text(o, "weights_id") + " -> " + text(n, "weights_id") + ")";
  } else if (text(o, "weights").rfind("random(", 0) == 0 && text(n, "weights").rfind("random(", 0) == 0 &&
             text(o, "weights") != text(n, "weights")) {
    return "the weights differ (" + text(o, "weights") + " -> " + text(n, "weights") + ")";
  }
  return "";
}

std::vector<std::string> input_differences(const json& o, const json& n) {
  std::vector<std::string> out;
  for (const char* key : {"tokens", "seq_lens", "seed", "ranks", "backend", "parallel", "group"}) {
    if (!o.contains(key) || !n.contains(key) || o.at(key) == n.at(key)) continue;
    out.push_back(std::string(key) + " " + o.at(key).dump() + " -> " + n.at(key).dump());
  }
  // A layout checked or benchmarked under another parallel config is another measurement.
  const auto new_layouts = keyed(array_at(n, "layouts"), "layout");
  for (const auto& [name, old_layout] : keyed(array_at(o, "layouts"), "layout")) {
    const json* new_layout = find_key(new_layouts, name);
    if (!new_layout || !old_layout->contains("parallel") || !new_layout->contains("parallel")) continue;
    if (old_layout->at("parallel") != new_layout->at("parallel"))
      out.push_back("layout " + name + " parallel " + old_layout->at("parallel").dump() + " -> " +
                    new_layout->at("parallel").dump());
  }
  return out;
}

namespace {

// Both records must be of this build's schema: a field renamed between versions would otherwise
// read as "missing" and every row would look like a regression.
void require_comparable(const json& o, const json& n) {
  auto schema = [](const json& r) -> std::string {
    if (!r.is_object() || !r.contains("schema")) return "no \"schema\" field";
    return "schema '" + text(r, "schema") + "'";
  };
  const std::string expected = std::string("schema '") + kRunSchema + "'";
  if (schema(o) != expected || schema(n) != expected)
    throw InputError("cannot compare runs: the old run has " + schema(o) + ", the new run has " + schema(n) +
                     " (this build reads " + expected + ")");
  if (text(o, "subcommand") != text(n, "subcommand"))
    throw InputError("cannot compare runs of different subcommands: the old run is '" + text(o, "subcommand") +
                     "', the new run is '" + text(n, "subcommand") + "'");
  // Errors of different models or precisions are not a regression of one another.
  const std::string models = model_difference(o, n);
  if (!models.empty()) throw InputError("cannot compare runs of different models: " + models);
  if (!text(o, "dtype").empty() && !text(n, "dtype").empty() && text(o, "dtype") != text(n, "dtype"))
    throw InputError("cannot compare runs of different dtypes: the old run has '" + text(o, "dtype") +
                     "', the new run has '" + text(n, "dtype") + "'");
}

// A run that did not finish is not the same measurement as one that did.
void note_unfinished(DiffResult& d, const json& run, bool is_new) {
  std::string why;
  if (run.contains("interrupted")) why = "interrupted by " + text(run, "interrupted");
  else if (run.contains("error")) why = "ended with an error: " + text(run, "error");
  else if (run.contains("complete") && !flag(run, "complete")) why = "did not complete (killed, or still running)";
  if (why.empty()) return;
  (is_new ? d.regressions : d.info).push_back({is_new ? "new run" : "old run", why});
}

// Records of different inputs are refused, or, when they may differ, the differences are listed.
void require_same_inputs(DiffResult& d, const json& o, const json& n, DiffInputs inputs) {
  const std::vector<std::string> differences = input_differences(o, n);
  if (differences.empty()) return;
  if (inputs == DiffInputs::MayDiffer) {
    for (const std::string& what : differences) d.info.push_back({"inputs differ", what});
    return;
  }
  std::string list;
  for (const std::string& what : differences) list += (list.empty() ? "" : "; ") + what;
  throw InputError("cannot compare runs made from different inputs (" + list +
                   "): their numbers are not the same measurement (--allow-different-inputs compares them anyway)");
}

}  // namespace

DiffResult diff_runs(const json& old_run, const json& new_run, const DiffThresholds& t, DiffInputs inputs) {
  require_comparable(old_run, new_run);
  DiffResult d;
  require_same_inputs(d, old_run, new_run, inputs);
  note_unfinished(d, old_run, false);
  note_unfinished(d, new_run, true);
  // Times measured on another device or with other flags are not the same measurement; say so.
  for (const char* key : {"command", "device"})
    if (text(old_run, key) != text(new_run, key))
      d.info.push_back({key, "'" + text(old_run, key) + "' -> '" + text(new_run, key) + "'"});
  const std::string sub = text(old_run, "subcommand");
  if (sub == "check") diff_check(d, old_run, new_run, t);
  else if (sub == "collectives") diff_collectives(d, old_run, new_run, t);
  else if (sub == "reference") diff_reference(d, old_run, new_run, t);
  else if (sub == "bench") diff_bench(d, old_run, new_run, t);
  else if (sub == "gsm8k") diff_gsm8k(d, old_run, new_run, t);
  else d.info.push_back({"subcommand", "no comparison rules for '" + sub + "' records"});
  return d;
}

std::string format_diff(const DiffResult& d) {
  std::ostringstream out;
  auto section = [&](const char* title, const std::vector<DiffLine>& lines) {
    if (lines.empty()) return;
    out << title << " (" << lines.size() << "):\n";
    for (const auto& l : lines) out << "  " << l.subject << ": " << l.change << "\n";
  };
  section("regressions", d.regressions);
  section("improvements", d.improvements);
  section("info", d.info);
  if (d.regressions.empty() && d.improvements.empty()) out << "no regressions or improvements past the thresholds\n";
  return out.str();
}

}  // namespace lb
