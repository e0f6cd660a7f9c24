// MetricsServer: the [metrics] HTTP endpoint, GET /metrics in the Prometheus text format.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "config/base/metrics.h"

namespace kvcri::shim {

// One thread serves one connection at a time: a scrape is small and
// Prometheus scrapes rarely; each connection gets 5 s and a request header of
// at most 8 KiB (Beast's parser), then it is closed. Plain HTTP: the address
// decides who can reach it (docs/operator-guide.md, "Metrics").
class MetricsServer {
 public:
  // `before_scrape` (may be empty) runs before every exposition, to refresh
  // gauges computed from state (Pods by state). `registry` is borrowed.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& address,
                                                              base::MetricsRegistry* registry,
                                                              std::function<void()> before_scrape);
  virtual ~MetricsServer() = default;
  // "http://127.0.0.1:9100" with the bound port.
  virtual std::string BaseUrl() const = 0;
};

}  // namespace kvcri::shim
