// RpcMetrics: the interceptor notes the start time, and at PRE_SEND_STATUS counts the call and observes its latency.
#include "cri/rpc_metrics.h"

#include <grpcpp/support/interceptor.h>

#include <string>

#include "absl/time/clock.h"

namespace kvcri::cri {
namespace {

class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(const RpcMetrics* m, std::string method) : m_(m), method_(std::move(method)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status s = methods->GetSendStatus();
      m_->requests()->Add({method_, GrpcCodeName(s.error_code())});
      m_->durations()->Observe({method_}, absl::ToDoubleSeconds(absl::Now() - start_));
    }
    methods->Proceed();
  }

 private:
  const RpcMetrics* const m_;
  const std::string method_;
  const absl::Time start_ = absl::Now();
};

class RpcMetricsFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsFactory(const RpcMetrics* m) : m_(m) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    // Bounded labels whatever a client sends: our services' methods by name.
    std::string method = info->method() != nullptr ? info->method() : "";
    if (method.rfind("/runtime.v1.", 0) != 0) method = "other";
    return new RpcMetricsInterceptor(m_, std::move(method));
  }

 private:
  const RpcMetrics* const m_;
};

}  // namespace

const char* GrpcCodeName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < static_cast<int>(std::size(kNames)) ? kNames[i] : "UNKNOWN";
}

absl::StatusOr<std::unique_ptr<RpcMetrics>> RpcMetrics::Create(base::MetricsRegistry* registry) {
  auto m = std::make_unique<RpcMetrics>();
  absl::StatusOr<base::MetricFamily*> req =
      registry->Counter("kvcri_cri_requests_total", "CRI calls answered, by gRPC method and status code.",
                        {"method", "code"});
  if (!req.ok()) return req.status();
  absl::StatusOr<base::MetricFamily*> dur =
      registry->Histogram("kvcri_cri_request_duration_seconds", "Time from a CRI call's arrival to its answer.",
                          {"method"}, base::DurationBuckets());
  if (!dur.ok()) return dur.status();
  m->requests_ = *req;
  m->durations_ = *dur;
  return m;
}

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> RpcMetrics::InterceptorFactories() {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> out;
  out.push_back(std::make_unique<RpcMetricsFactory>(this));
  return out;
}

}  // namespace kvcri::cri
