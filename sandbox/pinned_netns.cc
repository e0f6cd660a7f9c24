// PinnedNetnsManager: network namespaces pinned by bind mounts under the state directory.
#include "sandbox/pinned_netns.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <thread>

#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"
#include "sandbox/records.h"

namespace kvcri::sandbox {
namespace fs = std::filesystem;
using base::StrCat;

namespace {

absl::Status Errno(int err, std::string_view op, const fs::path& path) {
  return absl::ErrnoToStatus(err, StrCat(op, " \"", path.string(), "\""));
}

absl::Status CheckId(std::string_view id) {
  if (IsValidId(id)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      StrCat("netns ID \"", id, "\" is not ", kIdLength, " lowercase hex characters"));
}

}  // namespace

PinnedNetnsManager::PinnedNetnsManager(const fs::path& state_dir, PinnedNetnsOptions options)
    : dir_(state_dir / "netns"), options_(options) {}

fs::path PinnedNetnsManager::Path(std::string_view id) const { return dir_ / std::string(id); }

absl::Status PinnedNetnsManager::PrepareDir() {
  absl::MutexLock lock(&mu_);
  if (dir_ready_) return absl::OkStatus();
  RETURN_IF_ERROR(base::MakeDirs(dir_, 0755));
  if (options_.make_dir_shared) {
    // iproute2's netns_add: EINVAL means "not a mount point", so bind the
    // directory onto itself once and retry.
    bool bound = false;
    while (::mount("", dir_.c_str(), "none", MS_SHARED | MS_REC, nullptr) != 0) {
      if (errno != EINVAL || bound) return Errno(errno, "make shared mount", dir_);
      if (::mount(dir_.c_str(), dir_.c_str(), "none", MS_BIND | MS_REC, nullptr) != 0) {
        return Errno(errno, "bind-mount onto itself", dir_);
      }
      bound = true;
    }
  }
  dir_ready_ = true;
  return absl::OkStatus();
}

absl::StatusOr<fs::path> PinnedNetnsManager::Create(std::string_view id) {
  RETURN_IF_ERROR(CheckId(id));
  RETURN_IF_ERROR(PrepareDir());
  const fs::path path = Path(id);
  ASSIGN_OR_RETURN(bool pinned, Exists(id));
  if (pinned) {
    return absl::AlreadyExistsError(StrCat("network namespace \"", path.string(), "\" already exists"));
  }
  // An unmounted file here is a leftover of a crash before the mount; reuse it.
  {
    base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444));
    if (!fd.valid()) return Errno(errno, "create netns mount point", path);
  }
  base::Rollback undo;
  undo.Add("remove netns mount point", [path] { return base::RemoveFile(path); });

  // unshare affects only the calling thread, so a thread that exists for this
  // alone: it enters the new namespace, pins it, and ends. No thread of ours
  // lives on in a namespace it was not born in.
  absl::Status result;
  std::thread pinner([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      result = absl::ErrnoToStatus(errno, "unshare(CLONE_NEWNET)");
      return;
    }
    std::string self = StrCat("/proc/self/task/", ::gettid(), "/ns/net");
    if (::mount(self.c_str(), path.c_str(), "none", MS_BIND, nullptr) != 0) {
      result = absl::ErrnoToStatus(errno, StrCat("bind-mount \"", self, "\" onto \"", path.string(), "\""));
    }
  });
  pinner.join();
  RETURN_IF_ERROR(result);
  undo.Dismiss();
  base::LogDebug("network namespace pinned", {{"id", std::string(id)}, {"path", path.string()}});
  return path;
}

absl::Status PinnedNetnsManager::Remove(std::string_view id) {
  RETURN_IF_ERROR(CheckId(id));
  const fs::path path = Path(id);
  // Loop: a pin mounted twice (stacked) needs two unmounts before unlink works.
  for (int i = 0; i < 8; ++i) {
    if (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) continue;
    if (errno == EINVAL || errno == ENOENT) break;  // not a mount point / missing
    return Errno(errno, "unmount network namespace", path);
  }
  RETURN_IF_ERROR(base::RemoveFile(path));
  base::LogDebug("network namespace removed", {{"id", std::string(id)}, {"path", path.string()}});
  return absl::OkStatus();
}

absl::StatusOr<bool> IsNetworkNamespace(const fs::path& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    return Errno(errno, "statfs", path);
  }
  return st.f_type == static_cast<decltype(st.f_type)>(NSFS_MAGIC);
}

absl::StatusOr<bool> PinnedNetnsManager::Exists(std::string_view id) const {
  RETURN_IF_ERROR(CheckId(id));
  return IsNetworkNamespace(Path(id));
}

absl::StatusOr<std::vector<PinnedNetns>> PinnedNetnsManager::ListPinned() const {
  std::vector<PinnedNetns> out;
  std::error_code ec;
  fs::directory_iterator it(dir_, ec);
  if (ec == std::errc::no_such_file_or_directory) return out;
  if (ec) return Errno(ec.value(), "open directory", dir_);
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return Errno(ec.value(), "read directory", dir_);
    std::string name = it->path().filename().string();
    if (!IsValidId(name)) continue;
    ASSIGN_OR_RETURN(bool mounted, Exists(name));
    out.push_back({name, it->path(), mounted});
  }
  if (ec) return Errno(ec.value(), "read directory", dir_);
  return out;
}

}  // namespace kvcri::sandbox
