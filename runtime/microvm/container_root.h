// A plain-image container's root on the host: the overlayfs of its image's unpacked layers and an upper directory of its own, on the Pod share.
#pragma once

// The mount is nodev and nosuid on the host: virtiofsd serves it to the
// guest, and a device node or setuid file of the image must mean nothing to
// the host (the guest's own mount decides what they mean inside). The
// lower layers are named through /proc/self/fd/<n> of directories opened
// here: mount(2)'s options fit one page, which 40 store paths would fill.

#include <filesystem>
#include <vector>

#include "absl/status/status.h"

namespace kvcri::runtime::microvm {

// Mounts at `target` (an existing empty directory) the overlay of
// `lower_bottom_first` (ImageInfo::layer_dirs) with `upper` and `work`
// (made 0755 when missing; on one file system). At most 500 layers.
absl::Status MountContainerRoot(const std::vector<std::filesystem::path>& lower_bottom_first,
                                const std::filesystem::path& upper, const std::filesystem::path& work,
                                const std::filesystem::path& target);

// Makes the Pod's share directory a mount point of its own, nodev,
// nosuid, with shared propagation, before the micro-VM starts: virtiofsd
// serves it from a mount namespace of its own made when QEMU starts (a
// slave of ours), so a container root mounted below the share later only
// reaches the guest if the mount propagates. OK when it is one already.
absl::Status MountPodShare(const std::filesystem::path& share);
// Unmounts the share and everything below it (the containers' roots).
absl::Status UnmountPodShare(const std::filesystem::path& share);

// Unmounts `target`; OK when nothing is mounted there. Lazy (MNT_DETACH)
// when the root is busy, so a removal never hangs on a file someone holds.
absl::Status UnmountContainerRoot(const std::filesystem::path& target);

}  // namespace kvcri::runtime::microvm
