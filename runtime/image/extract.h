// Boot artifacts (disk, kernel, initrd, cmdline) extracted from an image's layers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/image/oci.h"

namespace kvcri::runtime::image {

// The boot artifacts found in an image's layers, as paths relative to the
// output directory, and why the image cannot boot when it cannot.
struct BootArtifacts {
  std::string disk;    // "disk/<name>": the single regular file directly under /disk/
  std::string kernel;  // "boot/vmlinuz"
  std::string initrd;  // "boot/initrd.img"
  // Non-empty when neither convention is met (no or several disks, a
  // symlink where a file must be...): the image can be stored but not run.
  std::string unbootable_reason;
};

// Bounds on what one image's layers may make extraction do. An image past
// one of them is refused (InvalidArgument naming the limit) as soon as it is
// seen: a tar header declaring more than what is left is refused before its
// data is read.
struct ExtractLimits {
  // Decompressed tar bytes of all layers together (entries extracted or
  // skipped, headers included). The puller also refuses a manifest whose
  // declared blob sizes add up to more ([images] max_image_bytes).
  int64_t max_bytes = int64_t{64} << 30;
  // Tar entries of all layers together ([images] max_image_entries): bounds
  // the memory and inodes a layer full of tiny entries costs.
  int64_t max_entries = 1000000;
};

// Files extraction writes at most (candidate disks and boot files, superseded
// ones included): an image needs one disk or a kernel and an initrd.
inline constexpr int kMaxExtractedFiles = 64;

// Applies `layers` (OCI tar layers, uncompressed, gzip or zstd) in order to
// an empty view of the image's filesystem, materializing in `out_dir` only
// what can boot a VM: regular files directly under /disk/, /boot/vmlinuz and
// /boot/initrd.img. Later layers override earlier ones; whiteouts (.wh.NAME)
// and opaque whiteouts (.wh..wh..opq) delete. Each blob's sha256 and size are
// verified while it is read; any mismatch fails the whole call.
//
// InvalidArgument (the image is refused) for: entry names or hardlink
// targets that are absolute or contain "..", and, under /disk or /boot,
// absolute symlinks and device nodes. Relative symlinks, hardlinks to
// unextracted files, FIFOs and directories where a boot artifact must be are
// not errors; they make the image unbootable (`unbootable_reason`).
//
// Everything it writes is under `out_dir` (which must exist and be empty),
// and the caller removes `out_dir` on failure. It takes only a BlobSource
// and a directory so it can move into a sandboxed child process later.
absl::StatusOr<BootArtifacts> ExtractBootArtifacts(BlobSource& source, const std::vector<Descriptor>& layers,
                                                   const std::filesystem::path& out_dir,
                                                   const ExtractLimits& limits = {});

}  // namespace kvcri::runtime::image
