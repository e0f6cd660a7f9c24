// ParsePromText: the exposition format's line grammar and family rules, strictly, for tests of our metrics.
#include "test/client/prom_text.h"

#include <cmath>
#include <cstdlib>
#include <set>

#include "config/base/metrics.h"
#include "config/base/str.h"

namespace kvcri::testing {
namespace {

using base::StrCat;

absl::Status Bad(size_t line_no, std::string_view line, std::string_view why) {
  return absl::InvalidArgumentError(StrCat("line ", line_no, " \"", line, "\": ", why));
}

bool ParseValue(std::string_view s, double* v) {
  if (s == "+Inf") {
    *v = INFINITY;
  } else if (s == "-Inf") {
    *v = -INFINITY;
  } else if (s == "NaN") {
    *v = NAN;
  } else {
    if (s.empty()) return false;
    std::string copy(s);
    char* end = nullptr;
    *v = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size()) return false;
  }
  return true;
}

// The family a sample name belongs to: itself, or a histogram's base name.
std::string FamilyOf(const std::string& sample, const std::map<std::string, PromFamily>& families) {
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (sample.size() > suffix.size() && sample.compare(sample.size() - suffix.size(), suffix.size(), suffix) == 0) {
      std::string base = sample.substr(0, sample.size() - suffix.size());
      auto it = families.find(base);
      if (it != families.end() && it->second.type == "histogram") return base;
    }
  }
  return sample;
}

absl::Status CheckHistogram(const PromFamily& f) {
  // Per label set (without le): cumulative buckets, +Inf last and == _count.
  std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> buckets;
  std::map<std::map<std::string, std::string>, double> counts;
  std::set<std::map<std::string, std::string>> sums;
  for (const PromSample& s : f.samples) {
    std::map<std::string, std::string> key = s.labels;
    if (s.name == f.name + "_bucket") {
      auto le = key.find("le");
      if (le == key.end()) return absl::InvalidArgumentError(StrCat(f.name, ": a bucket without le"));
      double bound = 0;
      if (!ParseValue(le->second, &bound)) return absl::InvalidArgumentError(StrCat(f.name, ": le \"", le->second, "\""));
      key.erase(le);
      buckets[key].emplace_back(bound, s.value);
    } else if (s.name == f.name + "_count") {
      counts[key] = s.value;
    } else if (s.name == f.name + "_sum") {
      sums.insert(key);
    } else {
      return absl::InvalidArgumentError(StrCat(f.name, ": sample \"", s.name, "\" in a histogram"));
    }
  }
  for (const auto& [key, list] : buckets) {
    for (size_t i = 1; i < list.size(); ++i) {
      if (!(list[i].first > list[i - 1].first)) return absl::InvalidArgumentError(StrCat(f.name, ": le not ascending"));
      if (list[i].second < list[i - 1].second) return absl::InvalidArgumentError(StrCat(f.name, ": buckets not cumulative"));
    }
    if (list.empty() || !std::isinf(list.back().first)) return absl::InvalidArgumentError(StrCat(f.name, ": no +Inf bucket"));
    auto c = counts.find(key);
    if (c == counts.end() || c->second != list.back().second) {
      return absl::InvalidArgumentError(StrCat(f.name, ": +Inf bucket differs from _count"));
    }
    if (!sums.count(key)) return absl::InvalidArgumentError(StrCat(f.name, ": no _sum"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::map<std::string, PromFamily>> ParsePromText(std::string_view text) {
  std::map<std::string, PromFamily> families;
  std::set<std::string> finished;  // families whose samples ended
  std::string current;
  std::set<std::pair<std::string, std::map<std::string, std::string>>> seen;
  if (!text.empty() && text.back() != '\n') return absl::InvalidArgumentError("the text does not end with a newline");
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    const size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (line.empty()) continue;
    if (line[0] == '#') {
      const bool help = line.rfind("# HELP ", 0) == 0, type = line.rfind("# TYPE ", 0) == 0;
      if (!help && !type) continue;  // a comment
      std::string_view rest = line.substr(7);
      const size_t sp = rest.find(' ');
      if (sp == std::string_view::npos) return Bad(line_no, line, "HELP/TYPE without text");
      const std::string name(rest.substr(0, sp));
      if (!base::ValidMetricName(name)) return Bad(line_no, line, "invalid metric name");
      if (finished.count(name) || (families.count(name) && !families[name].samples.empty())) {
        return Bad(line_no, line, "HELP/TYPE after the family's samples");
      }
      PromFamily& f = families[name];
      f.name = name;
      if (type) {
        if (!f.type.empty()) return Bad(line_no, line, "a second TYPE");
        f.type = std::string(rest.substr(sp + 1));
        if (f.type != "counter" && f.type != "gauge" && f.type != "histogram" && f.type != "summary" &&
            f.type != "untyped") {
          return Bad(line_no, line, "unknown type");
        }
      } else {
        if (!f.help.empty()) return Bad(line_no, line, "a second HELP");
        f.help = std::string(rest.substr(sp + 1));
      }
      if (current != name && !current.empty()) finished.insert(current);
      current = name;
      continue;
    }
    PromSample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = std::string(line.substr(0, i));
    if (!base::ValidMetricName(s.name)) return Bad(line_no, line, "invalid metric name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        if (eq == std::string_view::npos) return Bad(line_no, line, "label without '='");
        std::string lname(line.substr(i, eq - i));
        if (!base::ValidLabelName(lname) && lname != "le") return Bad(line_no, line, "invalid label name");
        if (eq + 1 >= line.size() || line[eq + 1] != '"') return Bad(line_no, line, "label value not quoted");
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\') {
            if (++j >= line.size()) return Bad(line_no, line, "dangling escape");
            if (line[j] == 'n') {
              value += '\n';
            } else if (line[j] == '\\' || line[j] == '"') {
              value += line[j];
            } else {
              return Bad(line_no, line, "unknown escape");
            }
          } else {
            value += line[j];
          }
        }
        if (j >= line.size()) return Bad(line_no, line, "unterminated label value");
        if (!s.labels.emplace(lname, value).second) return Bad(line_no, line, "a label twice");
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) return Bad(line_no, line, "unterminated label set");
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') return Bad(line_no, line, "no value");
    std::string_view value = line.substr(i + 1);
    if (const size_t sp = value.find(' '); sp != std::string_view::npos) value = value.substr(0, sp);  // timestamp
    if (!ParseValue(value, &s.value)) return Bad(line_no, line, "value is not a float");
    const std::string fam = FamilyOf(s.name, families);
    if (finished.count(fam)) return Bad(line_no, line, "the family's samples are not contiguous");
    if (current != fam && !current.empty()) finished.insert(current);
    current = fam;
    if (!seen.emplace(s.name, s.labels).second) return Bad(line_no, line, "the same series twice");
    PromFamily& f = families[fam];
    f.name = fam;
    f.samples.push_back(std::move(s));
  }
  for (const auto& [name, f] : families) {
    if (f.type != "histogram") continue;
    if (absl::Status st = CheckHistogram(f); !st.ok()) return st;
  }
  return families;
}

absl::StatusOr<double> PromValue(const std::map<std::string, PromFamily>& families, const std::string& name,
                                 const std::map<std::string, std::string>& labels) {
  const std::string fam = FamilyOf(name, families);
  auto it = families.find(fam);
  if (it != families.end()) {
    for (const PromSample& s : it->second.samples) {
      if (s.name != name) continue;
      bool all = true;
      for (const auto& [k, v] : labels) {
        auto l = s.labels.find(k);
        if (l == s.labels.end() || l->second != v) all = false;
      }
      if (all) return s.value;
    }
  }
  return absl::NotFoundError(StrCat("no sample ", name));
}

}  // namespace kvcri::testing
