// NvramSlice: a loop device over a block volume's first bytes, opened by QEMU through a node of its own.
#include "runtime/nvram_slice.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "config/base/file_util.h"
#include "config/base/str.h"

namespace kvcri::runtime {

using base::StrCat;


absl::StatusOr<NvramSlice> NvramSlice::Attach(const std::filesystem::path& device, uint64_t size,
                                              const std::filesystem::path& node, uid_t uid, gid_t gid) {
  struct statvfs vfs {};
  if (::statvfs(node.parent_path().c_str(), &vfs) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("statvfs \"", node.parent_path().native(), "\""));
  }
  if ((vfs.f_flag & ST_NODEV) != 0) {
    return absl::FailedPreconditionError(
        StrCat("\"", node.parent_path().native(),
               "\" is on a filesystem mounted nodev, where QEMU cannot open the UEFI variable store's device node; "
               "put the daemon's root on a filesystem without nodev"));
  }
  base::UniqueFd backing(::open(device.c_str(), O_RDWR | O_CLOEXEC));
  if (!backing.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", device.native(), "\""));
  absl::StatusOr<uint64_t> have = base::FileOrBlockDeviceSize(backing.get(), device);
  if (!have.ok()) return have.status();
  if (*have < size) {
    return absl::InvalidArgumentError(
        StrCat("\"", device.native(), "\" has ", *have, " bytes; the UEFI variable store needs ", size));
  }
  base::UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control.valid()) {
    return absl::FailedPreconditionError(StrCat("open /dev/loop-control: ", std::strerror(errno),
                                                " (a persistent VM's UEFI variable store needs loop devices: "
                                                "modprobe loop)"));
  }
  loop_config config{};
  config.fd = static_cast<uint32_t>(backing.get());
  config.info.lo_sizelimit = size;
  config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
  // GET_FREE and CONFIGURE are two steps: another process (losetup, another
  // Pod's start) can bind the same number in between, which is EBUSY.
  for (int attempt = 0; attempt < 16; ++attempt) {
    int number = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (number < 0) return absl::ErrnoToStatus(errno, "LOOP_CTL_GET_FREE");
    const std::string loop_path = StrCat("/dev/loop", number);
    base::UniqueFd loop(::open(loop_path.c_str(), O_RDWR | O_CLOEXEC));
    if (!loop.valid()) return absl::ErrnoToStatus(errno, StrCat("open ", loop_path));
    if (::ioctl(loop.get(), LOOP_CONFIGURE, &config) != 0) {
      if (errno == EBUSY) continue;
      return absl::ErrnoToStatus(errno, StrCat("LOOP_CONFIGURE ", loop_path, " over \"", device.native(), "\""));
    }
    // From here on closing `loop` detaches it (autoclear).
    absl::StatusOr<uint64_t> sliced = base::FileOrBlockDeviceSize(loop.get(), loop_path);
    if (!sliced.ok()) return sliced.status();
    if (*sliced != size) {
      return absl::InternalError(StrCat(loop_path, " over \"", device.native(), "\" has ", *sliced,
                                        " bytes, not the ", size, " asked for"));
    }
    struct stat st {};
    if (::fstat(loop.get(), &st) != 0) return absl::ErrnoToStatus(errno, StrCat("stat ", loop_path));
    // A node left by a daemon killed mid-start points at a number the kernel
    // may have reused: never trust it.
    if (::unlink(node.c_str()) != 0 && errno != ENOENT) {
      return absl::ErrnoToStatus(errno, StrCat("unlink \"", node.native(), "\""));
    }
    if (::mknod(node.c_str(), S_IFBLK | 0600, st.st_rdev) != 0) {
      return absl::ErrnoToStatus(errno, StrCat("mknod \"", node.native(), "\""));
    }
    NvramSlice slice(std::move(loop), number, node);
    if (::lchown(node.c_str(), uid, gid) != 0) {
      return absl::ErrnoToStatus(errno, StrCat("chown \"", node.native(), "\""));
    }
    return slice;
  }
  return absl::UnavailableError(StrCat("no free loop device for \"", device.native(), "\" after 16 tries"));
}

NvramSlice::NvramSlice(NvramSlice&& other) noexcept
    : loop_(std::move(other.loop_)), number_(std::exchange(other.number_, -1)), node_(std::move(other.node_)) {
  other.node_.clear();
}

NvramSlice& NvramSlice::operator=(NvramSlice&& other) noexcept {
  if (this != &other) {
    Release();
    loop_ = std::move(other.loop_);
    number_ = std::exchange(other.number_, -1);
    node_ = std::move(other.node_);
    other.node_.clear();
  }
  return *this;
}

NvramSlice::~NvramSlice() { Release(); }

void NvramSlice::Release() {
  if (!node_.empty()) ::unlink(node_.c_str());
  node_.clear();
  loop_.Reset();  // autoclear: detached unless QEMU holds it
  number_ = -1;
}

}  // namespace kvcri::runtime
