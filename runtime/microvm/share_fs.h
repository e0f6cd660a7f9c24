// Host-side file operations inside a Pod share, which the guest can change under us: everything below a directory fd, no symlink ever followed.
#pragma once

// The guest is root on its side of virtio-fs: between two of our calls it
// can swap any directory of the share for a symlink to a host path. So
// nothing here takes a path below the share: callers hold an O_DIRECTORY fd
// of a directory they made (opened O_NOFOLLOW) and name one component in
// it. Mount targets are reached through /proc/self/fd/<fd> of an O_PATH fd
// of the node itself, which resolves to exactly that inode.

#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime::microvm {

// Opens directory `path` (made by the host, not the guest) O_DIRECTORY.
absl::StatusOr<base::UniqueFd> OpenDir(const std::filesystem::path& path);
// Opens directory `name` in `dir` without following a symlink.
absl::StatusOr<base::UniqueFd> OpenDirAt(int dir, const std::string& name);
// Makes directory `name` in `dir` (`mode`; an existing directory is fine)
// and opens it without following a symlink.
absl::StatusOr<base::UniqueFd> MakeDirAt(int dir, const std::string& name, mode_t mode);
// Writes `content` to `name` in `dir` through a fresh temporary file renamed
// over it: a symlink or FIFO planted as `name` is replaced, never followed.
absl::Status WriteFileAt(int dir, const std::string& name, const std::string& content, mode_t mode);
// The node `name` in `dir` as a mount target: made (a directory, or an
// empty regular file for a file mount) when missing, opened O_PATH without
// following a symlink, and checked to be of that kind.
absl::StatusOr<base::UniqueFd> MountTargetAt(int dir, const std::string& name, bool directory);
// "/proc/self/fd/<fd>": a path for mount(2) that names exactly `fd`'s node.
std::string FdPath(int fd);
// Bind-mounts host `source` (trusted, canonical) onto the node `target`
// (MountTargetAt), recursive, nodev and nosuid; read-only when asked.
absl::Status BindMountOnto(const std::filesystem::path& source, int target, bool read_only);
// Unmounts whatever is mounted on `name` in `dir` (lazily); OK when nothing is.
absl::Status UnmountAt(int dir, const std::string& name);
// rm -rf of `name` in `dir` without following a symlink or crossing into
// another file system (a mount still there fails with FailedPrecondition).
// OK when it does not exist.
absl::Status RemoveTreeAt(int dir, const std::string& name);

}  // namespace kvcri::runtime::microvm
