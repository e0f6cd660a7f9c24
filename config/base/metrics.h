// Prometheus metrics: a thread-safe registry of counters, gauges and histograms with labels, written in the text exposition format 0.0.4.
#pragma once

// No Prometheus client library is packaged for Debian 12; this is the small
// part of one the daemon needs. Families are registered once at start-up
// (the returned pointers live as long as the registry); samples are updated
// from any thread. Expose() renders every family in the text format
// (https://prometheus.io/docs/instrumenting/exposition_formats/): HELP and
// TYPE lines, label values escaped, histogram buckets cumulative with an
// "+Inf" bucket equal to _count.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace kvcri::base {

using LabelValues = std::vector<std::string>;

enum class MetricType { kCounter, kGauge, kHistogram };

// One metric family: a name, its label names, and one series per distinct
// label values.
class MetricFamily {
 public:
  MetricFamily(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
               std::vector<double> buckets);

  // Counter: adds `v` (>= 0; a negative value is ignored, counters never go down).
  void Add(const LabelValues& labels, double v = 1);
  // Gauge: sets the value.
  void Set(const LabelValues& labels, double v);
  // Histogram: records one observation.
  void Observe(const LabelValues& labels, double v);
  // Drops every series (a gauge family recomputed at each scrape).
  void Clear();

  const std::string& name() const { return name_; }
  MetricType type() const { return type_; }
  void Write(std::string* out) const;

 private:
  struct Series {
    double value = 0;                 // counter, gauge
    std::vector<uint64_t> counts;     // histogram: per bucket, not cumulative
    uint64_t count = 0;
    double sum = 0;
  };
  Series& Get(const LabelValues& labels) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string name_, help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
  const std::vector<double> buckets_;  // ascending upper bounds, without +Inf
  mutable absl::Mutex mu_;
  std::map<LabelValues, Series> series_ ABSL_GUARDED_BY(mu_);
};

class MetricsRegistry {
 public:
  // InvalidArgument for a name or label name outside Prometheus' rules or
  // histogram buckets not strictly ascending; AlreadyExists for a name
  // registered twice.
  absl::StatusOr<MetricFamily*> Counter(std::string name, std::string help, std::vector<std::string> labels = {});
  absl::StatusOr<MetricFamily*> Gauge(std::string name, std::string help, std::vector<std::string> labels = {});
  absl::StatusOr<MetricFamily*> Histogram(std::string name, std::string help, std::vector<std::string> labels,
                                          std::vector<double> buckets);
  // Every family, in registration order, as exposition text.
  std::string Expose() const;

 private:
  absl::StatusOr<MetricFamily*> Add(std::string name, std::string help, MetricType type,
                                    std::vector<std::string> labels, std::vector<double> buckets);
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<MetricFamily>> families_ ABSL_GUARDED_BY(mu_);
};

// Latency buckets (seconds) for RPCs and VM operations: 1 ms to 5 min.
std::vector<double> DurationBuckets();

// The exposition format's rules, exposed for tests: metric names
// [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* not starting "__".
bool ValidMetricName(std::string_view name);
bool ValidLabelName(std::string_view name);
// A sample value as the format writes it: "+Inf", "-Inf", "NaN" or the
// shortest decimal that reads back as `v`.
std::string FormatMetricValue(double v);

}  // namespace kvcri::base
