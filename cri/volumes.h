// Volumes of a VM container: the proto-free plan, its seed table and its VM devices.
#pragma once

// A VM container's CRI `devices` and `mounts` (docs/volumes.md):
// - CreateContainer validates them (ValidateVolumes): host paths resolved once,
//   symlinks and unsupported options refused with INVALID_ARGUMENT/NOT_FOUND
//   naming the field, before anything is created;
// - the guest learns the mapping from a table in the cloud-init seed
//   (VolumeSeedFiles);
// - StartContainer turns them into virtio-blk disks and shared directories of
//   the VM (AddVolumesToVmSpec). They live and die with the libvirt domain.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/hypervisor.h"
#include "runtime/vfat_image.h"
#include "sandbox/records.h"

namespace kvcri::cri {

// Debian 12's (C) virtiofsd, from package qemu-system-common.
inline constexpr char kVirtiofsdPath[] = "/usr/lib/qemu/virtiofsd";
// The seed file the guest reads its volume table from.
inline constexpr char kVolumeTableFile[] = "kubevirt-cri-volumes";
// The Pod annotation (PodSandboxConfig.annotations) naming the container path
// of one of the container's CRI devices: the VM boots from that block device,
// used in place as its persistent disk (docs/volumes.md "Persistent VMs").
inline constexpr char kBootDeviceAnnotation[] = "kubevirt-cri.io/boot-device";
// A UEFI VM's variable store on a CRI device (docs/volumes.md "The UEFI variable store").
inline constexpr char kNvramDeviceAnnotation[] = "kubevirt-cri.io/nvram-device";
// Seed files holding single-file mounts are named kVolumeFilePrefix + index.
inline constexpr char kVolumeFilePrefix[] = "kubevirt-cri-file-";
// A single-file mount (/etc/hosts, termination-log) is copied into the seed;
// larger files are refused.
inline constexpr int64_t kMaxFileMountBytes = 1 << 20;
// Devices plus directory mounts: each takes a PCI slot of the i440fx bus.
inline constexpr size_t kMaxVolumes = 16;
// Single-file mounts, each a file in the seed's FAT12 root directory.
inline constexpr size_t kMaxFileMounts = 64;

// A mount of a single regular file, copied into the seed at CreateContainer.
struct FileMount {
  std::string container_path;
  std::string content;
  bool read_only = false;
};

// What CreateContainer accepted. Host paths are canonical (every symlink
// resolved once, here): later steps use exactly these paths.
struct VolumePlan {
  std::vector<sandbox::DeviceSpec> devices;  // block devices
  std::vector<sandbox::MountSpec> mounts;    // directories and regular files
  std::vector<FileMount> files;              // the regular-file mounts, with content
};

struct VolumeOptions {
  // Directory mounts use virtio-fs through this binary when it is executable,
  // virtio-9p otherwise. Read-only ones always use 9p (see docs/volumes.md).
  std::filesystem::path virtiofsd = kVirtiofsdPath;
};


// The virtio-blk serial of a device at `container_path` (<= 20 bytes):
// "/dev/xvdb" -> "xvdb"; longer or unusual paths get a prefix and a hash.
// The guest finds the disk as /dev/disk/by-id/virtio-<serial>.
std::string DiskSerialFor(std::string_view container_path);

// The virtio disk of CRI block device `d`: raw, no host page cache, native
// AIO, read-only unless its permissions write, serial DiskSerialFor.
runtime::DiskSpec BlockVolumeDisk(const sandbox::DeviceSpec& d);

// The mount tag of a directory mounted at `container_path` (<= 36 bytes):
// "/data" -> "data", "/var/lib/x" -> "var-lib-x"; long ones hashed.
std::string MountTagFor(std::string_view container_path);

// virtio-fs for read-write shares when virtiofsd is usable, 9p otherwise.
runtime::FsDriver FsDriverFor(bool read_only, const VolumeOptions& options);

// The seed files the guest needs: the volume table kVolumeTableFile, one line
// per volume,
//   disk <serial> ro|rw <container_path>
//   fs <tag> ro|rw virtiofs|9p <container_path>
//   file <seed file name> ro|rw <container_path>
//   boot <serial> ro|rw <container_path>
// and one kVolumeFilePrefix<n> file per single-file mount. The device at
// `boot_device` (a container path, see BootDeviceIndex) is listed as "boot",
// not "disk": the guest booted from it and must not treat it as a spare
// disk. Empty when the container has no volumes.
std::vector<runtime::VfatFile> VolumeSeedFiles(const VolumePlan& plan, const VolumeOptions& options = {},
                                               std::string_view boot_device = "", std::string_view nvram_device = "");

// The index in plan.devices of the device the Pod's kBootDeviceAnnotation
// names (by container path); nullopt without the annotation.
// InvalidArgument naming the annotation when its value is not an absolute,
// normalized path or names none of the container's devices.
absl::StatusOr<std::optional<size_t>> BootDeviceIndex(const std::map<std::string, std::string>& pod_annotations,
                                                      const VolumePlan& plan);
// The same for kNvramDeviceAnnotation.
absl::StatusOr<std::optional<size_t>> NvramDeviceIndex(const std::map<std::string, std::string>& pod_annotations,
                                                       const VolumePlan& plan);

// Whether two opens of one block device may not coexist on the node: at
// least one of them writes ('w' in the CRI permissions; empty means "rwm").
// A guest caches what it read: a reader beside a writer sees a file system
// change under it, as QEMU's own image locking assumes.
bool DeviceOpensConflict(std::string_view permissions_a, std::string_view permissions_b);

// The block device (st_rdev) a record's device names: host_rdev, or for
// records written before it was kept, a stat of host_path now (0 when that
// is no block device any more).
uint64_t DeviceNumberOf(const sandbox::DeviceSpec& d);

// FailedPrecondition unless every host path of the record still names what
// CreateContainer checked: opened one component at a time without following
// any symlink (an intermediate directory swapped for a symlink is refused),
// the same block device (st_rdev) or the same inode (st_dev, st_ino).
// StartContainer checks before libvirt opens the paths and again after.
absl::Status VerifyVolumesUnchanged(const sandbox::ContainerRecord& c);

// Adds the record's devices (virtio-blk, cache=none, io=native,
// discard=unmap, read-only without 'w' in permissions) and directory mounts
// (virtio-fs or 9p) to `spec`, after VerifyVolumesUnchanged. The device
// named by c.boot.device goes first (vda in a Linux guest), before the disks
// already in `spec`, and is the boot disk (boot order 1) unless the VM boots
// a kernel; the others follow the disks already there.
absl::Status AddVolumesToVmSpec(const sandbox::ContainerRecord& c, const VolumeOptions& options,
                                runtime::VmSpec* spec);

}  // namespace kvcri::cri
