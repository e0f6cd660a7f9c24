// CreateOverlay: writes an empty qcow2 v3 image backed by the image's disk.
#include "runtime/image/overlay.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime::image {
namespace {

constexpr uint32_t kClusterBits = 16;
constexpr uint64_t kClusterSize = uint64_t{1} << kClusterBits;
constexpr uint32_t kRefcountOrder = 4;  // 16-bit refcounts, QEMU's default
constexpr uint32_t kHeaderLen = 112;    // v3 header incl. compression type + padding
constexpr uint32_t kExtBackingFormat = 0xe2792aca;
constexpr size_t kMaxBackingNameLen = 1023;  // QEMU refuses longer names
// Cluster 0: header; 1: refcount table; 2: refcount block; 3..: L1 table.
constexpr uint64_t kRefcountTableOffset = 1 * kClusterSize;
constexpr uint64_t kRefcountBlockOffset = 2 * kClusterSize;
constexpr uint64_t kL1Offset = 3 * kClusterSize;
// One L1 entry maps one L2 table: cluster_size / 8 clusters.
constexpr uint64_t kBytesPerL1Entry = kClusterSize * (kClusterSize / 8);
// One refcount block holds refcounts for cluster_size / 2 clusters.
constexpr uint64_t kClustersPerRefcountBlock = kClusterSize / 2;

void Put32(std::string& b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + i] = static_cast<char>(v >> (24 - 8 * i));
}
void Put64(std::string& b, size_t off, uint64_t v) {
  Put32(b, off, static_cast<uint32_t>(v >> 32));
  Put32(b, off + 4, static_cast<uint32_t>(v));
}

absl::Status Errno(std::string_view op, const std::filesystem::path& p) {
  return absl::ErrnoToStatus(errno, base::StrCat(op, " \"", p.string(), "\""));
}

absl::Status PWriteAll(int fd, std::string_view data, uint64_t off,
                       const std::filesystem::path& p) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("write", p);
    data.remove_prefix(static_cast<size_t>(n));
    off += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> BaseVirtualSize(const std::filesystem::path& base, DiskFormat format) {
  base::UniqueFd fd(::open(base.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Errno("open backing file", base);
  if (format == DiskFormat::kRaw) {
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return Errno("stat backing file", base);
    // A qcow2 image's size is a multiple of 512, as qemu-img rounds it.
    return (static_cast<uint64_t>(st.st_size) + 511) & ~uint64_t{511};
  }
  std::string head(32, '\0');
  ssize_t n;
  do {
    n = ::pread(fd.get(), head.data(), head.size(), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Errno("read backing file", base);
  if (n != static_cast<ssize_t>(head.size()) || !HasQcow2Magic(head)) {
    return absl::InvalidArgumentError(
        base::StrCat("backing file \"", base.string(), "\" is not a qcow2 image"));
  }
  uint64_t size = 0;
  for (int i = 0; i < 8; ++i) size = (size << 8) | static_cast<unsigned char>(head[24 + i]);
  return size;
}

}  // namespace

absl::Status CreateOverlay(const std::filesystem::path& base_path, DiskFormat base_format,
                           const std::filesystem::path& overlay_path,
                           const OverlayOptions& options) {
  const std::string backing = base_path.string();
  if (!base_path.is_absolute()) {
    return absl::InvalidArgumentError(
        base::StrCat("backing file \"", backing, "\" is not an absolute path"));
  }
  if (backing.size() > kMaxBackingNameLen) {
    return absl::InvalidArgumentError(base::StrCat("backing file \"", backing, "\" is longer than ",
                                                   kMaxBackingNameLen, " bytes"));
  }
  ASSIGN_OR_RETURN(uint64_t size, BaseVirtualSize(base_path, base_format));
  const uint64_t l1_size = (size + kBytesPerL1Entry - 1) / kBytesPerL1Entry;
  const uint64_t l1_clusters = (l1_size * 8 + kClusterSize - 1) / kClusterSize;
  const uint64_t used_clusters = 3 + l1_clusters;
  if (used_clusters > kClustersPerRefcountBlock) {
    return absl::InvalidArgumentError(base::StrCat(
        "backing file \"", backing, "\" is too large for an overlay: ", size, " bytes"));
  }

  // Cluster 0: header, backing-format extension, end marker, backing file name.
  const std::string_view fmt = DiskFormatName(base_format);
  const uint64_t ext_len = 8 + ((fmt.size() + 7) & ~size_t{7});
  const uint64_t backing_off = kHeaderLen + ext_len + 8;
  std::string header(backing_off + backing.size(), '\0');
  header.replace(0, 4, "QFI\xfb");
  Put32(header, 4, 3);  // version
  Put64(header, 8, backing_off);
  Put32(header, 16, static_cast<uint32_t>(backing.size()));
  Put32(header, 20, kClusterBits);
  Put64(header, 24, size);
  Put32(header, 32, 0);  // no encryption
  Put32(header, 36, static_cast<uint32_t>(l1_size));
  Put64(header, 40, kL1Offset);
  Put64(header, 48, kRefcountTableOffset);
  Put32(header, 56, 1);  // refcount table clusters
  // nb_snapshots, snapshots_offset, feature bits: zero.
  Put32(header, 96, kRefcountOrder);
  Put32(header, 100, kHeaderLen);
  // Byte 104: compression type zlib (0); 105..111 padding.
  Put32(header, kHeaderLen, kExtBackingFormat);
  Put32(header, kHeaderLen + 4, static_cast<uint32_t>(fmt.size()));
  header.replace(kHeaderLen + 8, fmt.size(), fmt);
  // End-of-extensions marker (8 zero bytes) is already there.
  header.replace(backing_off, backing.size(), backing);

  std::string refcount_table(8, '\0');
  Put64(refcount_table, 0, kRefcountBlockOffset);
  std::string refcount_block(used_clusters * 2, '\0');
  for (uint64_t i = 0; i < used_clusters; ++i) refcount_block[i * 2 + 1] = 1;

  base::Rollback undo;
  base::UniqueFd fd(
      ::open(overlay_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, options.mode));
  if (!fd.valid()) return Errno("create overlay", overlay_path);
  undo.Add("remove partial overlay", [overlay_path] { return base::RemoveFile(overlay_path); });
  // open() applies the umask; the caller's mode is what it asked for.
  if (::fchmod(fd.get(), options.mode) != 0) return Errno("chmod overlay", overlay_path);
  RETURN_IF_ERROR(PWriteAll(fd.get(), header, 0, overlay_path));
  RETURN_IF_ERROR(PWriteAll(fd.get(), refcount_table, kRefcountTableOffset, overlay_path));
  RETURN_IF_ERROR(PWriteAll(fd.get(), refcount_block, kRefcountBlockOffset, overlay_path));
  // The L1 table is all zeros: a hole up to its end.
  if (::ftruncate(fd.get(), static_cast<off_t>(kL1Offset + l1_size * 8)) != 0) {
    return Errno("truncate overlay", overlay_path);
  }
  if (options.sync) {
    if (::fsync(fd.get()) != 0) return Errno("fsync overlay", overlay_path);
    std::filesystem::path dir = overlay_path.parent_path();
    RETURN_IF_ERROR(base::SyncDir(dir.empty() ? std::filesystem::path(".") : dir));
  }
  undo.Dismiss();
  return absl::OkStatus();
}

}  // namespace kvcri::runtime::image
