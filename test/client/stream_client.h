// Test clients for the streaming server: remotecommand (exec, attach) and port-forward over SPDY/3.1 or WebSocket, as kubectl/crictl speak them.
#pragma once

// Implemented in spdy_client.cc (SPDY/3.1, with cri/streaming's frame codec)
// and ws_client.cc (WebSocket with Boost.Beast). Blocking, for tests only.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "config/base/unique_fd.h"

namespace kvcri::testing {

struct RemoteCommandOptions {
  bool stdin = false;
  bool stdout = true;
  bool stderr = true;
  bool tty = false;
  // Offered subprotocols, preferred first; empty: the newest the transport
  // has (SPDY: v4.channel.k8s.io ... channel.k8s.io; WebSocket:
  // v5.channel.k8s.io, v4.channel.k8s.io).
  std::vector<std::string> protocols;
  // https URLs: the CA (PEM) that signed the server's certificate.
  std::string tls_ca_file;
};

struct RemoteCommandResult {
  std::string stdout_data, stderr_data;
  std::string protocol;     // negotiated
  std::string error_text;   // what the error stream carried (v4+: the status JSON)
  int exit_code = 0;        // from a v4+ status; 0 on Success
  bool success = false;     // v4+: status "Success"; v1-v3: empty error stream
};

class RemoteCommandClient {
 public:
  virtual ~RemoteCommandClient() = default;
  virtual std::string protocol() const = 0;
  virtual absl::Status WriteStdin(std::string_view data) = 0;
  virtual absl::Status CloseStdin() = 0;  // SPDY: FIN on stdin; WebSocket v5: the close message
  virtual absl::Status Resize(uint16_t width, uint16_t height) = 0;
  // Reads stdout until it contains `needle` (returns all stdout read so far,
  // which then no longer counts for Wait's stdout_data) or `timeout` passes.
  virtual absl::StatusOr<std::string> ReadStdoutUntil(std::string_view needle, absl::Duration timeout) = 0;
  // Waits for the end of the session: the remaining output and the status.
  virtual absl::StatusOr<RemoteCommandResult> Wait(absl::Duration timeout) = 0;
};

absl::StatusOr<std::unique_ptr<RemoteCommandClient>> OpenSpdyRemoteCommand(const std::string& url,
                                                                          const RemoteCommandOptions& options);
absl::StatusOr<std::unique_ptr<RemoteCommandClient>> OpenWebSocketRemoteCommand(const std::string& url,
                                                                                const RemoteCommandOptions& options);

// One forwarded TCP connection.
class ForwardedConnection {
 public:
  virtual ~ForwardedConnection() = default;
  virtual absl::Status Write(std::string_view data) = 0;
  virtual absl::Status CloseWrite() = 0;
  // 0 at the end of the stream; an error carries what the server's error
  // stream/channel said (e.g. "connection refused").
  virtual absl::StatusOr<size_t> Read(char* buf, size_t len) = 0;
};

class PortForwardClient {
 public:
  virtual ~PortForwardClient() = default;
  // SPDY: a new error+data stream pair (a new requestID) on the one
  // connection; many may be open at once. WebSocket: the port must be one of
  // those given to Open, one connection each.
  virtual absl::StatusOr<std::unique_ptr<ForwardedConnection>> Connect(uint16_t port) = 0;
};

absl::StatusOr<std::unique_ptr<PortForwardClient>> OpenSpdyPortForward(const std::string& url,
                                                                      const std::string& tls_ca_file = "");
absl::StatusOr<std::unique_ptr<PortForwardClient>> OpenWebSocketPortForward(const std::string& url,
                                                                            const std::vector<uint16_t>& ports,
                                                                            const std::string& tls_ca_file = "");

// For hostile-client tests: sends the SPDY upgrade request for `url` offering
// `protocol` and returns the raw connection after a 101 (anything else: an
// error naming the HTTP status, which also lands in *http_status).
absl::StatusOr<base::UniqueFd> UpgradeSpdyRaw(const std::string& url, const std::string& protocol, int* http_status);

}  // namespace kvcri::testing
