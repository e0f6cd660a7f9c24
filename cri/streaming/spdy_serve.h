// Serves one upgraded SPDY/3.1 connection: the remotecommand (exec, attach) and portforward.k8s.io protocols.
#pragma once

#include <string>
#include <variant>

#include "config/base/unique_fd.h"
#include "cri/streaming/stream_io.h"

namespace kvcri::streaming {

struct SpdyExecTarget {
  ExecSpec spec;
  std::string protocol;  // negotiated: "v4.channel.k8s.io", ..., "channel.k8s.io"
};
struct SpdyAttachTarget {
  AttachSpec spec;
  std::string protocol;
};
struct SpdyPortForwardTarget {
  PortForwardSpec spec;  // protocol "portforward.k8s.io"
};
using SpdyTarget = std::variant<SpdyExecTarget, SpdyAttachTarget, SpdyPortForwardTarget>;

// The remotecommand protocols we speak over SPDY, most preferred first.
inline constexpr const char* kSpdyRemoteCommandProtocols[] = {"v4.channel.k8s.io", "v3.channel.k8s.io",
                                                              "v2.channel.k8s.io", "channel.k8s.io"};
inline constexpr char kPortForwardProtocol[] = "portforward.k8s.io";

// Runs the SPDY session on `fd` (the HTTP server already sent 101 Switching
// Protocols with the negotiated X-Stream-Protocol-Version) until it ends.
// `already_read` holds bytes the HTTP parser read past the request. Blocks;
// the caller gives each connection a thread. A malformed frame, an oversized
// header block or frame, or a window overflow ends this connection only.
void ServeSpdyConnection(base::UniqueFd fd, std::string already_read, const SpdyTarget& target,
                         StreamingBackend* backend, const StreamLimits& limits);

}  // namespace kvcri::streaming
