// Port-forward plumbing: the Pod side of one forwarded connection (kvcri-agent or TCP to the Pod IP) and the copy both ways.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cri/streaming/stream_io.h"
#include "runtime/agent/agent_client.h"

namespace kvcri::cri {

// The Pod's end of one forwarded connection.
class PodConnection {
 public:
  virtual ~PodConnection() = default;
  virtual absl::StatusOr<size_t> Read(char* buf, size_t len) = 0;  // 0: the Pod closed its write half
  virtual absl::Status Write(std::string_view data) = 0;
  virtual absl::Status CloseWrite() = 0;  // half-close toward the Pod
  // Ends the connection both ways and wakes a blocked Read (returns 0 or an
  // error); from any thread.
  virtual void Abort() = 0;
};

// A TCP connection from the daemon's (the host's) network namespace to
// `ip`:`port`; Unavailable naming the address when it cannot be made within
// `timeout`.
absl::StatusOr<std::unique_ptr<PodConnection>> DialPodTcp(const std::string& ip, uint16_t port,
                                                          absl::Duration timeout);

// A connection kvcri-agent made to the guest's 127.0.0.1:<port>.
std::unique_ptr<PodConnection> WrapAgentPort(std::unique_ptr<runtime::agent::PortConnection> conn);

// Copies client → Pod and Pod → client until both directions ended, passing
// each end of stream on as a half-close. When either direction fails, the
// other is stopped at once (the Pod side aborted, the client's reads
// cancelled) and the first error is returned, naming its direction.
absl::Status CopyBothWays(streaming::ByteStream& client, PodConnection& pod);

}  // namespace kvcri::cri
