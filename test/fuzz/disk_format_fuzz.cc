// Fuzz target disk_format: an image's disk file through ParseQcow2Header and DetectDiskFormat, as import calls them.
#include <fcntl.h>
#include <unistd.h>

#include "config/base/unique_fd.h"
#include "runtime/image/disk_format.h"
#include "test/fuzz/fuzz_targets.h"
#include "test/fuzz/scratch_file.h"

namespace kvcri::fuzz {

constexpr std::string_view kTarget = "disk_format";

void FuzzDiskFormat(FuzzInput in) {
  using runtime::image::DiskFormat;
  absl::StatusOr<runtime::image::Qcow2Header> h = runtime::image::ParseQcow2Header(AsText(in));
  KVCRI_FUZZ_CHECK(kTarget, h.ok() || absl::IsInvalidArgument(h.status()));

  const std::filesystem::path path = ScratchPath("disk.img");
  {
    base::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.valid() || ::write(fd.get(), in.data(), in.size()) != static_cast<ssize_t>(in.size())) {
      FuzzFail(kTarget, "write scratch disk");
    }
  }
  absl::StatusOr<runtime::image::DiskFormatInfo> info = runtime::image::DetectDiskFormat(path);
  if (!runtime::image::HasQcow2Magic(AsText(in))) {
    // No magic: raw, whatever else the bytes say.
    KVCRI_FUZZ_CHECK(kTarget, info.ok() && info->format == DiskFormat::kRaw && info->virtual_size == in.size());
    return;
  }
  if (!info.ok()) {
    KVCRI_FUZZ_CHECK(kTarget, absl::IsInvalidArgument(info.status()));
    return;
  }
  // A qcow2 image handed to QEMU opens no other file and needs no secret.
  KVCRI_FUZZ_CHECK(kTarget, info->format == DiskFormat::kQcow2);
  absl::StatusOr<runtime::image::Qcow2Header> head =
      runtime::image::ParseQcow2Header(AsText(in.first(std::min<size_t>(in.size(), 64 * 1024))));
  KVCRI_FUZZ_CHECK(kTarget, head.ok());
  KVCRI_FUZZ_CHECK(kTarget, head->backing_file_offset == 0 && head->crypt_method == 0 &&
                                !head->has_data_file_extension && (head->incompatible_features & 4) == 0);
  KVCRI_FUZZ_CHECK(kTarget, info->virtual_size == head->size);
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzDiskFormat)
