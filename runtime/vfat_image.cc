// BuildVfatImage: boot sector, FATs, root directory with VFAT long names, file clusters.
#include "runtime/vfat_image.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <set>

#include "config/base/str.h"

namespace kvcri::runtime {
namespace {

constexpr size_t kSector = 512;
constexpr size_t kDirEntry = 32;
constexpr size_t kRootEntries = 256;   // 16 sectors; ~50 files with long names
constexpr size_t kMaxClusters = 4000;  // FAT12 ends at 4084; stay clear of the edge
constexpr size_t kMinClusters = 64;
constexpr uint16_t kDate = ((2020 - 1980) << 9) | (1 << 5) | 1;  // 2020-01-01: reproducible images

void Put16(std::string* img, size_t at, uint16_t v) {
  (*img)[at] = static_cast<char>(v & 0xff);
  (*img)[at + 1] = static_cast<char>(v >> 8);
}
void Put32(std::string* img, size_t at, uint32_t v) {
  Put16(img, at, static_cast<uint16_t>(v & 0xffff));
  Put16(img, at + 2, static_cast<uint16_t>(v >> 16));
}

void SetFat12(std::string* img, size_t fat_at, uint32_t cluster, uint16_t value) {
  size_t off = fat_at + cluster + cluster / 2;
  auto* p = reinterpret_cast<uint8_t*>(img->data());
  if (cluster % 2 == 0) {
    p[off] = static_cast<uint8_t>(value & 0xff);
    p[off + 1] = static_cast<uint8_t>((p[off + 1] & 0xf0) | ((value >> 8) & 0x0f));
  } else {
    p[off] = static_cast<uint8_t>((p[off] & 0x0f) | ((value & 0x0f) << 4));
    p[off + 1] = static_cast<uint8_t>(value >> 4);
  }
}

bool ValidLongName(std::string_view n) {
  if (n.empty() || n.size() > 255 || n == "." || n == ".." || n.back() == '.' || n.back() == ' ')
    return false;
  for (unsigned char c : n) {
    if (c < 0x20 || c > 0x7e || std::strchr("\"*/:<>?\\|", c) != nullptr) return false;
  }
  return true;
}

// "network-config" -> "NETWOR~1   " (8.3, space padded); `n` picks the ~n.
std::string ShortName(std::string_view long_name, int n) {
  std::string base, ext;
  size_t dot = long_name.rfind('.');
  std::string_view b = long_name.substr(0, dot == 0 ? std::string_view::npos : dot);
  std::string_view e = (dot == 0 || dot == std::string_view::npos) ? "" : long_name.substr(dot + 1);
  auto clean = [](std::string_view in, size_t max) {
    std::string out;
    for (unsigned char c : in) {
      if (out.size() == max) break;
      if (std::isalnum(c) || std::strchr("!#$%&'()-@^_`{}~", c) != nullptr)
        out.push_back(static_cast<char>(std::toupper(c)));
    }
    return out;
  };
  std::string tail = base::StrCat("~", n);
  base = clean(b, 8 - tail.size());
  if (base.empty()) base = "FILE";
  base = base.substr(0, 8 - tail.size()) + tail;
  ext = clean(e, 3);
  base.resize(8, ' ');
  ext.resize(3, ' ');
  return base + ext;
}

uint8_t LfnChecksum(std::string_view short_name) {
  uint8_t sum = 0;
  for (unsigned char c : short_name) sum = static_cast<uint8_t>(((sum & 1) << 7) + (sum >> 1) + c);
  return sum;
}

// Long-name entries for `name` (last part first, as on disk).
std::vector<std::string> LfnEntries(std::string_view name, uint8_t checksum) {
  const size_t parts = (name.size() + 12) / 13;
  std::vector<std::string> out;
  for (size_t k = parts; k >= 1; --k) {
    std::string e(kDirEntry, '\0');
    e[0] = static_cast<char>(k | (k == parts ? 0x40 : 0));
    e[11] = 0x0f;
    e[13] = static_cast<char>(checksum);
    static constexpr size_t kSlots[13] = {1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30};
    for (size_t i = 0; i < 13; ++i) {
      size_t idx = (k - 1) * 13 + i;
      uint16_t ch =
          idx < name.size() ? static_cast<uint8_t>(name[idx]) : (idx == name.size() ? 0x0000 : 0xffff);
      e[kSlots[i]] = static_cast<char>(ch & 0xff);
      e[kSlots[i] + 1] = static_cast<char>(ch >> 8);
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> BuildVfatImage(std::string_view label, const std::vector<VfatFile>& files) {
  if (label.empty() || label.size() > 11) {
    return absl::InvalidArgumentError(base::StrCat("volume label \"", label, "\" must be 1..11 characters"));
  }
  std::set<std::string> seen;
  size_t dir_entries = 1;  // the volume label
  for (const VfatFile& f : files) {
    if (!ValidLongName(f.name))
      return absl::InvalidArgumentError(base::StrCat("file name \"", f.name, "\" is not valid on VFAT"));
    std::string lower = f.name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (!seen.insert(lower).second)
      return absl::InvalidArgumentError(base::StrCat("file name \"", f.name, "\" appears twice"));
    dir_entries += 1 + (f.name.size() + 12) / 13;
  }
  if (dir_entries > kRootEntries) {
    return absl::ResourceExhaustedError(
        base::StrCat("seed has ", files.size(), " files, over the root directory's room"));
  }

  // Smallest cluster that keeps the cluster count FAT12-sized.
  size_t spc = 1, clusters = 0;
  for (;; spc *= 2) {
    if (spc > 64) return absl::ResourceExhaustedError("seed files exceed a FAT12 image (about 128 MiB)");
    clusters = 0;
    for (const VfatFile& f : files) clusters += (f.content.size() + spc * kSector - 1) / (spc * kSector);
    if (clusters <= kMaxClusters) break;
  }
  clusters = std::max(clusters, kMinClusters);
  const size_t fat_sectors = ((clusters + 2) * 3 / 2 + 1 + kSector - 1) / kSector;
  const size_t root_sectors = kRootEntries * kDirEntry / kSector;
  const size_t fat_at = kSector;  // one reserved sector: the boot sector
  const size_t root_at = fat_at + 2 * fat_sectors * kSector;
  const size_t data_at = root_at + root_sectors * kSector;
  const size_t total_sectors = data_at / kSector + clusters * spc;
  std::string img(total_sectors * kSector, '\0');

  // Boot sector with a DOS 4.0 BPB.
  static constexpr uint8_t kJump[3] = {0xeb, 0x3c, 0x90};
  std::memcpy(img.data(), kJump, 3);
  std::memcpy(img.data() + 3, "mkfs.fat", 8);
  Put16(&img, 11, kSector);
  img[13] = static_cast<char>(spc);
  Put16(&img, 14, 1);
  img[16] = 2;
  Put16(&img, 17, kRootEntries);
  if (total_sectors < 65536) {
    Put16(&img, 19, static_cast<uint16_t>(total_sectors));
  } else {
    Put32(&img, 32, static_cast<uint32_t>(total_sectors));
  }
  img[21] = static_cast<char>(0xf8);
  Put16(&img, 22, static_cast<uint16_t>(fat_sectors));
  Put16(&img, 24, 32);
  Put16(&img, 26, 64);
  img[36] = static_cast<char>(0x80);
  img[38] = 0x29;
  uint32_t volume_id = 2166136261u;  // FNV-1a of the names: stable per seed shape
  for (const VfatFile& f : files) {
    for (unsigned char c : f.name) volume_id = (volume_id ^ c) * 16777619u;
  }
  Put32(&img, 39, volume_id);
  std::string padded_label(label);
  std::transform(padded_label.begin(), padded_label.end(), padded_label.begin(),
                 [](unsigned char c) { return std::toupper(c); });
  padded_label.resize(11, ' ');
  std::memcpy(img.data() + 43, padded_label.data(), 11);
  std::memcpy(img.data() + 54, "FAT12   ", 8);
  img[510] = 0x55;
  img[511] = static_cast<char>(0xaa);

  SetFat12(&img, fat_at, 0, 0xff8);
  SetFat12(&img, fat_at, 1, 0xfff);

  size_t entry_at = root_at;
  std::string vol(kDirEntry, '\0');
  std::memcpy(vol.data(), padded_label.data(), 11);
  vol[11] = 0x08;
  Put16(&vol, 22, 0);
  Put16(&vol, 24, kDate);
  std::memcpy(img.data() + entry_at, vol.data(), kDirEntry);
  entry_at += kDirEntry;

  std::set<std::string> short_names;
  uint32_t next_cluster = 2;
  for (const VfatFile& f : files) {
    std::string sn;
    for (int n = 1; sn.empty() || short_names.count(sn); ++n) sn = ShortName(f.name, n);
    short_names.insert(sn);
    for (const std::string& e : LfnEntries(f.name, LfnChecksum(sn))) {
      std::memcpy(img.data() + entry_at, e.data(), kDirEntry);
      entry_at += kDirEntry;
    }
    const size_t cluster_bytes = spc * kSector;
    const size_t n_clusters = (f.content.size() + cluster_bytes - 1) / cluster_bytes;
    const uint32_t first = n_clusters ? next_cluster : 0;
    for (size_t c = 0; c < n_clusters; ++c) {
      uint32_t cl = next_cluster++;
      SetFat12(&img, fat_at, cl, c + 1 == n_clusters ? 0xfff : static_cast<uint16_t>(cl + 1));
    }
    if (n_clusters)
      std::memcpy(img.data() + data_at + (first - 2) * cluster_bytes, f.content.data(), f.content.size());

    std::string e(kDirEntry, '\0');
    std::memcpy(e.data(), sn.data(), 11);
    e[11] = 0x20;  // archive
    Put16(&e, 16, kDate);
    Put16(&e, 18, kDate);
    Put16(&e, 24, kDate);
    Put16(&e, 26, static_cast<uint16_t>(first));
    Put32(&e, 28, static_cast<uint32_t>(f.content.size()));
    std::memcpy(img.data() + entry_at, e.data(), kDirEntry);
    entry_at += kDirEntry;
  }
  // Second FAT mirrors the first.
  std::memcpy(img.data() + fat_at + fat_sectors * kSector, img.data() + fat_at, fat_sectors * kSector);
  return img;
}

}  // namespace kvcri::runtime
