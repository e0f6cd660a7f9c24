// MetricsRegistry and MetricFamily: series bookkeeping and the Prometheus text exposition writer.
#include "config/base/metrics.h"

#include <charconv>
#include <cmath>
#include <limits>

#include "config/base/str.h"

namespace kvcri::base {
namespace {

bool NameChar(char c, bool first, bool colon) {
  const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
  return first ? alpha : alpha || (c >= '0' && c <= '9');
}

// HELP text escapes backslash and newline; label values also the double quote.
void Escape(std::string_view s, bool quote, std::string* out) {
  for (char c : s) {
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '\n') {
      *out += "\\n";
    } else if (quote && c == '"') {
      *out += "\\\"";
    } else {
      *out += c;
    }
  }
}

void WriteLabels(const std::vector<std::string>& names, const LabelValues& values, std::string_view extra_name,
                 std::string_view extra_value, std::string* out) {
  if (names.empty() && extra_name.empty()) return;
  *out += '{';
  bool first = true;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!first) *out += ',';
    first = false;
    *out += names[i];
    *out += "=\"";
    Escape(i < values.size() ? values[i] : "", true, out);
    *out += '"';
  }
  if (!extra_name.empty()) {
    if (!first) *out += ',';
    *out += StrCat(extra_name, "=\"", extra_value, "\"");
  }
  *out += '}';
}

}  // namespace

bool ValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!NameChar(name[i], i == 0, true)) return false;
  }
  return true;
}

bool ValidLabelName(std::string_view name) {
  if (name.empty() || name.rfind("__", 0) == 0) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!NameChar(name[i], i == 0, false)) return false;
  }
  return true;
}

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  if (ec != std::errc()) return "NaN";
  return std::string(buf, p);
}

std::vector<double> DurationBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
}

MetricFamily::MetricFamily(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
                           std::vector<double> buckets)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)),
      buckets_(std::move(buckets)) {}

MetricFamily::Series& MetricFamily::Get(const LabelValues& labels) {
  Series& s = series_[labels];
  if (type_ == MetricType::kHistogram && s.counts.empty()) s.counts.assign(buckets_.size(), 0);
  return s;
}

void MetricFamily::Add(const LabelValues& labels, double v) {
  if (!(v >= 0)) return;
  absl::MutexLock l(&mu_);
  Get(labels).value += v;
}

void MetricFamily::Set(const LabelValues& labels, double v) {
  absl::MutexLock l(&mu_);
  Get(labels).value = v;
}

void MetricFamily::Observe(const LabelValues& labels, double v) {
  absl::MutexLock l(&mu_);
  Series& s = Get(labels);
  for (size_t i = 0; i < buckets_.size(); ++i) {
    if (v <= buckets_[i]) {
      ++s.counts[i];
      break;
    }
  }
  ++s.count;
  s.sum += v;
}

void MetricFamily::Clear() {
  absl::MutexLock l(&mu_);
  series_.clear();
}

void MetricFamily::Write(std::string* out) const {
  static constexpr const char* kTypeNames[] = {"counter", "gauge", "histogram"};
  *out += StrCat("# HELP ", name_, " ");
  Escape(help_, false, out);
  *out += StrCat("\n# TYPE ", name_, " ", kTypeNames[static_cast<int>(type_)], "\n");
  absl::MutexLock l(&mu_);
  for (const auto& [labels, s] : series_) {
    if (type_ != MetricType::kHistogram) {
      *out += name_;
      WriteLabels(label_names_, labels, "", "", out);
      *out += StrCat(" ", FormatMetricValue(s.value), "\n");
      continue;
    }
    uint64_t cumulative = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      cumulative += s.counts[i];
      *out += StrCat(name_, "_bucket");
      WriteLabels(label_names_, labels, "le", FormatMetricValue(buckets_[i]), out);
      *out += StrCat(" ", cumulative, "\n");
    }
    *out += StrCat(name_, "_bucket");
    WriteLabels(label_names_, labels, "le", "+Inf", out);
    *out += StrCat(" ", s.count, "\n", name_, "_sum");
    WriteLabels(label_names_, labels, "", "", out);
    *out += StrCat(" ", FormatMetricValue(s.sum), "\n", name_, "_count");
    WriteLabels(label_names_, labels, "", "", out);
    *out += StrCat(" ", s.count, "\n");
  }
}

absl::StatusOr<MetricFamily*> MetricsRegistry::Counter(std::string name, std::string help,
                                                       std::vector<std::string> labels) {
  return Add(std::move(name), std::move(help), MetricType::kCounter, std::move(labels), {});
}

absl::StatusOr<MetricFamily*> MetricsRegistry::Gauge(std::string name, std::string help,
                                                     std::vector<std::string> labels) {
  return Add(std::move(name), std::move(help), MetricType::kGauge, std::move(labels), {});
}

absl::StatusOr<MetricFamily*> MetricsRegistry::Histogram(std::string name, std::string help,
                                                         std::vector<std::string> labels, std::vector<double> buckets) {
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (!std::isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
      return absl::InvalidArgumentError(StrCat("metric \"", name, "\": buckets must be finite and strictly ascending"));
    }
  }
  for (const std::string& l : labels) {
    if (l == "le") return absl::InvalidArgumentError(StrCat("metric \"", name, "\": \"le\" is the bucket label"));
  }
  return Add(std::move(name), std::move(help), MetricType::kHistogram, std::move(labels), std::move(buckets));
}

absl::StatusOr<MetricFamily*> MetricsRegistry::Add(std::string name, std::string help, MetricType type,
                                                   std::vector<std::string> labels, std::vector<double> buckets) {
  if (!ValidMetricName(name)) return absl::InvalidArgumentError(StrCat("\"", name, "\" is not a valid metric name"));
  for (const std::string& l : labels) {
    if (!ValidLabelName(l)) {
      return absl::InvalidArgumentError(StrCat("metric \"", name, "\": \"", l, "\" is not a valid label name"));
    }
  }
  absl::MutexLock l(&mu_);
  for (const auto& f : families_) {
    if (f->name() == name) return absl::AlreadyExistsError(StrCat("metric \"", name, "\" is registered twice"));
  }
  families_.push_back(
      std::make_unique<MetricFamily>(std::move(name), std::move(help), type, std::move(labels), std::move(buckets)));
  return families_.back().get();
}

std::string MetricsRegistry::Expose() const {
  std::string out;
  absl::MutexLock l(&mu_);
  for (const auto& f : families_) f->Write(&out);
  return out;
}

}  // namespace kvcri::base
