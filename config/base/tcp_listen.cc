// ListenTcp: numeric address to sockaddr, bind, listen, and the port the kernel chose.
#include "config/base/tcp_listen.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>

#include "config/base/str.h"

namespace kvcri::base {

absl::StatusOr<TcpListener> ListenTcp(const std::string& host, uint16_t port, std::string_view address,
                                      std::string_view what, int backlog) {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  const bool v6 = host.find(':') != std::string::npos;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    if (inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) {
      return absl::InvalidArgumentError(StrCat(what, " address \"", address, "\": bad IPv6 address"));
    }
    addr_len = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) {
      return absl::InvalidArgumentError(StrCat(what, " address \"", address, "\": bad IPv4 address"));
    }
    addr_len = sizeof(sockaddr_in);
  }
  TcpListener l;
  l.fd.Reset(socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!l.fd.valid()) return absl::ErrnoToStatus(errno, StrCat(what, " server socket"));
  int one = 1;
  setsockopt(l.fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (v6) setsockopt(l.fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(l.fd.get(), reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("bind ", what, " address \"", address, "\""));
  }
  if (listen(l.fd.get(), backlog) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("listen on ", what, " address \"", address, "\""));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (getsockname(l.fd.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("getsockname of the ", what, " server"));
  }
  l.port = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                    : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  l.authority = StrCat(v6 ? "[" : "", host, v6 ? "]" : "", ":", l.port);
  return l;
}

}  // namespace kvcri::base
