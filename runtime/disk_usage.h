// Disk usage of a VM container's files on the node (its writable layer): bytes, inodes, mount point.
#pragma once

// A VM's writes land in its container directory: the qcow2 overlay over the
// image (disk boot), the cloud-init seed, the console log. What the node's
// disk pays is what the file system allocated (st_blocks), not the files'
// apparent sizes: a qcow2 overlay is sparse.

#include <cstdint>
#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvcri::runtime {

struct DiskUsage {
  absl::Time timestamp;
  uint64_t used_bytes = 0;   // st_blocks * 512 of every entry
  uint64_t inodes_used = 0;  // the entries counted, the directory included
  // The mount point of the file system holding the directory, so kubelet
  // (cAdvisor's GetDirFsInfo) can find its capacity.
  std::string mountpoint;
};

// At most this many entries of a directory are counted; the rest are left
// out (a VM's container directory holds a handful of files).
inline constexpr size_t kMaxDiskUsageEntries = 4096;

// Usage of `dir` and everything below it, without following symlinks or
// crossing into another file system. NotFound when `dir` does not exist.
absl::StatusOr<DiskUsage> DirDiskUsage(const std::filesystem::path& dir);

// The mount point of the file system `path` is on: the last ancestor with
// the same st_dev (walking up until the device changes or "/" is reached).
absl::StatusOr<std::string> MountPointOf(const std::filesystem::path& path);

}  // namespace kvcri::runtime
