// The CRI streaming server: single-use URLs for Exec, Attach and PortForward, served over HTTP(S) with SPDY/3.1 and WebSocket.
#pragma once

// Exec/Attach/PortForward RPCs do not stream over gRPC: they return a URL
// (http(s)://<address>/exec/<token>, /attach/<token>, /portforward/<token>)
// that kubelet proxies the client's upgrade request to, unchanged. A token is
// random, used once, and expires (kubelet's own cache: one minute); an unknown,
// used or expired token gets 404 and nothing runs.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cri/streaming/stream_io.h"

namespace kvcri::base {
class Clock;
}  // namespace kvcri::base

namespace kvcri::streaming {

struct StreamingServerOptions {
  // "host:port"; port 0 picks a free one (what containerd does). IPv6 as
  // "[::1]:0".
  std::string address = "127.0.0.1:0";
  // Both set: HTTPS with this PEM certificate chain and key; both empty: HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  absl::Duration token_ttl = absl::Minutes(1);
  size_t max_pending_tokens = 1000;  // kubelet's cache bound; more: ResourceExhausted
  size_t max_connections = 256;      // concurrent streaming connections
  StreamLimits limits;
  // Token expiry; null: a real clock. Not owned.
  base::Clock* clock = nullptr;
};

class StreamingServer {
 public:
  // Binds and starts serving; `backend` (not owned) must outlive the server.
  static absl::StatusOr<std::unique_ptr<StreamingServer>> Start(const StreamingServerOptions& options,
                                                                StreamingBackend* backend);
  virtual ~StreamingServer() = default;

  // The URL for one use of `spec`; ResourceExhausted when too many are pending.
  virtual absl::StatusOr<std::string> PrepareExec(const ExecSpec& spec) = 0;
  virtual absl::StatusOr<std::string> PrepareAttach(const AttachSpec& spec) = 0;
  virtual absl::StatusOr<std::string> PreparePortForward(const PortForwardSpec& spec) = 0;
  // "http://127.0.0.1:40123" (the bound port), for logs and Status verbose info.
  virtual std::string BaseUrl() const = 0;
  // Stops accepting, closes every connection, joins the threads. Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace kvcri::streaming
