// UnpackLayer (layer_unpack.h): tar entries made under a directory fd, never through a symlink, whiteouts in overlayfs's format.
#include "runtime/image/layer_unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime::image {
namespace {

using base::StrCat;
using base::UniqueFd;

constexpr char kOpaqueXattr[] = "trusted.overlay.opaque";
constexpr char kCapabilityXattr[] = "security.capability";
// A file capability xattr is 20 or 24 bytes; anything much larger is not one.
constexpr size_t kMaxCapabilityXattr = 64;

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// One component below `dir`, never following a symlink (RESOLVE_NO_SYMLINKS
// also refuses one as the last component).
int OpenBeneath(int dir, const std::string& name, int flags) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags) | O_CLOEXEC | O_NOFOLLOW;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, dir, name.c_str(), &how, sizeof how));
}

class Unpacker {
 public:
  Unpacker(int root, std::string digest) : root_(root), digest_(std::move(digest)) {}

  absl::Status Apply(archive* a, archive_entry* e);
  absl::Status Finish();
  const UnpackStats& stats() const { return stats_; }
  // The existing directory holding `path`, reached without symlinks.
  absl::StatusOr<UniqueFd> OpenParentOf(const std::string& path) { return OpenParent(path, /*create=*/false); }

 private:
  absl::Status Refuse(std::string_view path, std::string_view why) const {
    return absl::InvalidArgumentError(StrCat("layer ", digest_, ": /", path, " ", why));
  }
  absl::Status Errno(std::string_view op, std::string_view path) const {
    return absl::ErrnoToStatus(errno, StrCat("layer ", digest_, ": ", op, " /", path));
  }
  // The directory holding `path`, made (root, 0755) where missing.
  absl::StatusOr<UniqueFd> OpenParent(const std::string& path, bool create);
  // Clears `name` in `dir` for a new entry: a non-directory is unlinked; a
  // directory stays for a directory and is refused for anything else.
  absl::Status ClearFor(int dir, const std::string& name, const std::string& path, bool new_is_dir);
  absl::Status WriteFile(archive* a, archive_entry* e, int fd, const std::string& path);

  const int root_;
  const std::string digest_;
  UnpackStats stats_;
  std::set<std::string> files_;  // non-directories made by this layer: hardlink targets
  std::vector<std::pair<std::string, timespec>> dir_times_;
};

absl::StatusOr<UniqueFd> Unpacker::OpenParent(const std::string& path, bool create) {
  UniqueFd dir(::fcntl(root_, F_DUPFD_CLOEXEC, 0));
  if (!dir.valid()) return Errno("dup", "");
  size_t start = 0;
  for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', start)) {
    const std::string c = path.substr(start, slash - start);
    int next = OpenBeneath(dir.get(), c, O_RDONLY | O_DIRECTORY);
    if (next < 0 && errno == ENOENT && create) {
      if (::mkdirat(dir.get(), c.c_str(), 0755) != 0 && errno != EEXIST) return Errno("mkdir", path.substr(0, slash));
      next = OpenBeneath(dir.get(), c, O_RDONLY | O_DIRECTORY);
    }
    if (next < 0) {
      if (errno == ELOOP || errno == ENOTDIR || errno == EXDEV) {
        return Refuse(path, StrCat("has /", path.substr(0, slash), " on its way, which is not a directory"));
      }
      return Errno("open", path.substr(0, slash));
    }
    dir = UniqueFd(next);
    start = slash + 1;
  }
  return dir;
}

absl::Status Unpacker::ClearFor(int dir, const std::string& name, const std::string& path, bool new_is_dir) {
  struct stat st {};
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return Errno("stat", path);
  }
  if (S_ISDIR(st.st_mode)) {
    if (new_is_dir) return absl::OkStatus();
    return Refuse(path, "replaces a directory of the same layer");
  }
  if (::unlinkat(dir, name.c_str(), 0) != 0) return Errno("unlink", path);
  files_.erase(path);
  return absl::OkStatus();
}

absl::Status Unpacker::WriteFile(archive* a, archive_entry* e, int fd, const std::string& path) {
  int64_t end = 0;
  RETURN_IF_ERROR(ForEachDataBlock(
      a, e,
      [&](const char* data, size_t len, int64_t off) -> absl::Status {
        for (size_t done = 0; done < len;) {
          ssize_t n = ::pwrite(fd, data + done, len - done, static_cast<off_t>(off + done));
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) return Errno("write", path);
          done += static_cast<size_t>(n);
        }
        return absl::OkStatus();
      },
      &end));
  if (::ftruncate(fd, end) != 0) return Errno("truncate", path);
  return absl::OkStatus();
}

absl::Status Unpacker::Apply(archive* a, archive_entry* e) {
  const char* raw = archive_entry_pathname(e);
  if (raw == nullptr) return absl::InvalidArgumentError(StrCat("layer ", digest_, ": an entry has no name"));
  ASSIGN_OR_RETURN(const std::string path, NormalizeEntryName(raw, digest_, "entry"));
  ++stats_.entries;
  if (path.empty()) return absl::OkStatus();  // "./": the root stays root's, 0755
  const size_t slash = path.rfind('/');
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const std::string dir_path = slash == std::string::npos ? "" : path.substr(0, slash);

  if (StartsWith(name, kWhiteoutPrefix)) {
    // Its directory is made now; the mark itself by ApplyOverlayMarks.
    ASSIGN_OR_RETURN(UniqueFd dir, OpenParent(path, /*create=*/true));
    if (name == kOpaqueWhiteout) {
      stats_.opaque_dirs.push_back(dir_path);
      return absl::OkStatus();
    }
    const std::string target = name.substr(kWhiteoutPrefix.size());
    if (target.empty() || target == "." || target == "..") return Refuse(path, "is a whiteout of no name");
    stats_.whiteouts.push_back(dir_path.empty() ? target : StrCat(dir_path, "/", target));
    return absl::OkStatus();
  }

  const mode_t type = archive_entry_filetype(e);
  const mode_t perm = archive_entry_perm(e) & 07777;
  const uid_t uid = static_cast<uid_t>(archive_entry_uid(e));
  const gid_t gid = static_cast<gid_t>(archive_entry_gid(e));
  const timespec mtime{archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
  const timespec times[2] = {mtime, mtime};
  if (const char* link = archive_entry_hardlink(e); link != nullptr) {
    ASSIGN_OR_RETURN(const std::string target, NormalizeEntryName(link, digest_, StrCat("hardlink \"", raw, "\" to")));
    if (!files_.count(target)) {
      return Refuse(path, StrCat("is a hardlink to /", target, ", which is not a file made earlier in this layer"));
    }
    ASSIGN_OR_RETURN(UniqueFd tdir, OpenParent(target, /*create=*/false));
    ASSIGN_OR_RETURN(UniqueFd dir, OpenParent(path, /*create=*/true));
    RETURN_IF_ERROR(ClearFor(dir.get(), name, path, /*new_is_dir=*/false));
    const std::string tname = target.substr(target.rfind('/') == std::string::npos ? 0 : target.rfind('/') + 1);
    if (::linkat(tdir.get(), tname.c_str(), dir.get(), name.c_str(), 0) != 0) return Errno("link", path);
    files_.insert(path);
    return absl::OkStatus();
  }
  if (type == AE_IFCHR || type == AE_IFBLK) {
    ++stats_.skipped_devices;  // never a device node of the host on the share
    return absl::OkStatus();
  }
  if (type == AE_IFSOCK) return absl::OkStatus();  // a socket file is nothing without its listener
  ASSIGN_OR_RETURN(UniqueFd dir, OpenParent(path, /*create=*/true));
  RETURN_IF_ERROR(ClearFor(dir.get(), name, path, /*new_is_dir=*/type == AE_IFDIR));
  switch (type) {
    case AE_IFDIR: {
      if (::mkdirat(dir.get(), name.c_str(), 0700) != 0 && errno != EEXIST) return Errno("mkdir", path);
      UniqueFd d(OpenBeneath(dir.get(), name, O_RDONLY | O_DIRECTORY));
      if (!d.valid()) return Errno("open", path);
      // chown first: it clears the setgid bit the mode may carry.
      if (::fchown(d.get(), uid, gid) != 0 || ::fchmod(d.get(), perm) != 0) return Errno("chown/chmod", path);
      dir_times_.emplace_back(path, mtime);  // set last: entries below change it
      return absl::OkStatus();
    }
    case AE_IFREG: {
      UniqueFd f(::openat(dir.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!f.valid()) return Errno("create", path);
      RETURN_IF_ERROR(WriteFile(a, e, f.get(), path));
      if (::fchown(f.get(), uid, gid) != 0 || ::fchmod(f.get(), perm) != 0) return Errno("chown/chmod", path);
      archive_entry_xattr_reset(e);
      const char* xname = nullptr;
      const void* xvalue = nullptr;
      size_t xsize = 0;
      while (archive_entry_xattr_next(e, &xname, &xvalue, &xsize) == ARCHIVE_OK) {
        if (xname == nullptr || std::strcmp(xname, kCapabilityXattr) != 0 || xsize > kMaxCapabilityXattr) continue;
        if (::fsetxattr(f.get(), kCapabilityXattr, xvalue, xsize, 0) != 0) return Errno("set file capabilities", path);
      }
      if (::futimens(f.get(), times) != 0) return Errno("set times", path);
      files_.insert(path);
      return absl::OkStatus();
    }
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(e);
      if (::symlinkat(target ? target : "", dir.get(), name.c_str()) != 0) return Errno("symlink", path);
      if (::fchownat(dir.get(), name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0) return Errno("chown", path);
      if (::utimensat(dir.get(), name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) return Errno("set times", path);
      files_.insert(path);
      return absl::OkStatus();
    }
    case AE_IFIFO: {
      if (::mknodat(dir.get(), name.c_str(), S_IFIFO | 0600, 0) != 0) return Errno("mkfifo", path);
      // By name: opening a FIFO for I/O would block. Nothing else writes
      // below `dir` meanwhile, so the name is the FIFO just made.
      if (::fchownat(dir.get(), name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0 ||
          ::fchmodat(dir.get(), name.c_str(), perm, 0) != 0) {
        return Errno("chown/chmod", path);
      }
      if (::utimensat(dir.get(), name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) return Errno("set times", path);
      files_.insert(path);
      return absl::OkStatus();
    }
    default:
      return Refuse(path, StrCat("has tar type ", type, ", which a layer does not use"));
  }
}

absl::Status Unpacker::Finish() {
  for (auto it = dir_times_.rbegin(); it != dir_times_.rend(); ++it) {
    const std::string& path = it->first;
    ASSIGN_OR_RETURN(UniqueFd dir, OpenParent(path, /*create=*/false));
    const std::string name = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
    UniqueFd d(OpenBeneath(dir.get(), name, O_RDONLY | O_DIRECTORY));
    const timespec times[2] = {it->second, it->second};
    if (!d.valid() || ::futimens(d.get(), times) != 0) return Errno("set times", path);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyOverlayMarks(const std::filesystem::path& out_dir, const UnpackStats& marks) {
  UniqueFd root(::open(out_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", out_dir.string(), "\""));
  Unpacker walk(root.get(), "(marks)");
  auto clean = [](const std::string& p, bool root_ok) -> absl::Status {
    absl::StatusOr<std::string> n = NormalizeEntryName(p, "(marks)", "path");
    if (!n.ok()) return n.status();
    if (*n != p || (p.empty() && !root_ok)) {
      return absl::InvalidArgumentError(StrCat("overlay mark \"", p, "\" is not a clean relative path"));
    }
    return absl::OkStatus();
  };
  for (const std::string& p : marks.whiteouts) {
    RETURN_IF_ERROR(clean(p, false));
    ASSIGN_OR_RETURN(UniqueFd dir, walk.OpenParentOf(p));
    const std::string name = p.substr(p.rfind('/') == std::string::npos ? 0 : p.rfind('/') + 1);
    struct stat st {};
    if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) continue;  // the layer's own entry wins
    if (::mknodat(dir.get(), name.c_str(), S_IFCHR | 0, ::makedev(0, 0)) != 0) {
      return absl::ErrnoToStatus(errno, StrCat("whiteout /", p));
    }
  }
  for (const std::string& p : marks.opaque_dirs) {
    RETURN_IF_ERROR(clean(p, true));
    UniqueFd d;
    if (p.empty()) {
      d = UniqueFd(::fcntl(root.get(), F_DUPFD_CLOEXEC, 0));
    } else {
      ASSIGN_OR_RETURN(UniqueFd dir, walk.OpenParentOf(p));
      d = UniqueFd(OpenBeneath(dir.get(), p.substr(p.rfind('/') == std::string::npos ? 0 : p.rfind('/') + 1),
                               O_RDONLY | O_DIRECTORY));
    }
    if (!d.valid() || ::fsetxattr(d.get(), kOpaqueXattr, "y", 1, 0) != 0) {
      return absl::ErrnoToStatus(errno, StrCat("mark /", p, " opaque"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<UnpackStats> UnpackLayer(BlobSource& source, const Descriptor& layer,
                                        const std::filesystem::path& out_dir, const ExtractLimits& limits,
                                        LayerBudget* budget) {
  UniqueFd root(::open(out_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", out_dir.string(), "\""));
  Unpacker u(root.get(), layer.digest);
  RETURN_IF_ERROR(ReadLayer(source, layer, limits, budget, [&](archive* a, archive_entry* e) { return u.Apply(a, e); }));
  RETURN_IF_ERROR(u.Finish());
  return u.stats();
}

}  // namespace kvcri::runtime::image
