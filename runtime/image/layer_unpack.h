// UnpackLayer: one OCI layer applied to an empty directory in overlayfs's format, to be a lower layer of container roots.
#pragma once

// The layer store keeps each layer unpacked once, by digest; a container's
// root is an overlayfs of its image's layers with an upper directory of its
// own (docs/microvm.md). So one layer is unpacked on its own, and what the
// layers above it delete is said the way overlayfs reads it:
//   - .wh.NAME (a whiteout) becomes NAME, a character device 0:0;
//   - .wh..wh..opq (an opaque whiteout) sets trusted.overlay.opaque=y on
//     its directory.
// Everything else keeps the tar header's type, mode (setuid, setgid and
// sticky bits included), numeric owner and modification time: regular
// files, directories, symlinks (their targets are not interpreted: only the
// guest resolves them), hardlinks to an earlier entry of the same layer,
// FIFOs. The security.capability xattr (file capabilities) is kept; other
// xattrs are dropped.
//
// Refused, because what would be made is not what the image means or is
// dangerous on the host: names that are absolute or contain ".."; entries
// whose parent path goes through a symlink (every parent is resolved below
// `out_dir` without following symlinks); hardlinks to what is not an
// earlier non-directory of this layer. Character and block devices are
// skipped and counted: a device node on the Pod share would be a device of
// the host to whoever opens it through virtiofsd (the share is also mounted
// nodev). Root (or CAP_CHOWN, CAP_MKNOD, CAP_FOWNER, CAP_FSETID and
// CAP_SYS_ADMIN for trusted.* xattrs) is needed; the store runs this in its
// sandboxed child.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/image/extract.h"
#include "runtime/image/layer_reader.h"
#include "runtime/image/oci.h"

namespace kvcri::runtime::image {

struct UnpackStats {
  int64_t entries = 0;
  int64_t skipped_devices = 0;
  // The whiteouts, left to ApplyOverlayMarks: relative paths ("a/b") of
  // what is deleted, and of the directories made opaque. Their parent
  // directories exist.
  std::vector<std::string> whiteouts, opaque_dirs;
};

// `out_dir` must exist and be empty; the caller removes it on failure.
// `budget` bounds this layer together with the image's others (ReadLayer).
// Needs no CAP_MKNOD and no CAP_SYS_ADMIN: the whiteouts are only recorded.
absl::StatusOr<UnpackStats> UnpackLayer(BlobSource& source, const Descriptor& layer,
                                        const std::filesystem::path& out_dir, const ExtractLimits& limits,
                                        LayerBudget* budget);

// Makes the recorded whiteouts in `out_dir`: a 0:0 character device per
// whiteout (where the layer itself put nothing: its own entry wins) and
// trusted.overlay.opaque=y per opaque directory, never through a symlink.
// The lists come from a sandboxed child (untrusted): each path must be a
// clean relative path; InvalidArgument otherwise. Root (CAP_MKNOD,
// CAP_SYS_ADMIN).
absl::Status ApplyOverlayMarks(const std::filesystem::path& out_dir, const UnpackStats& marks);

}  // namespace kvcri::runtime::image
