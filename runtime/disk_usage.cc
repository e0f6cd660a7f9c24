// DirDiskUsage and MountPointOf: lstat walks over a container directory, bounded in entries.
#include "runtime/disk_usage.h"

#include <sys/stat.h>

#include <system_error>

#include "absl/time/clock.h"
#include "config/base/str.h"

namespace kvcri::runtime {

namespace fs = std::filesystem;
using base::StrCat;

absl::StatusOr<std::string> MountPointOf(const fs::path& path) {
  std::error_code ec;
  fs::path p = fs::absolute(path, ec).lexically_normal();
  if (ec) return absl::InvalidArgumentError(StrCat("path \"", path.string(), "\": ", ec.message()));
  struct stat st;
  if (::stat(p.c_str(), &st) != 0) return absl::ErrnoToStatus(errno, StrCat("stat \"", p.string(), "\""));
  const dev_t dev = st.st_dev;
  while (p.has_relative_path()) {
    fs::path parent = p.parent_path();
    struct stat pst;
    if (::stat(parent.c_str(), &pst) != 0 || pst.st_dev != dev) break;
    p = parent;
  }
  return p.string();
}

absl::StatusOr<DiskUsage> DirDiskUsage(const fs::path& dir) {
  DiskUsage u;
  u.timestamp = absl::Now();
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) return absl::ErrnoToStatus(errno, StrCat("lstat \"", dir.string(), "\""));
  const dev_t dev = st.st_dev;
  u.used_bytes = static_cast<uint64_t>(st.st_blocks) * 512;
  u.inodes_used = 1;
  if (S_ISDIR(st.st_mode)) {
    std::error_code ec;
    fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
    if (ec) return absl::InternalError(StrCat("list \"", dir.string(), "\": ", ec.message()));
    size_t seen = 0;
    for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec || ++seen > kMaxDiskUsageEntries) break;
      struct stat est;
      if (::lstat(it->path().c_str(), &est) != 0) continue;  // removed while we walk
      if (est.st_dev != dev) {
        it.disable_recursion_pending();  // a mount below: not this file system's
        continue;
      }
      u.used_bytes += static_cast<uint64_t>(est.st_blocks) * 512;
      ++u.inodes_used;
    }
  }
  absl::StatusOr<std::string> mp = MountPointOf(dir);
  if (!mp.ok()) return mp.status();
  u.mountpoint = std::move(*mp);
  return u;
}

}  // namespace kvcri::runtime
