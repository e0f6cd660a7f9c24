// UpstreamClient: the channel to the node's container runtime, forwarded and merged calls.
#include "cri/upstream_client.h"

#include <chrono>

#include "config/base/log.h"
#include "config/base/str.h"

namespace kvcri::cri {

using base::StrCat;

UpstreamClient::UpstreamClient(std::string endpoint, absl::Duration merge_timeout)
    : endpoint_(std::move(endpoint)), merge_timeout_(merge_timeout) {
  grpc::ChannelArguments args;
  // gRPC's default backoff grows to two minutes; a containerd restart should
  // be noticed within a second.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Same limits as our server: kubelet's large List* answers pass through.
  args.SetMaxReceiveMessageSize(16 << 20);
  args.SetMaxSendMessageSize(16 << 20);
  channel_ = grpc::CreateCustomChannel(endpoint_, grpc::InsecureChannelCredentials(), args);
  runtime_ = pb::RuntimeService::NewStub(channel_);
  images_ = pb::ImageService::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> UpstreamClient::Forwarded(const grpc::ServerContext* caller) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (caller != nullptr && caller->deadline() != std::chrono::system_clock::time_point::max()) {
    ctx->set_deadline(caller->deadline());
  }
  return ctx;
}

std::unique_ptr<grpc::ClientContext> UpstreamClient::Merged(const grpc::ServerContext* caller) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  auto deadline = absl::ToChronoTime(absl::Now() + merge_timeout_);
  if (caller != nullptr && caller->deadline() < deadline) deadline = caller->deadline();
  ctx->set_deadline(deadline);
  return ctx;
}

void UpstreamClient::Observe(const grpc::Status& s, std::string_view rpc) {
  const bool down = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                    s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
  if (down_.exchange(down) == down) return;
  if (down) {
    base::LogWarn("upstream CRI endpoint unavailable; container Pods are missing from merged answers",
                  {{"endpoint", endpoint_}, {"rpc", std::string(rpc)}, {"error", s.error_message()}});
  } else {
    base::LogInfo("upstream CRI endpoint reachable", {{"endpoint", endpoint_}});
  }
}

grpc::Status UpstreamClient::Annotate(const grpc::Status& s, std::string_view rpc) {
  Observe(s, rpc);
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return grpc::Status(s.error_code(), StrCat("upstream CRI endpoint \"", endpoint_, "\" is unavailable (", rpc,
                                                 "): ", s.error_message()));
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return grpc::Status(s.error_code(), StrCat("upstream CRI endpoint \"", endpoint_, "\" did not answer ", rpc,
                                                 " in time: ", s.error_message()));
    default:
      return s;
  }
}

}  // namespace kvcri::cri
