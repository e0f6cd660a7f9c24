// UpstreamClient: the gRPC channel to the node's container runtime for non-VM RuntimeClasses.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "cri/proto/api.grpc.pb.h"

namespace kvcri::cri {

namespace pb = ::runtime::v1;

// The gRPC channel to the node's container runtime (containerd, CRI-O), which
// serves every RuntimeClass that is not a VM handler.
//
// One channel for the daemon's lifetime: gRPC reconnects by itself when the
// upstream restarts. The reconnect backoff is capped at one second so that a
// restarted containerd is back in our answers within a second, without a
// restart of ours. Calls never wait for the channel to become ready: while the
// upstream is down they fail at once with UNAVAILABLE naming the endpoint.
class UpstreamClient {
 public:
  // `endpoint` is a gRPC target, "unix:///run/containerd/containerd.sock".
  // `merge_timeout` caps the wait in merged reads (Merged context).
  UpstreamClient(std::string endpoint, absl::Duration merge_timeout);
  UpstreamClient(const UpstreamClient&) = delete;
  UpstreamClient& operator=(const UpstreamClient&) = delete;

  const std::string& endpoint() const { return endpoint_; }
  pb::RuntimeService::StubInterface& runtime() { return *runtime_; }
  pb::ImageService::StubInterface& images() { return *images_; }

  // A client context for a call forwarded on behalf of `caller` (may be null):
  // the caller's deadline, if any, and nothing else.
  std::unique_ptr<grpc::ClientContext> Forwarded(const grpc::ServerContext* caller) const;
  // For the upstream half of a merged read: the caller's deadline, capped at
  // `merge_timeout`, so a hung upstream cannot stall the VM side's answer.
  std::unique_ptr<grpc::ClientContext> Merged(const grpc::ServerContext* caller) const;

  // The upstream's answer as ours. Codes are kept (kubelet relies on NOT_FOUND
  // and friends); UNAVAILABLE and DEADLINE_EXCEEDED, which mean the upstream
  // itself is unreachable or hung, get a message naming the endpoint.
  // Also notes whether the upstream is reachable (Observe).
  grpc::Status Annotate(const grpc::Status& s, std::string_view rpc);
  // Logs once per change when the upstream goes away or comes back, so a
  // kubelet polling List* every second does not flood the log.
  void Observe(const grpc::Status& s, std::string_view rpc);

  // Forwards one unary call: `method` is a Stub member, e.g.
  // &pb::RuntimeService::StubInterface::StopPodSandbox.
  template <typename Stub, typename Req, typename Resp>
  grpc::Status Call(Stub& stub, grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                    std::string_view rpc, const grpc::ServerContext* caller, const Req& req, Resp* resp) {
    std::unique_ptr<grpc::ClientContext> ctx = Forwarded(caller);
    return Annotate((stub.*method)(ctx.get(), req, resp), rpc);
  }

 private:
  const std::string endpoint_;
  const absl::Duration merge_timeout_;
  std::atomic<bool> down_{false};
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::RuntimeService::StubInterface> runtime_;
  std::unique_ptr<pb::ImageService::StubInterface> images_;
};

}  // namespace kvcri::cri
