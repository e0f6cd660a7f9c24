// Disk image formats (raw, qcow2) and their detection from the file's header.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvcri::runtime::image {

enum class DiskFormat { kRaw, kQcow2 };

std::string_view DiskFormatName(DiskFormat f);  // "raw", "qcow2"
absl::StatusOr<DiskFormat> ParseDiskFormat(std::string_view name);

struct DiskFormatInfo {
  DiskFormat format = DiskFormat::kRaw;
  // Guest-visible size: the qcow2 header's size, or a raw file's length.
  uint64_t virtual_size = 0;
};

// qcow2 header fields that decide whether an image is safe to hand to QEMU.
struct Qcow2Header {
  uint32_t version = 0;
  uint64_t backing_file_offset = 0;
  uint32_t cluster_bits = 0;
  uint64_t size = 0;
  uint32_t crypt_method = 0;
  uint64_t incompatible_features = 0;
  bool has_data_file_extension = false;
};

// True when `head` starts with the qcow2 magic "QFI\xfb".
bool HasQcow2Magic(std::string_view head);

// Parses a qcow2 header from the file's first bytes (at least the header and
// its extensions; one cluster is always enough). InvalidArgument for a
// truncated or malformed header.
absl::StatusOr<Qcow2Header> ParseQcow2Header(std::string_view head);

// Decides the format of an image's disk once, at import, so QEMU never
// probes: qcow2 when the magic is present, raw otherwise. A qcow2 image that
// would make QEMU open another file (backing file, external data file) or
// needs a secret (encryption), or has an unknown version, is rejected with
// InvalidArgument naming `path` and the reason.
absl::StatusOr<DiskFormatInfo> DetectDiskFormat(const std::filesystem::path& path);

}  // namespace kvcri::runtime::image
