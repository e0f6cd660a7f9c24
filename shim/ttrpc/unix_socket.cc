// ListenUnix, ConnectUnix and UnixSocketAnswers (unix_socket.h).
#include "shim/ttrpc/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "config/base/str.h"

namespace kvcri::shim::ttrpc {
namespace {

absl::StatusOr<sockaddr_un> AddressOf(std::string_view path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(base::StrCat("unix socket path \"", path, "\" is empty or longer than ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

}  // namespace

absl::StatusOr<base::UniqueFd> ListenUnix(std::string_view path, mode_t mode) {
  absl::StatusOr<sockaddr_un> addr = AddressOf(path);
  if (!addr.ok()) return addr.status();
  base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket(AF_UNIX)");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) < 0) {
    if (errno == EADDRINUSE) return absl::AlreadyExistsError(base::StrCat("\"", path, "\" is already bound"));
    return absl::ErrnoToStatus(errno, base::StrCat("bind \"", path, "\""));
  }
  std::string p(path);
  if (::chmod(p.c_str(), mode) < 0) return absl::ErrnoToStatus(errno, base::StrCat("chmod \"", path, "\""));
  if (::listen(fd.get(), 64) < 0) return absl::ErrnoToStatus(errno, base::StrCat("listen on \"", path, "\""));
  return fd;
}

absl::StatusOr<base::UniqueFd> ConnectUnix(std::string_view path) {
  absl::StatusOr<sockaddr_un> addr = AddressOf(path);
  if (!addr.ok()) return addr.status();
  base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket(AF_UNIX)");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    return absl::UnavailableError(base::StrCat("connect to \"", path, "\": ", std::strerror(errno)));
  }
  return fd;
}

bool UnixSocketAnswers(std::string_view path) { return ConnectUnix(path).ok(); }

}  // namespace kvcri::shim::ttrpc
