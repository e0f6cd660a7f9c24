// Socket path preparation (stale sockets removed, live daemons refused) and socket mode.
#include "shim/socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "config/base/str.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/unique_fd.h"

namespace kvcri::shim {

absl::Status PrepareSocketPath(const std::filesystem::path& path) {
  sockaddr_un addr{};
  if (path.string().size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(base::StrCat("socket path \"", path.string(), "\" is longer than ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  }
  RETURN_IF_ERROR(base::MakeDirs(path.parent_path(), 0755));
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::ErrnoToStatus(errno, base::StrCat("stat \"", path.string(), "\""));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        base::StrCat("listen path \"", path.string(), "\" exists and is not a socket; not removing it"));
  }
  base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket");
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    return absl::AlreadyExistsError(
        base::StrCat("another process is serving on \"", path.string(), "\"; is kubevirt-cri already running?"));
  }
  if (errno != ECONNREFUSED && errno != ENOENT) {
    return absl::ErrnoToStatus(errno, base::StrCat("probe socket \"", path.string(), "\""));
  }
  base::LogInfo("removing stale socket", {{"path", path.string()}});
  return base::RemoveFile(path);
}

absl::Status SetSocketMode(const std::filesystem::path& path, mode_t mode) {
  if (::chmod(path.c_str(), mode) != 0) {
    return absl::ErrnoToStatus(errno, base::StrCat("chmod \"", path.string(), "\""));
  }
  return absl::OkStatus();
}

}  // namespace kvcri::shim
