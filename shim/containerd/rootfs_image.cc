// BootFromRootfs, MountRootfs and UnmountRootfs: the container task's image as the VM's (rootfs_image.h).
#include "shim/containerd/rootfs_image.h"

#include <sys/mount.h>
#include <sys/stat.h>

#include <cerrno>
#include <system_error>

#include "config/base/str.h"
#include "runtime/image/disk_format.h"

namespace kvcri::shim::containerd {
namespace fs = std::filesystem;
namespace {

using runtime::image::BootInfo;
using runtime::image::BootKind;

enum class Kind { kMissing, kFile, kDir, kOther };

// lstat: a symlink is kOther, never followed.
absl::StatusOr<Kind> KindOf(const fs::path& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return Kind::kMissing;
    return absl::ErrnoToStatus(errno, base::StrCat("lstat \"", p.string(), "\""));
  }
  if (S_ISREG(st.st_mode)) return Kind::kFile;
  if (S_ISDIR(st.st_mode)) return Kind::kDir;
  return Kind::kOther;
}

absl::Status Refuse(const fs::path& rootfs, const std::string& what) {
  return absl::InvalidArgumentError(base::StrCat("container image rootfs \"", rootfs.string(), "\": ", what));
}

// Entries of a directory cap: an image with more in /disk/ is refused
// before we read them all.
constexpr int kMaxDiskEntries = 64;

}  // namespace

absl::StatusOr<BootInfo> BootFromRootfs(const fs::path& rootfs, const std::string& cmdline) {
  BootInfo boot;
  absl::StatusOr<Kind> disk_dir = KindOf(rootfs / "disk");
  if (!disk_dir.ok()) return disk_dir.status();
  absl::StatusOr<Kind> boot_dir = KindOf(rootfs / "boot");
  if (!boot_dir.ok()) return boot_dir.status();
  if (*disk_dir == Kind::kOther) return Refuse(rootfs, "/disk is not a directory (a symlink?)");
  if (*boot_dir == Kind::kOther) return Refuse(rootfs, "/boot is not a directory (a symlink?)");

  if (*disk_dir == Kind::kDir) {
    std::vector<fs::path> disks;
    std::error_code ec;
    int seen = 0;
    for (fs::directory_iterator it(rootfs / "disk", ec), end; !ec && it != end; it.increment(ec)) {
      if (++seen > kMaxDiskEntries) return Refuse(rootfs, base::StrCat("more than ", kMaxDiskEntries, " entries in /disk"));
      absl::StatusOr<Kind> k = KindOf(it->path());
      if (!k.ok()) return k.status();
      if (*k != Kind::kFile) {
        return Refuse(rootfs, base::StrCat("/disk/", it->path().filename().string(), " is not a regular file"));
      }
      disks.push_back(it->path());
    }
    if (ec) return absl::InternalError(base::StrCat("read \"", (rootfs / "disk").string(), "\": ", ec.message()));
    if (disks.size() > 1) return Refuse(rootfs, base::StrCat(disks.size(), " files in /disk: a containerDisk has one"));
    if (disks.size() == 1) {
      absl::StatusOr<runtime::image::DiskFormatInfo> format = runtime::image::DetectDiskFormat(disks[0]);
      if (!format.ok()) {
        return Refuse(rootfs, base::StrCat("/disk/", disks[0].filename().string(), ": ", format.status().message()));
      }
      boot.disk = disks[0];
      boot.disk_format = format->format;
      boot.disk_virtual_size = format->virtual_size;
    }
  }
  if (*boot_dir == Kind::kDir) {
    absl::StatusOr<Kind> kernel = KindOf(rootfs / "boot" / "vmlinuz");
    if (!kernel.ok()) return kernel.status();
    if (*kernel == Kind::kOther) return Refuse(rootfs, "/boot/vmlinuz is not a regular file");
    if (*kernel == Kind::kFile) {
      boot.kind = BootKind::kKernel;
      boot.kernel = rootfs / "boot" / "vmlinuz";
      boot.cmdline = cmdline;
      absl::StatusOr<Kind> initrd = KindOf(rootfs / "boot" / "initrd.img");
      if (!initrd.ok()) return initrd.status();
      if (*initrd == Kind::kOther) return Refuse(rootfs, "/boot/initrd.img is not a regular file");
      if (*initrd == Kind::kFile) boot.initrd = rootfs / "boot" / "initrd.img";
      return boot;
    }
  }
  if (!boot.disk.empty()) {
    boot.kind = BootKind::kDisk;
    return boot;
  }
  boot.kind = BootKind::kNone;
  boot.unbootable_reason =
      "the image has neither a containerDisk (one file under /disk/) nor a kernel (/boot/vmlinuz): it is a plain "
      "container image, which a kubevirt VM Pod cannot boot";
  return boot;
}

absl::Status MountRootfs(const std::vector<pb::Mount>& mounts, const fs::path& target) {
  for (const pb::Mount& m : mounts) {
    unsigned long flags = 0;
    std::vector<std::string> data;
    bool bind = m.type() == "bind";
    if (!bind && m.type() != "overlay") {
      return absl::InvalidArgumentError(
          base::StrCat("rootfs mount type \"", m.type(), "\" is not supported (overlay or bind)"));
    }
    for (const std::string& o : m.options()) {
      if (o == "ro") {
        flags |= MS_RDONLY;
      } else if (o == "rw") {
      } else if (o == "rbind" && bind) {
        flags |= MS_BIND | MS_REC;
      } else if (o == "bind" && bind) {
        flags |= MS_BIND;
      } else if (o == "nodev") {
        flags |= MS_NODEV;
      } else if (o == "nosuid") {
        flags |= MS_NOSUID;
      } else if (!bind && (o.starts_with("lowerdir=") || o.starts_with("upperdir=") || o.starts_with("workdir=") ||
                           o == "index=off" || o == "userxattr" || o.starts_with("volatile"))) {
        data.push_back(o);
      } else {
        return absl::InvalidArgumentError(base::StrCat("rootfs mount option \"", o, "\" is not supported"));
      }
    }
    if (bind) flags |= MS_BIND;
    std::string joined;
    for (const std::string& d : data) joined += (joined.empty() ? "" : ",") + d;
    // Always nodev: an image's device nodes never open host devices.
    if (::mount(m.source().c_str(), target.c_str(), bind ? nullptr : "overlay", flags | MS_NODEV,
                joined.empty() ? nullptr : joined.c_str()) != 0) {
      return absl::ErrnoToStatus(errno, base::StrCat("mount the rootfs (", m.type(), " \"", m.source(), "\") at \"",
                                                     target.string(), "\""));
    }
    if (bind && (flags & MS_RDONLY)) {
      // A bind mount takes MS_RDONLY only on a remount.
      if (::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NODEV, nullptr) != 0) {
        int e = errno;
        ::umount2(target.c_str(), MNT_DETACH);
        return absl::ErrnoToStatus(e, base::StrCat("remount the rootfs read-only at \"", target.string(), "\""));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status UnmountRootfs(const fs::path& target) {
  // Several mounts may be stacked there: unmount until none is left.
  for (int i = 0; i < 16; ++i) {
    if (::umount2(target.c_str(), MNT_DETACH) != 0) {
      if (errno == EINVAL || errno == ENOENT) return absl::OkStatus();  // not a mount point (any more)
      return absl::ErrnoToStatus(errno, base::StrCat("unmount the rootfs at \"", target.string(), "\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvcri::shim::containerd
