// A container task's rootfs (containerd's snapshot of the image) as a VM image: its mounts, and the disk or kernel it holds.
#pragma once

// In containerd-shim mode the image is containerd's: the container task's
// CreateTaskRequest.rootfs carries the snapshot's mounts (overlayfs lower,
// upper and work dirs, or a bind mount with the native snapshotter), which
// the shim mounts at <bundle>/rootfs (docs/containerd-shim.md section 4).
// What is inside follows the image conventions of the daemon's own store
// (docs/images.md): a containerDisk's single regular file under /disk/, or
// a kernel at /boot/vmlinuz with an optional /boot/initrd.img.
//
// The files are the image author's: untrusted. Symlinks are refused at every
// step (a /disk/x pointing at a host file must not become the VM's disk), and
// the disk's format is read from its own bytes as the store does (a qcow2
// with a backing file or an external data file is refused), never probed by
// QEMU.

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/image/image_store.h"
#include "shim/containerd/proto/types.pb.h"

namespace kvcri::shim::containerd {

// How the VM boots from the rootfs at `rootfs`. kNone, with the reason, when
// it holds neither convention (a plain container image); InvalidArgument
// when it breaks one (a symlink, several disks, a disk of a refused format).
// `cmdline`: the kernel command line for a kernel-boot image.
absl::StatusOr<runtime::image::BootInfo> BootFromRootfs(const std::filesystem::path& rootfs,
                                                        const std::string& cmdline = "");

// Mounts `mounts` (containerd's, in order) at `target`, an existing
// directory: "overlay" with its lowerdir/upperdir/workdir options, "bind"
// (rbind, ro) as a bind mount. InvalidArgument for another type or an
// option we do not pass on; the first mount's error otherwise. Root only.
absl::Status MountRootfs(const std::vector<pb::Mount>& mounts, const std::filesystem::path& target);

// Unmounts what MountRootfs put at `target` (lazily: a QEMU that still
// holds a file keeps it). OK when nothing is mounted there.
absl::Status UnmountRootfs(const std::filesystem::path& target);

}  // namespace kvcri::shim::containerd
