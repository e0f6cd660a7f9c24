// CRI devices and mounts of a VM container: validation, translation to disks and shares, seed files.
#include "cri/validate_volumes.h"
#include "cri/volumes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <set>
#include <vector>

#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"
#include "runtime/domain_xml.h"

namespace kvcri::cri {

using base::StrCat;

namespace {

constexpr std::string_view kSeedDiskSerial = "cidata";  // the seed disk's serial (container_lifecycle.cc)

bool IsTagChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

// FNV-1a: a stable 32-bit hash, the same on every host and release.
std::string Hash8(std::string_view s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", h);
  return buf;
}

// `name` when it fits and has only tag characters; otherwise a sanitized
// prefix, '-' and a hash of the whole container path, so it stays unique.
std::string ShortName(std::string_view container_path, std::string_view name, size_t max_len,
                      std::string_view reserved) {
  bool clean = !name.empty() && name.size() <= max_len && name != reserved && name.front() != '.';
  for (char c : name) clean = clean && IsTagChar(c);
  if (clean) return std::string(name);
  std::string prefix;
  for (char c : name) prefix += IsTagChar(c) ? c : '-';
  prefix = prefix.substr(0, max_len - 9);
  if (prefix.empty() || prefix.front() == '.') prefix = "v" + prefix.substr(0, max_len - 10);
  return StrCat(prefix, "-", Hash8(container_path));
}

std::string Slashes(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c == '/') c = '-';
  }
  return out;
}

bool HasControlChars(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// An absolute, normalized path: no "." or ".." components, no "//", no
// trailing '/', not "/" itself.
absl::Status CheckAbsolutePath(std::string_view field, std::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError(StrCat(field, " is empty"));
  if (HasControlChars(path)) return absl::InvalidArgumentError(StrCat(field, " contains control characters"));
  if (path.front() != '/') {
    return absl::InvalidArgumentError(StrCat(field, " \"", path, "\" is not an absolute path"));
  }
  if (path == "/") return absl::InvalidArgumentError(StrCat(field, " is \"/\""));
  std::filesystem::path p{std::string(path)};
  if (p.lexically_normal().native() != path || path.back() == '/') {
    return absl::InvalidArgumentError(
        StrCat(field, " \"", path, "\" is not normalized (\".\", \"..\", \"//\" or a trailing '/')"));
  }
  return absl::OkStatus();
}

absl::Status ErrnoError(int err, std::string_view field, std::string_view path, std::string_view what) {
  if (err == ENOENT || err == ENOTDIR) {
    return absl::NotFoundError(StrCat(field, " \"", path, "\" does not exist on the host"));
  }
  return absl::ErrnoToStatus(err, StrCat(field, " \"", path, "\": ", what));
}

// A host path opened once (O_PATH), with its type and canonical name. Later
// steps use the canonical name and, for file contents, the same inode.
struct Resolved {
  base::UniqueFd fd;
  struct stat st {};
  std::string canonical;
};

absl::StatusOr<Resolved> Resolve(std::string_view field, std::string_view path, bool follow_final_symlink) {
  RETURN_IF_ERROR(CheckAbsolutePath(field, path));
  Resolved r;
  const std::string p(path);
  r.fd.Reset(::open(p.c_str(), O_PATH | O_CLOEXEC | (follow_final_symlink ? 0 : O_NOFOLLOW)));
  if (!r.fd.valid()) return ErrnoError(errno, field, path, "open");
  if (::fstat(r.fd.get(), &r.st) != 0) return ErrnoError(errno, field, path, "fstat");
  if (S_ISLNK(r.st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlink(p.c_str(), target, sizeof target - 1);
    std::string to = n > 0 ? std::string(target, static_cast<size_t>(n)) : std::string("?");
    return absl::InvalidArgumentError(StrCat(field, " \"", path, "\" is a symlink (to \"", to,
                                             "\"); kubevirt-cri refuses symlinked mount sources, give the real path"));
  }
  char link[4096];
  const std::string proc = StrCat("/proc/self/fd/", r.fd.get());
  ssize_t n = ::readlink(proc.c_str(), link, sizeof link - 1);
  if (n <= 0) return ErrnoError(errno, field, path, "readlink /proc/self/fd");
  r.canonical.assign(link, static_cast<size_t>(n));
  if (r.canonical.front() != '/' || HasControlChars(r.canonical)) {
    return absl::InvalidArgumentError(StrCat(field, " \"", path, "\" resolves to \"", r.canonical,
                                             "\", which is not a usable host path"));
  }
  return r;
}

// Reads a regular file through the O_PATH descriptor: the inode checked,
// not whatever the path names by now.
absl::StatusOr<std::string> ReadResolvedFile(std::string_view field, const Resolved& r) {
  if (r.st.st_size > kMaxFileMountBytes) {
    return absl::InvalidArgumentError(StrCat(field, " \"", r.canonical, "\" is a file of ", r.st.st_size,
                                             " bytes; single-file mounts are copied into the guest and limited to ",
                                             kMaxFileMountBytes, " bytes (mount its directory instead)"));
  }
  const std::string proc = StrCat("/proc/self/fd/", r.fd.get());
  base::UniqueFd fd(::open(proc.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) return ErrnoError(errno, field, r.canonical, "open for reading");
  std::string content;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, field, r.canonical, "read");
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
    if (static_cast<int64_t>(content.size()) > kMaxFileMountBytes) {
      return absl::InvalidArgumentError(StrCat(field, " \"", r.canonical, "\" grew past ", kMaxFileMountBytes,
                                               " bytes while being read"));
    }
  }
  return content;
}

const char* FileTypeName(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "of an unknown type";
}

// Opens the canonical `path` one component at a time from "/" with
// O_NOFOLLOW, so nothing in it is followed: an intermediate directory swapped
// for a symlink since CreateContainer (which resolved every symlink once)
// makes this fail instead of leading somewhere else.
absl::Status OpenWithoutSymlinks(const std::string& path, base::UniqueFd* out, struct stat* st) {
  base::UniqueFd dir(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return absl::ErrnoToStatus(errno, "open \"/\"");
  std::filesystem::path p(path);
  std::vector<std::string> parts;
  for (const auto& part : p.relative_path()) parts.push_back(part.string());
  if (parts.empty()) return absl::InvalidArgumentError(StrCat("\"", path, "\" has no components"));
  std::string walked;
  for (size_t i = 0; i < parts.size(); ++i) {
    walked += "/" + parts[i];
    const bool last = i + 1 == parts.size();
    base::UniqueFd next(
        ::openat(dir.get(), parts[i].c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC | (last ? 0 : O_DIRECTORY)));
    if (!next.valid()) {
      if (errno == ENOTDIR || errno == ELOOP) {
        return absl::FailedPreconditionError(StrCat("\"", walked, "\" is no longer a directory (a symlink now?)"));
      }
      return absl::ErrnoToStatus(errno, StrCat("open \"", walked, "\""));
    }
    dir = std::move(next);
  }
  if (::fstat(dir.get(), st) != 0) return absl::ErrnoToStatus(errno, StrCat("fstat \"", path, "\""));
  if (S_ISLNK(st->st_mode)) return absl::FailedPreconditionError(StrCat("\"", path, "\" is now a symlink"));
  *out = std::move(dir);
  return absl::OkStatus();
}

bool SelinuxEnabled() { return ::access("/sys/fs/selinux/enforce", F_OK) == 0; }

absl::Status CheckMountOptions(std::string_view field, const pb::Mount& m) {
  if (m.propagation() != pb::PROPAGATION_PRIVATE) {
    return absl::InvalidArgumentError(
        StrCat(field, ".propagation ", pb::MountPropagation_Name(m.propagation()),
               " is not supported: a VM guest cannot share mount events with the host; use PROPAGATION_PRIVATE "
               "(mountPropagation None)"));
  }
  if (m.selinux_relabel() && SelinuxEnabled()) {
    // Without SELinux there is nothing to relabel (containerd ignores it too).
    return absl::InvalidArgumentError(
        StrCat(field, ".selinux_relabel is set and SELinux is enabled, but kubevirt-cri does not relabel volumes"));
  }
  if (m.uidmappings_size() > 0 || m.gidmappings_size() > 0) {
    return absl::InvalidArgumentError(StrCat(field, ".uidMappings/gidMappings (id-mapped mounts) are not supported"));
  }
  if (m.recursive_read_only() && !m.readonly()) {
    return absl::InvalidArgumentError(StrCat(field, ".recursive_read_only needs readonly"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string DiskSerialFor(std::string_view container_path) {
  std::string_view name = container_path;
  if (name.substr(0, 5) == "/dev/") {
    name.remove_prefix(5);
  } else if (!name.empty() && name.front() == '/') {
    name.remove_prefix(1);
  }
  return ShortName(container_path, Slashes(name), runtime::kMaxDiskSerialLength, kSeedDiskSerial);
}

std::string MountTagFor(std::string_view container_path) {
  std::string_view name = container_path;
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  return ShortName(container_path, Slashes(name), runtime::kMaxMountTagLength, "");
}

runtime::FsDriver FsDriverFor(bool read_only, const VolumeOptions& options) {
  // libvirt 9.0 refuses read-only virtio-fs and Debian 12's virtiofsd has no
  // read-only mode; QEMU's 9p server enforces readonly itself.
  if (read_only) return runtime::FsDriver::k9p;
  if (!options.virtiofsd.empty() && ::access(options.virtiofsd.c_str(), X_OK) == 0) {
    return runtime::FsDriver::kVirtiofs;
  }
  return runtime::FsDriver::k9p;
}

absl::StatusOr<VolumePlan> ValidateVolumes(const pb::ContainerConfig& config) {
  VolumePlan plan;
  std::set<std::string> container_paths;
  std::set<std::string> serials, tags;
  std::map<dev_t, int> device_numbers;  // st_rdev -> index in config.devices
  auto claim_path = [&](const std::string& field, const std::string& path) -> absl::Status {
    RETURN_IF_ERROR(CheckAbsolutePath(field, path));
    if (!container_paths.insert(path).second) {
      return absl::InvalidArgumentError(
          StrCat(field, " \"", path, "\" is used by another device or mount of this container"));
    }
    return absl::OkStatus();
  };

  for (int i = 0; i < config.devices_size(); ++i) {
    const pb::Device& d = config.devices(i);
    const std::string field = StrCat("config.devices[", i, "]");
    RETURN_IF_ERROR(claim_path(StrCat(field, ".container_path"), d.container_path()));
    std::string perms = d.permissions().empty() ? "rwm" : d.permissions();
    if (perms.find_first_not_of("rwm") != std::string::npos) {
      return absl::InvalidArgumentError(
          StrCat(field, ".permissions \"", d.permissions(), "\" has characters other than r, w and m"));
    }
    // A device path may be a symlink (kubelet hands CSI block volumes as a
    // symlink in the Pod's volumeDevices directory): what it names must be a
    // block device, and the VM gets exactly that device.
    ASSIGN_OR_RETURN(Resolved r, Resolve(StrCat(field, ".host_path"), d.host_path(), /*follow_final_symlink=*/true));
    if (!S_ISBLK(r.st.st_mode)) {
      return absl::InvalidArgumentError(StrCat(field, ".host_path \"", d.host_path(), "\" is ",
                                               FileTypeName(r.st.st_mode),
                                               ", not a block device; a VM gets only block devices as disks"));
    }
    // Two paths may name one device (kubelet's per-Pod symlinks): given
    // twice, the guest would write through two disks at once.
    if (auto [it, fresh] = device_numbers.emplace(r.st.st_rdev, i); !fresh) {
      return absl::InvalidArgumentError(StrCat(field, ".host_path \"", d.host_path(), "\" is block device ",
                                               major(r.st.st_rdev), ":", minor(r.st.st_rdev),
                                               ", which config.devices[", it->second,
                                               "] already gives this container; give each device once"));
    }
    std::string serial = DiskSerialFor(d.container_path());
    if (!serials.insert(serial).second) {
      return absl::InvalidArgumentError(StrCat(field, ".container_path \"", d.container_path(),
                                               "\" gives the same disk serial \"", serial,
                                               "\" as another device; rename one of them"));
    }
    plan.devices.push_back({d.container_path(), r.canonical, perms, static_cast<uint64_t>(r.st.st_rdev)});
  }

  size_t directories = 0;
  for (int i = 0; i < config.mounts_size(); ++i) {
    const pb::Mount& m = config.mounts(i);
    const std::string field = StrCat("config.mounts[", i, "]");
    if (m.host_path().empty() && m.has_image() && !m.image().image().empty()) {
      return absl::InvalidArgumentError(StrCat(field, ".image (image volumes) is not supported"));
    }
    RETURN_IF_ERROR(claim_path(StrCat(field, ".container_path"), m.container_path()));
    RETURN_IF_ERROR(CheckMountOptions(field, m));
    ASSIGN_OR_RETURN(Resolved r, Resolve(StrCat(field, ".host_path"), m.host_path(), /*follow_final_symlink=*/false));
    if (S_ISDIR(r.st.st_mode)) {
      std::string tag = MountTagFor(m.container_path());
      if (!tags.insert(tag).second) {
        return absl::InvalidArgumentError(StrCat(field, ".container_path \"", m.container_path(),
                                                 "\" gives the same mount tag \"", tag,
                                                 "\" as another mount; rename one of them"));
      }
      ++directories;
    } else if (S_ISREG(r.st.st_mode)) {
      ASSIGN_OR_RETURN(std::string content, ReadResolvedFile(StrCat(field, ".host_path"), r));
      plan.files.push_back({m.container_path(), std::move(content), m.readonly()});
    } else {
      return absl::InvalidArgumentError(StrCat(field, ".host_path \"", m.host_path(), "\" is ",
                                               FileTypeName(r.st.st_mode),
                                               "; a mount must be a directory or a regular file"));
    }
    plan.mounts.push_back({m.container_path(), r.canonical, m.readonly(), static_cast<uint64_t>(r.st.st_dev),
                           static_cast<uint64_t>(r.st.st_ino)});
  }
  if (plan.files.size() > kMaxFileMounts) {
    return absl::InvalidArgumentError(StrCat("config has ", plan.files.size(),
                                             " single-file mounts; a VM takes at most ", kMaxFileMounts,
                                             " (they are copied into its cloud-init seed)"));
  }
  if (plan.devices.size() + directories > kMaxVolumes) {
    return absl::InvalidArgumentError(StrCat("config has ", plan.devices.size(), " devices and ", directories,
                                             " directory mounts; a VM takes at most ", kMaxVolumes, " in all"));
  }
  return plan;
}

std::vector<runtime::VfatFile> VolumeSeedFiles(const VolumePlan& plan, const VolumeOptions& options,
                                               std::string_view boot_device, std::string_view nvram_device) {
  std::vector<runtime::VfatFile> files;
  if (plan.devices.empty() && plan.mounts.empty()) return files;
  std::string table = "# kubevirt-cri volume table v1 (docs/volumes.md)\n";
  for (const sandbox::DeviceSpec& d : plan.devices) {
    if (!nvram_device.empty() && d.container_path == nvram_device) continue;  // the firmware's, not a guest disk
    bool ro = d.permissions.find('w') == std::string::npos;
    const char* kind = !boot_device.empty() && d.container_path == boot_device ? "boot " : "disk ";
    table += StrCat(kind, DiskSerialFor(d.container_path), ro ? " ro " : " rw ", d.container_path, "\n");
  }
  std::set<std::string> file_paths;
  for (const FileMount& f : plan.files) file_paths.insert(f.container_path);
  for (const sandbox::MountSpec& m : plan.mounts) {
    if (file_paths.count(m.container_path) > 0) continue;
    bool virtiofs = FsDriverFor(m.readonly, options) == runtime::FsDriver::kVirtiofs;
    table += StrCat("fs ", MountTagFor(m.container_path), m.readonly ? " ro " : " rw ", virtiofs ? "virtiofs " : "9p ",
                    m.container_path, "\n");
  }
  std::vector<runtime::VfatFile> contents;
  for (size_t i = 0; i < plan.files.size(); ++i) {
    const FileMount& f = plan.files[i];
    std::string name = StrCat(kVolumeFilePrefix, i);
    table += StrCat("file ", name, f.read_only ? " ro " : " rw ", f.container_path, "\n");
    contents.push_back({name, f.content});
  }
  files.push_back({kVolumeTableFile, std::move(table)});
  for (runtime::VfatFile& f : contents) files.push_back(std::move(f));
  return files;
}

namespace {

absl::StatusOr<std::optional<size_t>> DeviceIndexFor(const std::map<std::string, std::string>& pod_annotations,
                                                     const VolumePlan& plan, std::string_view annotation,
                                                     std::string_view what) {
  auto it = pod_annotations.find(std::string(annotation));
  if (it == pod_annotations.end()) return std::nullopt;
  const std::string field = StrCat("annotation ", annotation);
  RETURN_IF_ERROR(CheckAbsolutePath(field, it->second));
  std::string paths;
  for (size_t i = 0; i < plan.devices.size(); ++i) {
    if (plan.devices[i].container_path == it->second) return i;
    paths += StrCat(paths.empty() ? "" : ", ", "\"", plan.devices[i].container_path, "\"");
  }
  return absl::InvalidArgumentError(StrCat(field, " \"", it->second, "\" names none of the container's devices (config.devices: ",
                                           paths.empty() ? "none" : paths, "); ", what,
                                           " a raw block volume given to the container at that path (a volumeDevices "
                                           "entry with devicePath \"",
                                           it->second, "\")"));
}

}  // namespace

absl::StatusOr<std::optional<size_t>> BootDeviceIndex(const std::map<std::string, std::string>& pod_annotations,
                                                      const VolumePlan& plan) {
  return DeviceIndexFor(pod_annotations, plan, kBootDeviceAnnotation, "the VM boots from");
}

absl::StatusOr<std::optional<size_t>> NvramDeviceIndex(const std::map<std::string, std::string>& pod_annotations,
                                                       const VolumePlan& plan) {
  return DeviceIndexFor(pod_annotations, plan, kNvramDeviceAnnotation, "the VM keeps its UEFI variable store on");
}

bool DeviceOpensConflict(std::string_view permissions_a, std::string_view permissions_b) {
  auto writes = [](std::string_view p) { return p.empty() || p.find('w') != std::string_view::npos; };
  return writes(permissions_a) || writes(permissions_b);
}

uint64_t DeviceNumberOf(const sandbox::DeviceSpec& d) {
  if (d.host_rdev != 0) return d.host_rdev;
  struct stat st {};
  if (d.host_path.empty() || ::stat(d.host_path.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) return 0;
  return static_cast<uint64_t>(st.st_rdev);
}

absl::Status VerifyVolumesUnchanged(const sandbox::ContainerRecord& c) {
  for (size_t i = 0; i < c.devices.size(); ++i) {
    const sandbox::DeviceSpec& d = c.devices[i];
    base::UniqueFd fd;
    struct stat st {};
    absl::Status opened = OpenWithoutSymlinks(d.host_path, &fd, &st);
    if (!opened.ok() || !S_ISBLK(st.st_mode) || (d.host_rdev != 0 && st.st_rdev != d.host_rdev)) {
      return absl::FailedPreconditionError(StrCat("container \"", c.id, "\" devices[", i, "].host_path \"", d.host_path,
                                                  "\" is no longer the block device CreateContainer checked",
                                                  opened.ok() ? "" : StrCat(": ", base::Sv(opened.message()))));
    }
  }
  for (size_t i = 0; i < c.mounts.size(); ++i) {
    const sandbox::MountSpec& m = c.mounts[i];
    base::UniqueFd fd;
    struct stat st {};
    absl::Status opened = OpenWithoutSymlinks(m.host_path, &fd, &st);
    const bool same = opened.ok() && (m.host_ino == 0 || (st.st_dev == m.host_dev && st.st_ino == m.host_ino));
    if (!same || !(S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))) {
      return absl::FailedPreconditionError(StrCat("container \"", c.id, "\" mounts[", i, "].host_path \"", m.host_path,
                                                  "\" is no longer the directory or file CreateContainer checked",
                                                  opened.ok() ? "" : StrCat(": ", base::Sv(opened.message()))));
    }
  }
  return absl::OkStatus();
}

runtime::DiskSpec BlockVolumeDisk(const sandbox::DeviceSpec& d) {
  runtime::DiskSpec disk;
  disk.path = d.host_path;
  disk.format = "raw";  // a block volume is the guest's disk as is, never probed
  disk.read_only = d.permissions.find('w') == std::string::npos;
  disk.serial = DiskSerialFor(d.container_path);
  disk.block_device = true;
  // Shared storage: no host page cache (another node may attach the volume
  // next), Linux native AIO on O_DIRECT.
  disk.cache = "none";
  disk.io = "native";
  return disk;
}

absl::Status AddVolumesToVmSpec(const sandbox::ContainerRecord& c, const VolumeOptions& options,
                                runtime::VmSpec* spec) {
  RETURN_IF_ERROR(VerifyVolumesUnchanged(c));
  bool boot_found = c.boot.device.empty();
  for (size_t i = 0; i < c.devices.size(); ++i) {
    const sandbox::DeviceSpec& d = c.devices[i];
    // The UEFI variable store: QEMU's pflash (<nvram type='block'>), not a disk.
    if (!c.boot.nvram_device.empty() && d.container_path == c.boot.nvram_device) continue;
    runtime::DiskSpec disk = BlockVolumeDisk(d);
    if (!c.boot.device.empty() && d.container_path == c.boot.device) {
      // The persistent disk, in place (no overlay): first, so a guest names
      // it vda whatever else it has, and the firmware's first choice.
      disk.boot = spec->kernel.empty();
      spec->disks.insert(spec->disks.begin(), std::move(disk));
      boot_found = true;
      continue;
    }
    spec->disks.push_back(std::move(disk));
  }
  if (!boot_found) {
    return absl::FailedPreconditionError(StrCat("container \"", c.id, "\" boots from device \"", c.boot.device,
                                                "\", which is none of its devices"));
  }
  for (size_t i = 0; i < c.mounts.size(); ++i) {
    const sandbox::MountSpec& m = c.mounts[i];
    base::UniqueFd fd;
    struct stat st {};
    RETURN_IF_ERROR(OpenWithoutSymlinks(m.host_path, &fd, &st));
    if (S_ISREG(st.st_mode)) continue;  // copied into the seed at CreateContainer
    runtime::FilesystemSpec fs;
    fs.source_dir = m.host_path;
    fs.tag = MountTagFor(m.container_path);
    fs.read_only = m.readonly;
    fs.driver = FsDriverFor(m.readonly, options);
    if (fs.driver == runtime::FsDriver::kVirtiofs) fs.virtiofsd = options.virtiofsd;
    spec->filesystems.push_back(std::move(fs));
  }
  return absl::OkStatus();
}

}  // namespace kvcri::cri
