// share_fs.h: directory-fd based file and mount operations inside a guest-writable Pod share.
#include "runtime/microvm/share_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/stat.h>

#include <cerrno>
#include <vector>

#include "config/base/file_util.h"
#include "config/base/str.h"

namespace kvcri::runtime::microvm {

using base::StrCat;
using base::UniqueFd;

namespace {

// One path component: no separator, not "." or "..".
absl::Status CheckName(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(StrCat("\"", name, "\" is not a single file name"));
  }
  return absl::OkStatus();
}

// Bounds the recursion of RemoveTreeAt: a guest can nest directories deeply.
constexpr int kMaxDepth = 256;

// The mount a node is on (statx STATX_MNT_ID): a bind mount of the same
// file system has the same st_dev, but never the same mount id.
absl::StatusOr<uint64_t> MountIdAt(int dir, const char* name, mode_t* mode) {
  struct statx stx {};
  if (::statx(dir, name, AT_SYMLINK_NOFOLLOW | (name[0] == '\0' ? AT_EMPTY_PATH : 0), STATX_TYPE | STATX_MNT_ID,
              &stx) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("statx \"", name, "\""));
  }
  if ((stx.stx_mask & STATX_MNT_ID) == 0) return absl::UnimplementedError("statx gives no mount id (kernel < 5.8)");
  if (mode != nullptr) *mode = stx.stx_mode;
  return stx.stx_mnt_id;
}

absl::Status RemoveTreeIn(int parent, const std::string& name, uint64_t mnt, int depth) {
  mode_t mode = 0;
  absl::StatusOr<uint64_t> id = MountIdAt(parent, name.c_str(), &mode);
  if (!id.ok()) return absl::IsNotFound(id.status()) ? absl::OkStatus() : id.status();
  if (!S_ISDIR(mode)) {
    if (::unlinkat(parent, name.c_str(), 0) != 0 && errno != ENOENT) {
      return absl::ErrnoToStatus(errno, StrCat("unlink \"", name, "\""));
    }
    return absl::OkStatus();
  }
  if (*id != mnt) {
    return absl::FailedPreconditionError(StrCat("\"", name, "\" is a mount point (still mounted)"));
  }
  if (depth > kMaxDepth) return absl::OutOfRangeError(StrCat("directories nested deeper than ", kMaxDepth));
  int fd = ::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::ErrnoToStatus(errno, StrCat("open \"", name, "\""));
  }
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return absl::ErrnoToStatus(errno, StrCat("fdopendir \"", name, "\""));
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  absl::Status first;
  for (const std::string& n : names) {
    absl::Status s = RemoveTreeIn(::dirfd(d), n, mnt, depth + 1);
    if (first.ok() && !s.ok()) first = s;
  }
  ::closedir(d);
  if (!first.ok()) return first;
  if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return absl::ErrnoToStatus(errno, StrCat("rmdir \"", name, "\""));
  }
  return absl::OkStatus();
}

}  // namespace

std::string FdPath(int fd) { return StrCat("/proc/self/fd/", fd); }

absl::StatusOr<UniqueFd> OpenDir(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", path.string(), "\""));
  return fd;
}

absl::StatusOr<UniqueFd> OpenDirAt(int dir, const std::string& name) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  UniqueFd fd(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat("open directory \"", name, "\" (not following symlinks)"));
  return fd;
}

absl::StatusOr<UniqueFd> MakeDirAt(int dir, const std::string& name, mode_t mode) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  if (::mkdirat(dir, name.c_str(), mode) != 0 && errno != EEXIST) {
    return absl::ErrnoToStatus(errno, StrCat("mkdir \"", name, "\""));
  }
  return OpenDirAt(dir, name);
}

absl::Status WriteFileAt(int dir, const std::string& name, const std::string& content, mode_t mode) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  absl::StatusOr<std::string> suffix = base::RandomHex(8);
  if (!suffix.ok()) return suffix.status();
  const std::string tmp = StrCat(".", name, ".", *suffix, ".tmp");
  UniqueFd fd(::openat(dir, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat("create \"", tmp, "\""));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::unlinkat(dir, tmp.c_str(), 0);
      return absl::ErrnoToStatus(err, StrCat("write \"", tmp, "\""));
    }
    done += static_cast<size_t>(n);
  }
  if (::fchmod(fd.get(), mode) != 0 || ::renameat(dir, tmp.c_str(), dir, name.c_str()) != 0) {
    const int err = errno;
    ::unlinkat(dir, tmp.c_str(), 0);
    return absl::ErrnoToStatus(err, StrCat("write \"", name, "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> MountTargetAt(int dir, const std::string& name, bool directory) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  if (directory) {
    if (::mkdirat(dir, name.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, StrCat("mkdir \"", name, "\""));
    }
  } else {
    int fd = ::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) return absl::ErrnoToStatus(errno, StrCat("create \"", name, "\""));
    if (fd >= 0) ::close(fd);
  }
  UniqueFd fd(::openat(dir, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", name, "\""));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return absl::ErrnoToStatus(errno, StrCat("stat \"", name, "\""));
  if (directory ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        StrCat("\"", name, "\" is not a ", directory ? "directory" : "regular file", " (changed by the guest?)"));
  }
  return fd;
}

absl::Status BindMountOnto(const std::filesystem::path& source, int target, bool read_only) {
  // A detached copy of the source tree gets its attributes before it is
  // attached (new mount API, Linux 5.12): no moment where it is writable
  // or has devices, and the target is the fd's node, not a path.
  UniqueFd tree(::open_tree(AT_FDCWD, source.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
  if (!tree.valid()) return absl::ErrnoToStatus(errno, StrCat("open_tree \"", source.string(), "\""));
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID | (read_only ? MOUNT_ATTR_RDONLY : 0);
  if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("set ", read_only ? "read-only," : "", "nodev,nosuid on \"",
                                             source.string(), "\""));
  }
  if (::move_mount(tree.get(), "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("attach the bind mount of \"", source.string(), "\""));
  }
  return absl::OkStatus();
}

absl::Status UnmountAt(int dir, const std::string& name) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  const std::string path = StrCat(FdPath(dir), "/", name);
  // Everything stacked there: a bind of a recursive mount comes in layers.
  for (int i = 0; i < 64; ++i) {
    if (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) {
      if (errno == EINVAL || errno == ENOENT) return absl::OkStatus();  // not a mount point (any more)
      return absl::ErrnoToStatus(errno, StrCat("unmount \"", name, "\""));
    }
  }
  return absl::ResourceExhaustedError(StrCat("more than 64 mounts stacked on \"", name, "\""));
}

absl::Status RemoveTreeAt(int dir, const std::string& name) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  absl::StatusOr<uint64_t> mnt = MountIdAt(dir, "", nullptr);
  if (!mnt.ok()) return mnt.status();
  return RemoveTreeIn(dir, name, *mnt, 0);
}

}  // namespace kvcri::runtime::microvm
