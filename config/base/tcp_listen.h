// ListenTcp: a non-blocking listening TCP socket on a numeric IPv4/IPv6 host and port, and the "host:port" it got.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "config/base/unique_fd.h"

namespace kvcri::base {

struct TcpListener {
  UniqueFd fd;          // non-blocking, close-on-exec, listening
  uint16_t port = 0;    // the bound port (port 0 asked for any)
  std::string authority;  // "127.0.0.1:40123", "[::1]:40123"
};

// `host` is a numeric address (IPv6 without brackets, which is IPv6-only);
// `what` names the server in errors ("streaming": "bind streaming address
// \"<address>\": ..."), `address` is what the operator wrote.
absl::StatusOr<TcpListener> ListenTcp(const std::string& host, uint16_t port, std::string_view address,
                                      std::string_view what, int backlog);

}  // namespace kvcri::base
