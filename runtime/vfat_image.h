// A FAT12 image writer for small VM disks such as the cloud-init seed.
#pragma once

// A tiny FAT12 writer: enough for a cloud-init NoCloud seed (a handful of
// files in the root directory, VFAT long names, a volume label), so creating
// a seed needs no mkfs.vfat/mtools at runtime and costs one write.

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvcri::runtime {

struct VfatFile {
  std::string name;  // root-directory file name, kept as a VFAT long name
  std::string content;
};

// The whole image. InvalidArgument for a bad or duplicate name or a label
// over 11 characters; ResourceExhausted past FAT12's ~128 MiB or 100 files.
absl::StatusOr<std::string> BuildVfatImage(std::string_view label, const std::vector<VfatFile>& files);

}  // namespace kvcri::runtime
