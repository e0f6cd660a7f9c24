// MountContainerRoot / UnmountContainerRoot (container_root.h): overlayfs over the layer store.
#include "runtime/microvm/container_root.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "config/base/file_util.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime::microvm {

namespace fs = std::filesystem;

namespace {
constexpr size_t kMaxLayers = 500;
}  // namespace

absl::Status MountContainerRoot(const std::vector<fs::path>& lower_bottom_first, const fs::path& upper,
                                const fs::path& work, const fs::path& target) {
  if (lower_bottom_first.empty()) return absl::InvalidArgumentError("a container root needs at least one image layer");
  if (lower_bottom_first.size() > kMaxLayers) {
    return absl::InvalidArgumentError(
        base::StrCat("the image has ", lower_bottom_first.size(), " layers; at most ", kMaxLayers, " are mounted"));
  }
  for (const fs::path& d : {upper, work}) {
    if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, base::StrCat("mkdir \"", d.string(), "\""));
    }
  }
  // overlayfs lists lower layers top first.
  std::vector<base::UniqueFd> fds;
  std::string lower;
  for (auto it = lower_bottom_first.rbegin(); it != lower_bottom_first.rend(); ++it) {
    base::UniqueFd fd(::open(it->c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) return absl::ErrnoToStatus(errno, base::StrCat("open layer \"", it->string(), "\""));
    if (!lower.empty()) lower.push_back(':');
    lower += base::StrCat("/proc/self/fd/", fd.get());
    fds.push_back(std::move(fd));
  }
  const std::string opts = base::StrCat("lowerdir=", lower, ",upperdir=", upper.string(), ",workdir=", work.string());
  if (opts.size() >= 4096) {
    return absl::InvalidArgumentError(base::StrCat("overlay options for \"", target.string(), "\" are ", opts.size(),
                                                   " bytes, more than a mount takes"));
  }
  if (::mount("overlay", target.c_str(), "overlay", MS_NODEV | MS_NOSUID, opts.c_str()) != 0) {
    return absl::ErrnoToStatus(errno, base::StrCat("mount the container root at \"", target.string(), "\""));
  }
  return absl::OkStatus();
}

namespace {
// Whether `dir` is a mount point (its device differs from its parent's, or
// it is a bind mount of itself: then /proc/self/mountinfo lists it).
bool IsMountPoint(const fs::path& dir) {
  const std::string text = base::ReadFile("/proc/self/mountinfo").value_or("");
  const std::string needle = base::StrCat(" ", dir.string(), " ");
  return text.find(needle) != std::string::npos;
}
}  // namespace

absl::Status MountPodShare(const fs::path& share) {
  if (!IsMountPoint(share)) {
    if (::mount(share.c_str(), share.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      return absl::ErrnoToStatus(errno, base::StrCat("bind-mount the Pod share \"", share.string(), "\""));
    }
  }
  if (::mount(nullptr, share.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_NODEV | MS_NOSUID, nullptr) != 0) {
    return absl::ErrnoToStatus(errno, base::StrCat("remount the Pod share \"", share.string(), "\" nodev,nosuid"));
  }
  if (::mount(nullptr, share.c_str(), nullptr, MS_SHARED, nullptr) != 0) {
    return absl::ErrnoToStatus(errno, base::StrCat("make the Pod share \"", share.string(), "\" shared"));
  }
  return absl::OkStatus();
}

absl::Status UnmountPodShare(const fs::path& share) {
  // Roots first, then the share; a busy one is detached.
  for (int i = 0; i < 1000 && IsMountPoint(share); ++i) {
    if (::umount2(share.c_str(), UMOUNT_NOFOLLOW) != 0 && ::umount2(share.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) {
      return absl::ErrnoToStatus(errno, base::StrCat("unmount the Pod share \"", share.string(), "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status UnmountContainerRoot(const fs::path& target) {
  if (::umount2(target.c_str(), UMOUNT_NOFOLLOW) == 0) return absl::OkStatus();
  if (errno == EINVAL || errno == ENOENT) return absl::OkStatus();  // not mounted (or gone)
  if (errno == EBUSY && ::umount2(target.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) return absl::OkStatus();
  return absl::ErrnoToStatus(errno, base::StrCat("unmount the container root at \"", target.string(), "\""));
}

}  // namespace kvcri::runtime::microvm
