// Disk format detection: the qcow2 header parsed and checked, anything else raw.
#include "runtime/image/disk_format.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime::image {
namespace {

constexpr std::string_view kQcow2Magic = "QFI\xfb";
constexpr uint32_t kQcow2V2HeaderLen = 72;
constexpr uint32_t kQcow2V3MinHeaderLen = 104;
constexpr uint32_t kExtEnd = 0;
constexpr uint32_t kExtDataFile = 0x44415441;
constexpr uint64_t kIncompatExternalData = 1ull << 2;
// The largest cluster QEMU accepts (2 MiB); header plus extensions live in cluster 0.
constexpr uint32_t kMinClusterBits = 9;
constexpr uint32_t kMaxClusterBits = 21;
// Enough for any header QEMU writes; extensions past this are refused.
constexpr size_t kHeadReadLen = 64 * 1024;

uint32_t Be32(std::string_view b, size_t off) {
  auto u = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(b[off + i])); };
  return (u(0) << 24) | (u(1) << 16) | (u(2) << 8) | u(3);
}
uint64_t Be64(std::string_view b, size_t off) {
  return (static_cast<uint64_t>(Be32(b, off)) << 32) | Be32(b, off + 4);
}

absl::Status Malformed(std::string_view why) {
  return absl::InvalidArgumentError(base::StrCat("malformed qcow2 header: ", why));
}

}  // namespace

std::string_view DiskFormatName(DiskFormat f) { return f == DiskFormat::kQcow2 ? "qcow2" : "raw"; }

absl::StatusOr<DiskFormat> ParseDiskFormat(std::string_view name) {
  if (name == "qcow2") return DiskFormat::kQcow2;
  if (name == "raw") return DiskFormat::kRaw;
  return absl::InvalidArgumentError(base::StrCat("unknown disk format \"", name, "\""));
}

bool HasQcow2Magic(std::string_view head) { return head.substr(0, 4) == kQcow2Magic; }

absl::StatusOr<Qcow2Header> ParseQcow2Header(std::string_view head) {
  if (!HasQcow2Magic(head)) return Malformed("no QFI\\xfb magic");
  if (head.size() < kQcow2V2HeaderLen) return Malformed("shorter than 72 bytes");
  Qcow2Header h;
  h.version = Be32(head, 4);
  h.backing_file_offset = Be64(head, 8);
  h.cluster_bits = Be32(head, 20);
  h.size = Be64(head, 24);
  h.crypt_method = Be32(head, 32);
  if (h.version != 2 && h.version != 3) {
    return Malformed(base::StrCat("version ", h.version, " is neither 2 nor 3"));
  }
  if (h.cluster_bits < kMinClusterBits || h.cluster_bits > kMaxClusterBits) {
    return Malformed(base::StrCat("cluster_bits ", h.cluster_bits, " is out of range"));
  }
  uint64_t ext_off = kQcow2V2HeaderLen;
  if (h.version == 3) {
    if (head.size() < kQcow2V3MinHeaderLen)
      return Malformed("version 3 header shorter than 104 bytes");
    h.incompatible_features = Be64(head, 72);
    uint32_t header_len = Be32(head, 100);
    if (header_len < kQcow2V3MinHeaderLen || header_len % 8 != 0) {
      return Malformed(base::StrCat("header_length ", header_len, " is invalid"));
    }
    ext_off = header_len;
  }
  // Header extensions: (type, length, data padded to 8) until type 0; all of
  // them inside cluster 0.
  const uint64_t cluster_size = 1ull << h.cluster_bits;
  while (true) {
    if (ext_off + 8 > head.size() || ext_off + 8 > cluster_size) {
      return Malformed("header extensions run past the first cluster or the data read");
    }
    uint32_t type = Be32(head, ext_off);
    uint64_t len = Be32(head, ext_off + 4);
    if (type == kExtEnd) break;
    if (type == kExtDataFile) h.has_data_file_extension = true;
    ext_off += 8 + ((len + 7) & ~uint64_t{7});
  }
  return h;
}

absl::StatusOr<DiskFormatInfo> DetectDiskFormat(const std::filesystem::path& path) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, base::StrCat("open \"", path.string(), "\""));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return absl::ErrnoToStatus(errno, base::StrCat("stat \"", path.string(), "\""));
  }
  std::string head(kHeadReadLen, '\0');
  size_t got = 0;
  while (got < head.size()) {
    ssize_t n = ::pread(fd.get(), head.data() + got, head.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, base::StrCat("read \"", path.string(), "\""));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  head.resize(got);
  if (!HasQcow2Magic(head))
    return DiskFormatInfo{DiskFormat::kRaw, static_cast<uint64_t>(st.st_size)};

  auto refuse = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        base::StrCat("disk \"", path.string(), "\" is a qcow2 image QEMU must not open: ", why));
  };
  absl::StatusOr<Qcow2Header> h = ParseQcow2Header(head);
  if (!h.ok()) return refuse(base::Sv(h.status().message()));
  if (h->backing_file_offset != 0) return refuse("it has a backing file");
  if (h->incompatible_features & kIncompatExternalData)
    return refuse("it uses an external data file");
  if (h->has_data_file_extension) return refuse("it names an external data file");
  if (h->crypt_method != 0) return refuse("it is encrypted");
  return DiskFormatInfo{DiskFormat::kQcow2, h->size};
}

}  // namespace kvcri::runtime::image
