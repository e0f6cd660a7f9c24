// qcow2 overlays: a VM's writable disk on top of the read-only image disk.
#pragma once

#include <sys/types.h>

#include <filesystem>

#include "absl/status/status.h"
#include "runtime/image/disk_format.h"

namespace kvcri::runtime::image {

struct OverlayOptions {
  mode_t mode = 0600;
  // fsync the overlay and its directory before returning.
  bool sync = true;
};

// Creates `overlay_path` (which must not exist) as an empty qcow2 v3 image
// backed by `base_path` with an explicit backing format, the same virtual
// size as the base, and 64 KiB clusters: what
// `qemu-img create -f qcow2 -F <fmt> -b <base> <overlay>` writes, without
// the ~6 ms of spawning qemu-img. `base_path` must be absolute; the base is
// only read (for its size). On failure nothing is left at `overlay_path`.
absl::Status CreateOverlay(const std::filesystem::path& base_path, DiskFormat base_format,
                           const std::filesystem::path& overlay_path,
                           const OverlayOptions& options = {});

}  // namespace kvcri::runtime::image
