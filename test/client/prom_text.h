// A strict parser of the Prometheus text exposition format for tests: checks the format's rules and returns the samples.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvcri::testing {

struct PromSample {
  std::string name;  // as written, e.g. "x_bucket"
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct PromFamily {
  std::string name, type, help;
  std::vector<PromSample> samples;
};

// Rules checked (https://prometheus.io/docs/instrumenting/exposition_formats/):
// every line is a HELP, TYPE or sample line ending in '\n'; a family's HELP
// and TYPE come once, before its samples, and its samples are contiguous;
// names and label names are valid; label values are quoted with only \\, \"
// and \n escapes; values are floats, +Inf, -Inf or NaN; no series twice;
// histograms have cumulative, non-decreasing buckets ending in le="+Inf"
// equal to _count, and a _sum. InvalidArgument names the line.
absl::StatusOr<std::map<std::string, PromFamily>> ParsePromText(std::string_view text);

// The value of the sample `name` whose labels include every pair of `labels`;
// NotFound when none matches.
absl::StatusOr<double> PromValue(const std::map<std::string, PromFamily>& families, const std::string& name,
                                 const std::map<std::string, std::string>& labels = {});

}  // namespace kvcri::testing
