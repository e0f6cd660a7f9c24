// RpcMetrics: a gRPC server interceptor counting CRI calls by method and code, with latency histograms.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "config/base/metrics.h"

namespace kvcri::cri {

// kvcri_cri_requests_total{method,code} and
// kvcri_cri_request_duration_seconds{method}: method is the gRPC full name
// ("/runtime.v1.RuntimeService/RunPodSandbox"), code the gRPC code's name.
// A method outside runtime.v1 is counted as "other", so the series stay
// bounded whatever clients send.
class RpcMetrics {
 public:
  static absl::StatusOr<std::unique_ptr<RpcMetrics>> Create(base::MetricsRegistry* registry);
  // For grpc::ServerBuilder::experimental().SetInterceptorCreators.
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> InterceptorFactories();

  base::MetricFamily* requests() const { return requests_; }
  base::MetricFamily* durations() const { return durations_; }

 private:
  base::MetricFamily* requests_ = nullptr;
  base::MetricFamily* durations_ = nullptr;
};

// "OK", "NOT_FOUND", ... as gRPC names its codes.
const char* GrpcCodeName(grpc::StatusCode code);

}  // namespace kvcri::cri
