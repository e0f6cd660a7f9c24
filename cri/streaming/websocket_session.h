// The Kubernetes channel protocol over WebSocket (wsstream): remotecommand v1-v5 and port-forward v4 sessions.
#pragma once

// Internal to the streaming server (includes Boost.Beast). A message's first
// byte names its channel (base64 variants: the ASCII digit, the rest base64);
// remotecommand channels are 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize,
// and v5 adds the close message (255, channel) that ends a channel's input.
// Port-forward gives port i the channels 2i (data) and 2i+1 (error), each
// opened by the server with the port as two little-endian bytes.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/websocket/stream.hpp>

#include "cri/streaming/stream_io.h"

namespace kvcri::streaming {

using HttpStream = boost::beast::basic_stream<boost::asio::generic::stream_protocol>;
using WsStream = boost::beast::websocket::stream<HttpStream>;

struct WsChannelProtocol {
  std::string name;  // as negotiated; "" when the client offered none
  bool base64 = false;
  bool v5 = false;           // the close message (255)
  bool status_json = false;  // v4+: metav1.Status on the error channel
};

// kubelet's choice: the client's offers in its order, the first we speak;
// no offer at all means "" (binary, legacy status). nullopt: none in common.
std::optional<WsChannelProtocol> NegotiateRemoteCommandProtocol(const std::vector<std::string>& offers);
std::optional<WsChannelProtocol> NegotiatePortForwardProtocol(const std::vector<std::string>& offers);
// What we speak, for the 403 message.
std::string RemoteCommandWsProtocols();
std::string PortForwardWsProtocols();

using RemoteCommandTarget = std::variant<ExecSpec, AttachSpec>;

// Each runs one session on an accepted WebSocket until it ends, driving
// `ioc` on the calling thread; the backend runs on threads of the session.
void ServeWebSocketRemoteCommand(WsStream& ws, boost::asio::io_context& ioc, const WsChannelProtocol& protocol,
                                 const RemoteCommandTarget& target, StreamingBackend* backend,
                                 const StreamLimits& limits);
// `ports` come from the request's ?port= parameters, in order.
void ServeWebSocketPortForward(WsStream& ws, boost::asio::io_context& ioc, const WsChannelProtocol& protocol,
                               const std::string& pod_sandbox_id, const std::vector<uint16_t>& ports,
                               StreamingBackend* backend, const StreamLimits& limits);

}  // namespace kvcri::streaming
