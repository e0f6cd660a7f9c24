// PodLifecycle, the Pod's VM container: create (overlay, seed), start, graceful stop, remove, exit refresh.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <optional>
#include <set>

#include "absl/time/clock.h"
#include "config/base/clock.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/metrics.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

#include "cri/pod_lifecycle.h"
#include "sandbox/uid_claims.h"
#include "cri/pod_network_spec.h"
#include "cri/vm_size.h"
#include "cri/volumes.h"
#include "runtime/cgroup/cgroup_placer.h"
#include "runtime/cloud_init_seed.h"
#include "runtime/console_log.h"
#include "runtime/domain_xml.h"
#include "runtime/firmware.h"
#include "runtime/hypervisor.h"
#include "runtime/image/image_store.h"
#include "runtime/image/overlay.h"
#include "runtime/vm_confinement.h"
#include "sandbox/sandbox_store.h"

namespace kvcri::cri {

using base::StrCat;
using Mode = OpTracker::Mode;

// Pod annotation overriding a kernel-boot image's command line.
inline constexpr char kCmdlineAnnotation[] = "kubevirt-cri.io/kernel-cmdline";

namespace {

// A confined VM shares directories over 9p, served by its own QEMU: libvirt
// 9.0 runs virtiofsd as root (docs/security.md "Shares").
VolumeOptions VolumeOptionsFor(const sandbox::ContainerRecord& c) {
  VolumeOptions o;
  if (c.vm_uid != 0) o.virtiofsd.clear();
  return o;
}

// Every path that gets an ACL entry for the VM's uid, ancestors included,
// with the access the VM needs: written to the record before the first
// entry is set, so a crash never leaves an entry that nobody takes back.
std::vector<std::pair<std::filesystem::path, runtime::Access>> PlanGrants(const sandbox::ContainerRecord& c,
                                                                         const std::filesystem::path& container_dir,
                                                                         const runtime::image::ImageInfo& image,
                                                                         config::Accelerator accel) {
  std::vector<std::pair<std::filesystem::path, runtime::Access>> out;
  if (c.vm_uid == 0) return out;
  // Its own directory is reached through its group (ConfineFiles); this
  // opens the way there (<root>/containers is 0700).
  out.emplace_back(container_dir, runtime::Access::kTraverse);
  // The image's files are read through the store's paths: the overlay's
  // backing file, or the kernel and initrd.
  if (c.boot.kind == sandbox::BootKind::kKernel) {
    out.emplace_back(c.boot.kernel, runtime::Access::kRead);
    if (!c.boot.initrd.empty()) out.emplace_back(c.boot.initrd, runtime::Access::kRead);
  } else if (c.boot.kind == sandbox::BootKind::kDisk) {
    out.emplace_back(image.boot.disk, runtime::Access::kRead);
  }  // kDevice: the boot disk is one of the devices below
  for (const sandbox::DeviceSpec& d : c.devices) {
    // QEMU never opens the UEFI variable store's volume, only the slice
    // LibvirtHypervisor::Create makes of it, through a node its uid owns.
    if (!c.boot.nvram_device.empty() && d.container_path == c.boot.nvram_device) continue;
    bool rw = d.permissions.find('w') != std::string::npos;
    out.emplace_back(d.host_path, rw ? runtime::Access::kReadWrite : runtime::Access::kRead);
  }
  for (const sandbox::MountSpec& m : c.mounts) {
    // Single files were copied into the seed; QEMU never opens them.
    if (!std::filesystem::is_directory(m.host_path)) continue;
    out.emplace_back(m.host_path, m.readonly ? runtime::Access::kRead : runtime::Access::kReadWrite);
  }
  // /dev/kvm is root:kvm 0660; QEMU under its own uid is in no group.
  if (accel == config::Accelerator::kKvm) out.emplace_back("/dev/kvm", runtime::Access::kReadWrite);
  return out;
}

std::vector<std::string> WithAncestors(const std::vector<std::pair<std::filesystem::path, runtime::Access>>& grants) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& [path, access] : grants) {
    for (std::filesystem::path p = path; !p.empty(); p = p.parent_path()) {
      if (seen.insert(p.string()).second) out.push_back(p.string());
      if (p == p.root_path()) break;
    }
  }
  return out;
}

runtime::VmSpec BuildVmSpec(const sandbox::ContainerRecord& c, const sandbox::SandboxRecord& sb,
                            config::Accelerator accel) {
  runtime::VmSpec spec;
  spec.name = c.domain_name;
  spec.uid = c.vm_uid;
  spec.gid = c.vm_uid;
  spec.pod_id = sb.id;
  spec.container_id = c.id;
  spec.pod_namespace = sb.metadata.namespace_;
  spec.pod_name = sb.metadata.name;
  spec.vcpus = c.vcpus;
  spec.max_vcpus = c.max_vcpus;
  spec.memory_mib = c.memory_mib;
  spec.accel = accel;
  spec.console_log = c.console_path;
  // Empty in records from before attach existed: that VM has no attach and
  // no kvcri-agent channel (qemu-guest-agent's channel is always there).
  spec.console_socket = c.console_socket;
  spec.agent_socket = c.agent_socket;
  // Beside the agent's socket: as short, and checked with it at create.
  if (!c.agent_socket.empty()) spec.qga_socket = std::filesystem::path(c.agent_socket).parent_path() / "qga.sock";
  spec.netns = sb.netns_path;  // QEMU opens the Pod's tap device there
  // Paused until the record says RUNNING and the console is followed: the
  // guest's first instruction runs with its exit already observable.
  spec.start_paused = true;
  // Empty in records from before UEFI: bios.
  std::optional<runtime::Firmware> fw = runtime::ParseFirmwareName(c.boot.firmware);
  if (fw && *fw != runtime::Firmware::kBios) {
    spec.firmware = *fw;
    spec.uefi.code = c.boot.uefi_code;
    spec.uefi.vars_template = c.boot.uefi_vars;
    spec.uefi.nvram = c.boot.nvram;
    spec.uefi.nvram_is_device = !c.boot.nvram_device.empty();
    // In the container directory, which the VM's uid may traverse.
    if (spec.uefi.nvram_is_device) spec.uefi.nvram_node = std::filesystem::path(c.seed_path).parent_path() / "nvram.blk";
  }
  spec.tpm = c.boot.tpm;
  if (c.boot.kind == sandbox::BootKind::kKernel) {
    spec.kernel = c.boot.kernel;
    spec.initrd = c.boot.initrd;
    spec.cmdline = c.boot.cmdline;
  } else if (c.boot.kind == sandbox::BootKind::kDisk) {
    runtime::DiskSpec disk;
    disk.path = c.boot.disk;
    disk.format = c.boot.disk_format;
    disk.boot = true;
    spec.disks.push_back(disk);
  }  // kDevice: AddVolumesToVmSpec puts the boot device first
  if (!c.seed_path.empty()) {
    runtime::DiskSpec seed;
    seed.path = c.seed_path;
    seed.format = "raw";
    seed.read_only = true;
    seed.serial = "cidata";
    spec.disks.push_back(seed);
  }
  // The taps exist in the Pod netns since RunPodSandbox: the guest's first
  // frame already crosses a complete wiring (PCI slot order: domain_xml.h).
  spec.nics = NicSpecsFor(sb);
  return spec;
}

// Where the console copy goes: <log_directory>/<log_path> as kubelet names
// it, or an absolute log_path as-is (containerd-shim mode: the task's stdout
// FIFO; CRI validation refuses absolute paths on the daemon's own path).
struct CriLogTarget {
  std::filesystem::path dir;  // trusted: opened following symlinks
  std::filesystem::path rel;  // opened component by component, O_NOFOLLOW
  // containerd's FIFO: never opened just to check it, since closing the
  // only writer ends containerd's reader (EOF) and with it the log.
  bool fifo = false;
  bool empty() const { return rel.empty(); }
};

CriLogTarget CriLogOf(const sandbox::ContainerRecord& c, const sandbox::SandboxRecord& sb) {
  if (c.log_path.empty()) return {};
  const std::filesystem::path p(c.log_path);
  if (p.is_absolute()) return {p.parent_path(), p.filename(), /*fifo=*/true};
  if (sb.log_directory.empty()) return {};
  return {sb.log_directory, p};
}



}  // namespace

runtime::cgroup::CgroupTarget CgroupOf(const sandbox::ContainerRecord& c) {
  runtime::cgroup::CgroupTarget t;
  t.path = c.cgroup_path;
  t.unit = c.cgroup_unit;
  return t;
}

std::string DomainOf(const sandbox::ContainerRecord& c) {
  if (c.domain_name.empty() && !c.load_error.empty()) return StrCat(kDomainPrefix, c.id);
  return c.domain_name;
}

std::filesystem::path PodLifecycle::ContainerDir(std::string_view container_id) const {
  return deps_.config->root / "containers" / std::string(container_id);
}

absl::StatusOr<std::string> PodLifecycle::IdFor(const std::string& wanted) const {
  if (wanted.empty()) return deps_.store->NewId();
  if (!sandbox::IsValidId(wanted)) {
    return absl::InvalidArgumentError(StrCat("ID \"", wanted, "\" is not ", sandbox::kIdLength, " lowercase hex digits"));
  }
  if (deps_.store->GetSandbox(wanted).ok() || deps_.store->GetContainer(wanted).ok()) {
    return absl::AlreadyExistsError(StrCat("ID \"", wanted, "\" is already in use"));
  }
  return wanted;
}

std::filesystem::path PodLifecycle::VmSocketDir(std::string_view container_id) const {
  // Container dirs are too long for sockaddr_un's 107 bytes: a short dir of
  // the first 16 hex digits (64 bits of the random id) below the state dir.
  return deps_.config->state_dir / "vm" / std::string(container_id.substr(0, 16));
}

absl::StatusOr<uint32_t> PodLifecycle::AllocateVmUid(const std::string& container_id) {
  const config::SecurityConfig& sec = deps_.config->security;
  if (!sec.confined()) return 0;
  absl::MutexLock l(&uids_mu_);
  std::set<uint32_t> used = pending_uids_;
  uint32_t highest = 0;
  for (const sandbox::ContainerRecord& r : deps_.store->ListContainers()) {
    uint32_t uid = r.vm_uid;
    // An unreadable record does not say its uid, but its VM may still run
    // with it: the container dir's group is the VM's gid (== uid, see
    // ConfineFiles), so that uid stays taken until the record is removed.
    if (uid == 0 && !r.load_error.empty()) {
      struct stat st;
      if (::stat(ContainerDir(r.id).c_str(), &st) == 0 && st.st_gid >= sec.vm_uid_first && st.st_gid <= sec.vm_uid_last) {
        uid = st.st_gid;
      }
    }
    if (uid == 0) continue;
    used.insert(uid);
    highest = std::max(highest, uid);
  }
  // After a restart, continue above the highest uid the records hold.
  if (next_uid_ < sec.vm_uid_first || next_uid_ > sec.vm_uid_last) {
    next_uid_ = highest >= sec.vm_uid_first && highest < sec.vm_uid_last ? highest + 1 : sec.vm_uid_first;
  }
  const uint64_t size = uint64_t{sec.vm_uid_last} - sec.vm_uid_first + 1;
  for (uint64_t i = 0; i < size; ++i) {
    uint32_t uid = next_uid_;
    next_uid_ = uid == sec.vm_uid_last ? sec.vm_uid_first : uid + 1;
    if (used.count(uid) != 0) continue;
    if (deps_.uid_claims != nullptr) {
      // Another Pod's shim may hold it (a few file operations under a flock).
      ASSIGN_OR_RETURN(const bool claimed, deps_.uid_claims->TryClaim(uid, ContainerDir(container_id)));
      if (!claimed) continue;
    }
    pending_uids_.insert(uid);
    return uid;
  }
  return absl::ResourceExhaustedError(StrCat("every uid of security.vm_uid_range \"", sec.vm_uid_range,
                                             "\" is held by a VM container (", size,
                                             "); remove exited containers or widen the range"));
}

void PodLifecycle::ReleasePendingUid(uint32_t uid) {
  absl::MutexLock l(&uids_mu_);
  pending_uids_.erase(uid);
}

absl::Status PodLifecycle::ConfineFiles(const sandbox::ContainerRecord& c) {
  const uid_t uid = c.vm_uid;
  const gid_t gid = c.vm_uid;
  const std::filesystem::path dir = ContainerDir(c.id);
  // The VM reaches its own directory through its group and may neither list
  // nor change it: it cannot swap console.log for a symlink we would follow.
  RETURN_IF_ERROR(runtime::SetOwner(dir, 0, gid, 0710));
  RETURN_IF_ERROR(runtime::SetOwner(c.seed_path, 0, gid, 0440));  // read-only disk: the VM may not rewrite it
  if (c.boot.kind == sandbox::BootKind::kDisk) RETURN_IF_ERROR(runtime::SetOwner(c.boot.disk, uid, gid, 0600));
  // The UEFI variable store: the firmware writes it through QEMU.
  // On a device QEMU opens a node made for its uid at each start instead
  // (runtime/nvram_slice.h).
  if (!c.boot.nvram.empty() && c.boot.nvram_device.empty()) {
    RETURN_IF_ERROR(runtime::SetOwner(c.boot.nvram, uid, gid, 0600));
  }
  // QEMU appends the serial console here but cannot create files in `dir`.
  {
    base::UniqueFd fd(::open(c.console_path.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat("create \"", c.console_path, "\""));
  }
  return runtime::SetOwner(c.console_path, uid, gid, 0600);
}

void PodLifecycle::RegisterConsole(const sandbox::ContainerRecord& c, const sandbox::SandboxRecord& sb) {
  if (IsPlainContainer(c)) {
    RegisterPlainLogs(c, sb);
    WatchPlainExit(c);
    return;
  }
  const CriLogTarget log = CriLogOf(c, sb);
  if (log.empty()) return;  // no CRI log requested
  runtime::ConsoleTarget target;
  target.console = c.console_path;
  target.log_dir = log.dir;
  target.log_rel = log.rel;
  target.qemu_log = deps_.hypervisor->DomainLogPath(c.domain_name);
  base::LogIfError(deps_.console->Add(c.id, target), "console log copy not started");
}

absl::Status PodLifecycle::PutNewContainer(const sandbox::ContainerRecord& rec, base::Rollback& undo) {
  RETURN_IF_ERROR(deps_.store->PutContainer(rec));
  undo.Add("remove container record", [this, id = rec.id, &undo]() -> absl::Status {
    if (!undo.failed()) return deps_.store->RemoveContainer(id);
    // Files could not be removed: RemoveContainer or the sweep retries.
    return deps_.store
        ->UpdateContainer(id,
                          [](sandbox::ContainerRecord& r) {
                            r.phase = sandbox::Phase::kRemoving;
                            return absl::OkStatus();
                          })
        .status();
  });
  return absl::OkStatus();
}

absl::StatusOr<std::string> PodLifecycle::CreateContainer(const ContainerDraft& draft) {
  ASSIGN_OR_RETURN(std::string sandbox_id, deps_.store->ResolveSandboxId(draft.sandbox_id));
  ASSIGN_OR_RETURN(OpTracker::Hold hold,
                   ops_.Acquire(sandbox_id, Mode::kShared, "CreateContainer", options_.op_wait));
  ASSIGN_OR_RETURN(sandbox::SandboxRecord sb, deps_.store->GetSandbox(sandbox_id));
  if (sb.state != sandbox::SandboxState::kReady) {
    return absl::FailedPreconditionError(StrCat("pod sandbox \"", sandbox_id, "\" is not ready"));
  }
  absl::StatusOr<runtime::image::ImageInfo> image = deps_.images->Resolve(draft.image);
  if (absl::IsNotFound(image.status())) {
    return absl::NotFoundError(
        StrCat("image \"", draft.image, "\" is not present; pull it or import it with `kubevirt-cri images import`"));
  }
  RETURN_IF_ERROR(image.status());
  // A persistent VM: the Pod names the block device it boots from.
  ASSIGN_OR_RETURN(std::optional<size_t> boot_device, BootDeviceIndex(sb.annotations, draft.volumes));
  // Plain-image containers run in the Pod micro-VM, any number of them; a
  // VM-disk container is the Pod's one VM, after its plain init containers.
  const bool plain = image->boot.kind == runtime::image::BootKind::kNone && !boot_device;
  for (const sandbox::ContainerRecord& c :
       deps_.store->ListContainers([&](const sandbox::ContainerRecord& r) { return r.sandbox_id == sandbox_id; })) {
    if (plain) {
      if (IsPlainContainer(c) || c.state == sandbox::ContainerState::kExited) continue;
      return absl::FailedPreconditionError(StrCat(
          "pod sandbox \"", sandbox_id, "\" runs VM container \"", c.metadata.name, "\" (", c.id,
          "); plain-image container \"", draft.metadata.name,
          "\" cannot run beside it: the VM owns the Pod's network interface, and sidecars beside a VM-disk container "
          "are not supported (docs/microvm.md); plain init containers before it are"));
    }
    if (IsPlainContainer(c)) {
      if (c.state != sandbox::ContainerState::kRunning) continue;  // init containers that ran
      return absl::FailedPreconditionError(StrCat(
          "pod sandbox \"", sandbox_id, "\" still runs plain-image container \"", c.metadata.name, "\" (", c.id,
          "); VM container \"", draft.metadata.name,
          "\" can start only once the Pod's plain containers have ended (sidecars beside a VM-disk container are "
          "not supported, docs/microvm.md)"));
    }
    // A restart of the VM container (same name, old one exited) is fine; a
    // second VM container is not.
    if (c.metadata.name != draft.metadata.name || c.state != sandbox::ContainerState::kExited) {
      return absl::FailedPreconditionError(StrCat(
          "pod sandbox \"", sandbox_id, "\" already has container \"", c.metadata.name, "\" (", c.id,
          "); a kubevirt-cri Pod runs exactly one VM container, so \"", draft.metadata.name,
          "\" cannot be added (no VM-disk sidecars)"));
    }
  }
  // Plain images run in the Pod micro-VM, which needs the daemon's guest
  // agent connections; containerd-shim mode has none and refuses below.
  if (plain && deps_.agents != nullptr) return CreatePlainContainer(draft, sb, *image);
  if (!sb.pod_vm.domain_name.empty()) {
    // The plain init containers are done: their micro-VM gives the Pod's
    // network (its tap) to the VM.
    ASSIGN_OR_RETURN(OpTracker::Hold vm_hold, ops_.Acquire(StrCat("podvm/", sandbox_id), Mode::kExclusive,
                                                          "stop the Pod micro-VM", options_.op_wait));
    RETURN_IF_ERROR(TearDownPodVm(sb));
  }
  // With a boot device the image supplies at most a kernel: any image will
  // do (kubelet needs one), and a containerDisk's disk is not used.
  if (image->boot.kind == runtime::image::BootKind::kNone && !boot_device) {
    return absl::FailedPreconditionError(StrCat("image \"", draft.image, "\" (", image->id,
                                                ") cannot boot a VM: ", image->boot.unbootable_reason,
                                                "; kubevirt-cri boots a KubeVirt containerDisk (exactly one disk file "
                                                "under /disk/) or a kernel image (/boot/vmlinuz, optionally "
                                                "/boot/initrd.img) here: see docs/images.md; "
                                                "or boot the VM from a block volume (Pod annotation ",
                                                kBootDeviceAnnotation, ", docs/volumes.md); plain container images "
                                                "run in a Pod micro-VM through the daemon's own socket, not through "
                                                "containerd's kubevirt runtime (docs/microvm.md)"));
  }
  ASSIGN_OR_RETURN(VmSize size, SizeVm(deps_.config->vm, draft.resources, "config.linux.resources."));
  // The overlay grows at most to the virtual size of the image's disk: that
  // is the bound on the host disk this VM can fill.
  const uint64_t max_disk = static_cast<uint64_t>(deps_.config->vm.max_disk_mib) << 20;
  if (image->boot.kind == runtime::image::BootKind::kDisk && !boot_device &&
      image->boot.disk_virtual_size > max_disk) {
    return absl::InvalidArgumentError(
        StrCat("image \"", draft.image, "\" has a disk of ", image->boot.disk_virtual_size,
               " bytes (virtual size); VMs may have at "
               "most vm.max_disk_mib = ",
               deps_.config->vm.max_disk_mib, " MiB, which bounds how much host disk a VM's overlay can fill"));
  }

  // Firmware and TPM: the Pod's annotations, else the image's label.
  ASSIGN_OR_RETURN(runtime::Firmware firmware, runtime::ChooseFirmware(sb.annotations, image->labels, draft.image));
  if (firmware == runtime::Firmware::kUefiSecure && image->boot.kind == runtime::image::BootKind::kKernel) {
    return absl::InvalidArgumentError(
        StrCat("firmware uefi-secure (annotation ", runtime::kFirmwareAnnotation, " or image label ",
               runtime::kFirmwareLabel, ") needs a disk image, but \"", draft.image,
               "\" is a kernel image, which QEMU loads itself (direct kernel boot) and Secure Boot would refuse "
               "unless Microsoft's UEFI CA signed it; use uefi, or a containerDisk with a signed boot loader"));
  }
  ASSIGN_OR_RETURN(std::optional<size_t> nvram_device, NvramDeviceIndex(sb.annotations, draft.volumes));
  if (nvram_device) {
    const std::string field = StrCat("annotation ", kNvramDeviceAnnotation);
    if (firmware == runtime::Firmware::kBios) {
      return absl::InvalidArgumentError(StrCat(field, " names a UEFI variable store, but the VM boots with bios; choose "
                                               "uefi or uefi-secure (annotation ", runtime::kFirmwareAnnotation,
                                               " or image label ", runtime::kFirmwareLabel, ")"));
    }
    const auto& nvram = draft.volumes.devices[*nvram_device];
    if (boot_device && *boot_device == *nvram_device) {
      return absl::InvalidArgumentError(StrCat(field, " and annotation ", kBootDeviceAnnotation, " name the same device \"",
                                               nvram.container_path,
                                               "\"; the variable store needs a device of its own (1 MiB is plenty)"));
    }
    if (nvram.permissions.find('w') == std::string::npos && !nvram.permissions.empty()) {
      return absl::InvalidArgumentError(StrCat(field, ": device \"", nvram.container_path,
                                               "\" is read-only (permissions \"", nvram.permissions,
                                               "\"); the firmware writes its variable store"));
    }
  }
  ASSIGN_OR_RETURN(const bool tpm, runtime::WantsTpm(sb.annotations));
  if (tpm && deps_.config->security.confined()) {
    return absl::FailedPreconditionError(
        StrCat("annotation ", runtime::kTpmAnnotation, " asks for a TPM, which needs VMs unconfined "
               "([security] vm_uid_range = \"\"): libvirt 9.0 gives swtpm's socket to a confined QEMU only by "
               "relabeling files, which kubevirt-cri turns off (docs/security.md \"vTPM\")"));
  }
  if (tpm) {
    const char* path = ::getenv("PATH");
    RETURN_IF_ERROR(runtime::CheckSwtpmInstalled(path != nullptr ? path : "/usr/sbin:/usr/bin:/sbin:/bin"));
  }

  sandbox::ContainerRecord rec;
  ASSIGN_OR_RETURN(rec.id, IdFor(draft.id));
  rec.sandbox_id = sandbox_id;
  rec.metadata = draft.metadata;
  rec.image = draft.image;
  rec.image_ref = image->id;
  rec.labels = draft.labels;
  rec.annotations = draft.annotations;
  rec.log_path = draft.log_path;
  rec.state = sandbox::ContainerState::kCreated;
  rec.phase = sandbox::Phase::kCreating;
  rec.created_at = absl::ToUnixNanos(deps_.clock->Now());
  rec.domain_name = StrCat(kDomainPrefix, rec.id);
  rec.vcpus = size.vcpus;
  rec.memory_mib = size.memory_mib;
  // Room to hot-plug up to [vm] max_vcpus, never below what it boots with.
  rec.max_vcpus = std::max(deps_.config->vm.max_vcpus, size.vcpus);
  rec.max_memory_mib = size.memory_mib;  // the boot size is the balloon's ceiling
  rec.resources = RecordResources(draft.resources);
  rec.devices = draft.volumes.devices;  // host paths resolved by ValidateVolumes
  rec.mounts = draft.volumes.mounts;
  if (deps_.cgroups != nullptr) {
    // Only planned here: the cgroup is made at start, once QEMU exists, and
    // the record names it before that so nothing is ever made unrecorded.
    ASSIGN_OR_RETURN(runtime::cgroup::CgroupTarget cg, deps_.cgroups->Plan(sb.cgroup_parent, rec.id));
    rec.cgroup_path = cg.path;
    rec.cgroup_unit = cg.unit;
  }
  ASSIGN_OR_RETURN(rec.vm_uid, AllocateVmUid(rec.id));
  struct Unreserve {
    PodLifecycle* self;
    uint32_t uid;
    ~Unreserve() { self->ReleasePendingUid(uid); }  // the record holds it from PutContainer on
  } unreserve{this, rec.vm_uid};
  const std::filesystem::path dir = ContainerDir(rec.id);
  rec.console_path = (dir / "console.log").string();
  rec.seed_path = (dir / "cidata.img").string();
  const std::filesystem::path vm_dir = VmSocketDir(rec.id);
  rec.console_socket = (vm_dir / "console.sock").string();
  rec.agent_socket = (vm_dir / "agent.sock").string();
  for (const std::string& sock : {rec.console_socket, rec.agent_socket}) {
    if (sock.size() > runtime::kMaxUnixSocketPathLength) {
      return absl::FailedPreconditionError(StrCat("socket path \"", sock, "\" is ", sock.size(),
                                                  " bytes, longer than a unix socket path may be (",
                                                  runtime::kMaxUnixSocketPathLength, "); use a shorter state_dir than \"",
                                                  deps_.config->state_dir.string(), "\""));
    }
  }
  if (image->boot.kind == runtime::image::BootKind::kKernel) {
    rec.boot.kind = sandbox::BootKind::kKernel;
    rec.boot.kernel = image->boot.kernel.string();
    rec.boot.initrd = image->boot.initrd.string();
    auto it = sb.annotations.find(kCmdlineAnnotation);
    rec.boot.cmdline = it != sb.annotations.end() ? it->second
                       : image->boot.cmdline.empty() ? "console=ttyS0"
                                                     : image->boot.cmdline;
    // The image's kernel with the persistent disk as vda: its root= is on
    // the command line (the image's label or the kernel-cmdline annotation).
    if (boot_device) rec.boot.device = rec.devices[*boot_device].container_path;
  } else if (boot_device) {
    // Used in place: no overlay, the device is the VM's persistent disk.
    rec.boot.kind = sandbox::BootKind::kDevice;
    rec.boot.device = rec.devices[*boot_device].container_path;
  } else {
    rec.boot.kind = sandbox::BootKind::kDisk;
    rec.boot.disk = (dir / "disk.qcow2").string();
    rec.boot.disk_format = "qcow2";
  }
  rec.boot.firmware = std::string(runtime::FirmwareName(firmware));
  rec.boot.tpm = tpm;
  std::optional<runtime::UefiSpec> uefi;
  if (firmware != runtime::Firmware::kBios) {
    // The VM's variable store lives and dies with its container directory,
    // unless a device of the Pod holds it (a persistent VM's).
    uefi = runtime::UefiFilesFor(firmware, deps_.config->vm,
                                 nvram_device ? std::filesystem::path(rec.devices[*nvram_device].host_path)
                                              : dir / "nvram.fd");
    uefi->nvram_is_device = nvram_device.has_value();
    RETURN_IF_ERROR(runtime::CheckUefiFiles(firmware, *uefi));
    rec.boot.uefi_code = uefi->code.string();
    rec.boot.uefi_vars = uefi->vars_template.string();
    rec.boot.nvram = uefi->nvram.string();
    if (nvram_device) rec.boot.nvram_device = rec.devices[*nvram_device].container_path;
  }

  const auto grants = PlanGrants(rec, dir, *image, deps_.accelerator);
  rec.vm_grants = WithAncestors(grants);

  // Before anything exists: a refused device leaves nothing behind.
  RETURN_IF_ERROR(ClaimDevices(rec.id, rec.devices));
  DeviceClaimHold unclaim{this, rec.id};

  base::Rollback undo;
  RETURN_IF_ERROR(PutNewContainer(rec, undo));
  const std::string id = rec.id;
  undo.Add("remove container dir", [dir] { return base::RemoveAll(dir); });
  if (rec.vm_uid != 0) {
    undo.Add("revoke the VM's ACL entries",
             [this, paths = rec.vm_grants, uid = rec.vm_uid] { return file_access_.Revoke(paths, uid); });
  }
  RETURN_IF_ERROR(base::MakeDirs(dir, 0700));
  // The VM's sockets: libvirt (root, in this process) binds them and hands
  // QEMU the listening fds, so QEMU's uid needs no access here, and a 0700
  // root directory keeps every other VM's uid from connecting.
  RETURN_IF_ERROR(base::MakeDirs(vm_dir.parent_path(), 0700));
  if (::mkdir(vm_dir.c_str(), 0700) != 0) return absl::ErrnoToStatus(errno, StrCat("mkdir \"", vm_dir.string(), "\""));
  undo.Add("remove the VM's socket dir", [vm_dir] { return base::RemoveAll(vm_dir); });
  // cloud-init NoCloud seed: hostname, network-config, user-data.
  runtime::CloudInitSeed seed = SeedFor(sb);
  for (runtime::VfatFile& f :
       VolumeSeedFiles(draft.volumes, VolumeOptionsFor(rec), rec.boot.device, rec.boot.nvram_device)) {
    seed.extra_files.push_back(std::move(f));
  }
  if (auto it = sb.annotations.find(std::string(runtime::kGuestAgentAnnotation)); it != sb.annotations.end()) {
    if (it->second != runtime::kGuestAgentInject) {
      return absl::InvalidArgumentError(base::StrCat("annotation ", runtime::kGuestAgentAnnotation, " is \"", it->second,
                                                     "\"; the only value is \"", runtime::kGuestAgentInject, "\""));
    }
    ASSIGN_OR_RETURN(std::vector<runtime::VfatFile> agent_files, runtime::GuestAgentSeedFiles(options_.guest_agent_binary));
    for (runtime::VfatFile& f : agent_files) seed.extra_files.push_back(std::move(f));
  }
  RETURN_IF_ERROR(runtime::WriteSeedImage(rec.seed_path, seed));
  if (rec.boot.kind == sandbox::BootKind::kDisk) {
    // The image's disk is never written: the VM writes to its own overlay.
    RETURN_IF_ERROR(runtime::image::CreateOverlay(image->boot.disk, image->boot.disk_format, rec.boot.disk));
  }
  // Ours, not libvirt's (which would create it as root, 0600, at start): so
  // a confined VM's QEMU can own it (ConfineFiles).
  if (uefi && uefi->nvram_is_device) {
    bool initialised = false;
    RETURN_IF_ERROR(runtime::PrepareNvramDevice(*uefi, firmware, StrCat("annotation ", kNvramDeviceAnnotation),
                                                &initialised));
    base::LogInfo(initialised ? "UEFI variable store initialised on its device" : "UEFI variable store kept",
                  {{"id", rec.id}, {"device", rec.boot.nvram_device}, {"firmware", rec.boot.firmware}});
  } else if (uefi) {
    RETURN_IF_ERROR(runtime::CopyNvramTemplate(*uefi));
  }
  if (rec.vm_uid != 0) {
    RETURN_IF_ERROR(ConfineFiles(rec));
    std::vector<std::string> granted;  // Revoke takes back rec.vm_grants, a superset
    for (const auto& [path, access] : grants) RETURN_IF_ERROR(file_access_.Grant(path, rec.vm_uid, access, &granted));
  }
  RETURN_IF_ERROR(deps_.store
                      ->UpdateContainer(id,
                                        [](sandbox::ContainerRecord& r) {
                                          r.phase = sandbox::Phase::kReady;
                                          return absl::OkStatus();
                                        })
                      .status());
  undo.Dismiss();
  Emit(ContainerEventType::kCreated, id, sandbox_id);
  base::LogInfo("container created", {{"id", id},
                                      {"sandbox", sandbox_id},
                                      {"image", rec.image},
                                      {"boot", std::string(sandbox::BootKindName(rec.boot.kind))},
                                      {"boot_device", rec.boot.device},
                                      {"firmware", rec.boot.firmware}});
  return id;
}

absl::Status PodLifecycle::StartContainer(std::string_view id_arg) {
  ASSIGN_OR_RETURN(std::string id, deps_.store->ResolveContainerId(id_arg));
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, deps_.store->GetContainer(id));
  ASSIGN_OR_RETURN(OpTracker::Hold pod_hold,
                   ops_.Acquire(c.sandbox_id, Mode::kShared, "StartContainer", options_.op_wait));
  ASSIGN_OR_RETURN(OpTracker::Hold hold, ops_.Acquire(id, Mode::kExclusive, "StartContainer", options_.op_wait));
  ASSIGN_OR_RETURN(c, deps_.store->GetContainer(id));  // re-read under the mark
  if (c.state != sandbox::ContainerState::kCreated || c.phase != sandbox::Phase::kReady) {
    return absl::FailedPreconditionError(StrCat("container \"", id, "\" is ", sandbox::ContainerStateName(c.state),
                                                ", not created; it can be started only once"));
  }
  ASSIGN_OR_RETURN(sandbox::SandboxRecord sb, deps_.store->GetSandbox(c.sandbox_id));
  if (sb.state != sandbox::SandboxState::kReady) {
    return absl::FailedPreconditionError(StrCat("pod sandbox \"", sb.id, "\" of container \"", id, "\" is not ready"));
  }
  if (deps_.accelerator == config::Accelerator::kAuto) {
    return absl::FailedPreconditionError(StrCat("no usable accelerator: ", deps_.accelerator_reason));
  }
  if (const CriLogTarget log = CriLogOf(c, sb); !log.empty() && !log.fifo) {
    // Creates the log's directories below the Pod's log directory without
    // following a symlink planted there; fails the start rather than the copy.
    RETURN_IF_ERROR(runtime::OpenCriLog(log.dir, log.rel).status());
  }

  if (IsPlainContainer(c)) return StartPlainContainer(c, sb);
  if (!c.console_socket.empty()) {
    // The state dir is a tmpfs: a host reboot between create and start took
    // the socket dir with it.
    RETURN_IF_ERROR(base::MakeDirs(std::filesystem::path(c.console_socket).parent_path(), 0700));
  }
  if (!c.boot.firmware.empty() && !runtime::ParseFirmwareName(c.boot.firmware)) {
    // Written by a newer version, or damaged: booting it as bios could start
    // a Secure Boot VM without Secure Boot.
    return absl::DataLossError(
        StrCat("container \"", id, "\" records firmware \"", c.boot.firmware, "\", which this version does not know"));
  }
  runtime::VmSpec spec = BuildVmSpec(c, sb, deps_.accelerator);
  RETURN_IF_ERROR(AddVolumesToVmSpec(c, VolumeOptionsFor(c), &spec));  // devices, mounts
  const absl::Time t0 = deps_.clock->Now();
  auto observe = [&](std::string_view result) {
    if (deps_.vm_start_duration != nullptr) {
      deps_.vm_start_duration->Observe({std::string(result)}, absl::ToDoubleSeconds(deps_.clock->Now() - t0));
    }
  };
  // A start that fails ends EXITED (StartError) with the reason: kubelet
  // sees why and makes a new container.
  auto fail = [&](absl::Status cause) {
    observe("error");
    absl::Status removed = deps_.hypervisor->Remove(spec.name);
    base::LogIfError(removed, "start rollback: remove domain (RemoveContainer retries)");
    if (removed.ok()) base::LogIfError(RemoveVmCgroup(c), "start rollback: remove cgroup (RemoveContainer retries)");
    deps_.store
        ->UpdateContainer(id,
                          [&](sandbox::ContainerRecord& r) {
                            r.state = sandbox::ContainerState::kExited;
                            r.finished_at = absl::ToUnixNanos(deps_.clock->Now());
                            r.exit_code = 128;
                            r.reason = "StartError";
                            r.message = std::string(cause.message());
                            return absl::OkStatus();
                          })
        .IgnoreError();  // the start error is what the caller needs to see
    Emit(ContainerEventType::kStopped, id, c.sandbox_id);  // a failed start ends EXITED too
    NotifyExit(id);
    return cause;
  };
  if (absl::Status created = deps_.hypervisor->Create(spec); !created.ok()) return fail(created);
  // Volumes were verified just before Create; again now that QEMU (paused)
  // has opened them: a path swapped while libvirt resolved it fails the start.
  if (absl::Status same = VerifyVolumesUnchanged(c); !same.ok()) return fail(same);
  // Still paused: the guest runs its first instruction inside the Pod's
  // cgroup, with every page QEMU has touched so far billed there.
  if (absl::Status placed = PlaceVm(c); !placed.ok()) return fail(placed);
  // The CPU limits CreateContainer (or a resize before start) asked for, on
  // the cgroup just made; UpdateResources rewrites them later.
  if (absl::Status limited = ApplyCpuLimits(c); !limited.ok()) return fail(limited);
  const absl::Duration libvirt_took = deps_.clock->Now() - t0;
  absl::StatusOr<sandbox::ContainerRecord> started = deps_.store->UpdateContainer(id, [&](sandbox::ContainerRecord& r) {
    r.state = sandbox::ContainerState::kRunning;
    r.started_at = absl::ToUnixNanos(deps_.clock->Now());
    return absl::OkStatus();
  });
  // Without a RUNNING record nobody would own the VM: take it down again.
  if (!started.ok()) return fail(started.status());
  RegisterConsole(*started, sb);
  if (absl::Status resumed = deps_.hypervisor->Resume(spec.name); !resumed.ok()) {
    base::LogIfError(deps_.console->Remove(id), "console log flush");
    return fail(resumed);
  }
  observe("ok");
  // After Resume: a guest exiting at once may have its STOPPED published
  // first; both events carry the statuses of the moment they were sent.
  Emit(ContainerEventType::kStarted, id, c.sandbox_id);
  RecordTimings(id, StrCat("{\"libvirtCreateMs\":", absl::ToDoubleMilliseconds(libvirt_took),
                          ",\"startMs\":", absl::ToDoubleMilliseconds(deps_.clock->Now() - t0), "}"));
  base::LogInfo("container started", {{"id", id}, {"domain", spec.name},
                                      {"libvirt_ms", StrCat(absl::ToInt64Milliseconds(libvirt_took))}});
  return absl::OkStatus();
}

absl::Status PodLifecycle::PlaceVm(const sandbox::ContainerRecord& c) {
  if (deps_.cgroups == nullptr || c.cgroup_path.empty()) return absl::OkStatus();
  const absl::Time t0 = deps_.clock->Now();
  ASSIGN_OR_RETURN(std::vector<int> pids, deps_.hypervisor->Processes(c.domain_name));
  std::vector<pid_t> procs(pids.begin(), pids.end());
  if (absl::Status s = deps_.cgroups->Place(CgroupOf(c), procs); !s.ok()) {
    return absl::Status(s.code(), StrCat("move the VM's processes into cgroup \"", c.cgroup_path, "\": ", s.message()));
  }
  base::LogInfo("VM placed in its cgroup", {{"id", c.id},
                                            {"cgroup", c.cgroup_path},
                                            {"processes", StrCat(procs.size())},
                                            {"took_ms", StrCat(absl::ToInt64Milliseconds(deps_.clock->Now() - t0))}});
  return absl::OkStatus();
}

sandbox::ContainerRecord PodLifecycle::WithPlannedCgroup(const sandbox::ContainerRecord& c) const {
  if (deps_.cgroups == nullptr || !c.cgroup_path.empty() || c.load_error.empty()) return c;
  // A placeholder of an unreadable record does not say its cgroup: it is
  // where our rule puts it, below its Pod's parent when that record is
  // readable, else below the default parent (Pods made without kubelet).
  std::string parent;
  if (absl::StatusOr<sandbox::SandboxRecord> sb = deps_.store->GetSandbox(c.sandbox_id);
      sb.ok() && sb->load_error.empty()) {
    parent = sb->cgroup_parent;
  }
  sandbox::ContainerRecord out = c;
  if (absl::StatusOr<runtime::cgroup::CgroupTarget> t = deps_.cgroups->Plan(parent, c.id); t.ok()) {
    out.cgroup_path = t->path;
    out.cgroup_unit = t->unit;
  }
  return out;
}

absl::Status PodLifecycle::ApplyCpuLimits(const sandbox::ContainerRecord& c) {
  if (deps_.cgroups == nullptr || c.cgroup_path.empty()) return absl::OkStatus();
  const sandbox::ContainerLinuxResources& r = c.resources;
  if (r.cpu_quota == 0 && r.cpu_period == 0 && r.cpu_shares == 0 && r.cpuset_cpus.empty() && r.cpuset_mems.empty()) {
    return absl::OkStatus();  // nothing asked for: the cgroup inherits the Pod's
  }
  runtime::cgroup::CgroupLimits l;
  l.cpu_quota_us = c.resources.cpu_quota;
  l.cpu_period_us = c.resources.cpu_period;
  l.cpu_shares = c.resources.cpu_shares > 0 ? static_cast<uint64_t>(c.resources.cpu_shares) : 0;
  l.cpuset_cpus = c.resources.cpuset_cpus;
  l.cpuset_mems = c.resources.cpuset_mems;
  // memory_limit_bytes stays 0: see the header.
  if (absl::Status s = deps_.cgroups->SetLimits(CgroupOf(c), l); !s.ok()) {
    return absl::Status(s.code(), StrCat("write CPU limits to cgroup \"", c.cgroup_path, "\": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status PodLifecycle::RemoveVmCgroup(const sandbox::ContainerRecord& c) {
  if (deps_.cgroups == nullptr || c.cgroup_path.empty()) return absl::OkStatus();
  absl::Status s = deps_.cgroups->Remove(CgroupOf(c));
  // libvirt reports a domain off once QEMU has been reaped; virtiofsd exits
  // on the closed socket a moment later. A short wait, never long: the
  // caller's retry (RemoveContainer, the sweep) covers a stuck helper.
  for (int i = 0; i < 20 && absl::IsFailedPrecondition(s); ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    s = deps_.cgroups->Remove(CgroupOf(c));
  }
  return s;
}

uint64_t PodLifecycle::OomKillsOf(const sandbox::ContainerRecord& c) const {
  if (deps_.cgroups == nullptr || c.cgroup_path.empty()) return 0;
  absl::StatusOr<runtime::cgroup::CgroupSample> sample = deps_.cgroups->Sample(CgroupOf(c));
  return sample.ok() ? sample->oom_kills : 0;
}

absl::StatusOr<sandbox::ContainerRecord> PodLifecycle::Refresh(const sandbox::ContainerRecord& c) {
  if (c.state != sandbox::ContainerState::kRunning) return c;
  if (IsPlainContainer(c)) return RefreshPlain(c);
  ASSIGN_OR_RETURN(runtime::VmStatus vm, deps_.hypervisor->Status(c.domain_name));
  if (IsUp(vm.phase)) return NoteIoErrorPause(c, vm);
  int exit_code = vm.exit_code;
  std::string reason = vm.reason;
  if (vm.phase == runtime::VmPhase::kMissing) {
    exit_code = 255;
    reason = "VMNotFound";
  }
  std::string oom_message;
  if (uint64_t kills = OomKillsOf(c); kills > 0) {
    // The kernel killed QEMU (or a helper) for the Pod cgroup's memory
    // limit: reported as runc's containers are, so kubelet shows OOMKilled.
    exit_code = 137;
    reason = std::string(kOomKilledReason);
    oom_message = StrCat("the Pod's memory limit was reached: the kernel killed ", kills,
                         " of the VM's processes (QEMU's memory includes the guest's RAM)");
  }
  bool changed = false;
  ASSIGN_OR_RETURN(sandbox::ContainerRecord updated, deps_.store->UpdateContainer(c.id, [&](sandbox::ContainerRecord& r) {
    if (r.state != sandbox::ContainerState::kRunning) return absl::OkStatus();
    changed = true;
    r.state = sandbox::ContainerState::kExited;
    r.finished_at = absl::ToUnixNanos(deps_.clock->Now());
    r.exit_code = exit_code;
    r.reason = reason;
    if (vm.phase == runtime::VmPhase::kMissing) r.message = StrCat("libvirt domain \"", c.domain_name, "\" is gone");
    if (!oom_message.empty()) r.message = oom_message;
    if (r.io_error_since != 0) {
      // It ended while QEMU had it paused on a host I/O error (forced off by
      // RetryIoErrorPause after the bound, or stopped meanwhile): that is why.
      r.exit_code = 1;
      r.reason = std::string(kIoErrorExitReason);
      r.message = StrCat("the VM was stopped after ",
                         absl::ToInt64Seconds(deps_.clock->Now() - absl::FromUnixNanos(r.io_error_since)),
                         " s paused on a host I/O error; ", r.message);
      r.io_error_since = 0;
    }
    exit_code = r.exit_code;
    reason = r.reason;
    return absl::OkStatus();
  }));
  if (changed) {
    // The guest is off: copy what is left of its console, then stop following it.
    base::LogIfError(deps_.console->Remove(c.id), "console log flush");
    // Its processes are gone; RemoveContainer tries again if this fails.
    base::LogIfError(RemoveVmCgroup(c), "remove the exited VM's cgroup");
    base::LogInfo("container exited", {{"id", c.id}, {"exit_code", StrCat(exit_code)}, {"reason", reason}});
    Emit(ContainerEventType::kStopped, c.id, c.sandbox_id);
  }
  NotifyExit(c.id);
  return updated;
}

absl::StatusOr<sandbox::ContainerRecord> PodLifecycle::NoteIoErrorPause(const sandbox::ContainerRecord& c,
                                                                        const runtime::VmStatus& vm) {
  const bool paused = vm.phase == runtime::VmPhase::kPaused && vm.reason == runtime::kIoErrorReason;
  const std::string message =
      paused ? StrCat("QEMU paused the VM: a write to its disk failed on the host (",
                      vm.message.empty() ? "libvirt gives no detail" : vm.message,
                      "); it is resumed once the host has space again, and stopped if still paused after ",
                      deps_.config->vm.io_error_timeout_seconds, " s")
             : "";
  if (paused == (c.io_error_since != 0) && (!paused || c.message == message)) return c;  // nothing new
  bool changed = false;
  ASSIGN_OR_RETURN(sandbox::ContainerRecord updated,
                   deps_.store->UpdateContainer(c.id, [&](sandbox::ContainerRecord& r) {
                     if (r.state != sandbox::ContainerState::kRunning) return absl::OkStatus();
                     changed = true;
                     if (paused) {
                       if (r.io_error_since == 0) r.io_error_since = absl::ToUnixNanos(deps_.clock->Now());
                       r.reason = std::string(kPausedIoErrorReason);
                       r.message = message;
                     } else {
                       r.io_error_since = 0;
                       if (r.reason == kPausedIoErrorReason) {
                         r.reason.clear();
                         r.message.clear();
                       }
                     }
                     return absl::OkStatus();
                   }));
  if (changed && paused && c.io_error_since == 0) {
    base::LogWarn("VM paused by a host I/O error (disk full?); resuming it when space is back",
                  {{"id", c.id}, {"domain", c.domain_name}, {"disks", vm.message}});
  } else if (changed && !paused) {
    base::LogInfo("VM runs again after a host I/O error pause", {{"id", c.id}, {"domain", c.domain_name}});
  }
  return updated;
}

void PodLifecycle::RetryIoErrorPause(const sandbox::ContainerRecord& c) {
  absl::StatusOr<sandbox::ContainerRecord> now = Refresh(c);  // records the pause if the event was missed
  if (!now.ok() || now->state != sandbox::ContainerState::kRunning || now->io_error_since == 0) return;
  const absl::Duration paused_for = deps_.clock->Now() - absl::FromUnixNanos(now->io_error_since);
  if (paused_for < absl::Seconds(deps_.config->vm.io_error_timeout_seconds)) {
    // QEMU retries the failed request on resume; with the host still full it
    // pauses again at once, which costs nothing.
    absl::Status resumed = deps_.hypervisor->Resume(now->domain_name);
    if (!resumed.ok())
      base::LogWarn("resume after I/O error", {{"id", c.id}, {"error", std::string(resumed.message())}});
    absl::StatusOr<sandbox::ContainerRecord> after = Refresh(*now);
    if (!after.ok())
      base::LogWarn("refresh after resume", {{"id", c.id}, {"error", std::string(after.status().message())}});
    return;
  }
  // Failed clearly rather than frozen forever: kubelet sees an exit with the
  // reason (Refresh, from the stop event or below) and restarts the
  // container by its restart policy.
  base::LogError("VM still paused by a host I/O error; stopping it",
                 {{"id", c.id}, {"domain", now->domain_name}, {"paused_s", StrCat(absl::ToInt64Seconds(paused_for))}});
  if (absl::Status s = deps_.hypervisor->Destroy(now->domain_name); !s.ok()) {
    base::LogWarn("destroy after I/O error", {{"id", c.id}, {"error", std::string(s.message())}});
    return;  // the next sweep tries again
  }
  absl::StatusOr<sandbox::ContainerRecord> exited = Refresh(*now);
  if (!exited.ok())
    base::LogWarn("refresh after destroy", {{"id", c.id}, {"error", std::string(exited.status().message())}});
}

absl::Status PodLifecycle::StopContainer(std::string_view id_arg, absl::Duration grace) {
  absl::StatusOr<std::string> id = deps_.store->ResolveContainerId(id_arg);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();  // CRI: stopping an unknown container succeeds
  RETURN_IF_ERROR(id.status());
  // No mark: a stop only asks the guest and waits; a second StopContainer,
  // a StopPodSandbox or a RemoveContainer may come meanwhile and force it.
  std::shared_ptr<absl::Notification> exited = WatchExit(*id);
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, deps_.store->GetContainer(*id));
  if (c.state != sandbox::ContainerState::kRunning) return absl::OkStatus();
  if (IsPlainContainer(c)) return StopPlainContainer(c, grace);
  if (grace > absl::ZeroDuration()) {
    RETURN_IF_ERROR(deps_.hypervisor->PowerButton(c.domain_name));
    const absl::Time deadline = deps_.clock->Now() + grace;
    absl::Time next_press = deps_.clock->Now() + options_.power_button_repress;
    while (true) {
      absl::Duration left = deadline - deps_.clock->Now();
      if (left <= absl::ZeroDuration()) break;
      if (deps_.clock->WaitFor(*exited, std::min(left, options_.stop_check))) return absl::OkStatus();
      // An event can be lost (libvirt reconnect); one state check per slice.
      ASSIGN_OR_RETURN(c, Refresh(c));
      if (c.state != sandbox::ContainerState::kRunning) return absl::OkStatus();
      if (deps_.clock->Now() >= next_press) {
        absl::Status pressed = deps_.hypervisor->PowerButton(c.domain_name);
        if (!pressed.ok()) base::LogWarn("power button", {{"id", *id}, {"error", std::string(pressed.message())}});
        next_press = deps_.clock->Now() + options_.power_button_repress;
      }
    }
    base::LogInfo("guest did not power off within grace; destroying",
                  {{"id", *id}, {"grace_ms", StrCat(absl::ToInt64Milliseconds(grace))}});
  }
  RETURN_IF_ERROR(deps_.hypervisor->Destroy(c.domain_name));
  return Refresh(c).status();
}

absl::Status PodLifecycle::DeleteContainerArtifacts(const sandbox::ContainerRecord& c) {
  if (IsPlainContainer(c)) {
    absl::Status s = DeletePlainArtifacts(c);
    ForgetTimings(c.id);
    NotifyExit(c.id);
    return s;
  }
  absl::Status first;
  base::KeepFirstError(&first, deps_.console->Remove(c.id));
  if (std::string domain = DomainOf(c); !domain.empty()) base::KeepFirstError(&first, deps_.hypervisor->Remove(domain));
  // After the domain: a cgroup with QEMU still in it cannot go.
  if (first.ok()) base::KeepFirstError(&first, RemoveVmCgroup(WithPlannedCgroup(c)));
  // After the domain: its QEMU may hold files open until it is gone. A failed
  // revoke keeps the record (phase removing), so the uid is not handed out
  // again with entries left behind.
  if (c.vm_uid != 0 && first.ok()) base::KeepFirstError(&first, file_access_.Revoke(c.vm_grants, c.vm_uid));
  if (c.vm_uid != 0 && first.ok() && deps_.uid_claims != nullptr) {
    base::KeepFirstError(&first, deps_.uid_claims->Release(c.vm_uid, ContainerDir(c.id)));
  }
  base::KeepFirstError(&first, base::RemoveAll(ContainerDir(c.id)));
  // The socket dir the record names (it outlives a state_dir change).
  if (!c.console_socket.empty()) {
    base::KeepFirstError(&first, base::RemoveAll(std::filesystem::path(c.console_socket).parent_path()));
  }
  ForgetTimings(c.id);
  NotifyExit(c.id);
  return first;
}

absl::Status PodLifecycle::RemoveContainer(std::string_view id_arg) {
  absl::StatusOr<std::string> id = deps_.store->ResolveContainerId(id_arg);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();  // CRI: removing an unknown container succeeds
  RETURN_IF_ERROR(id.status());
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, deps_.store->GetContainer(*id));
  ASSIGN_OR_RETURN(OpTracker::Hold pod_hold,
                   ops_.Acquire(c.sandbox_id, Mode::kShared, "RemoveContainer", options_.op_wait));
  ASSIGN_OR_RETURN(OpTracker::Hold hold, ops_.Acquire(*id, Mode::kExclusive, "RemoveContainer", options_.op_wait));
  absl::StatusOr<sandbox::ContainerRecord> now = deps_.store->GetContainer(*id);
  if (absl::IsNotFound(now.status())) return absl::OkStatus();  // removed while we waited
  RETURN_IF_ERROR(now.status());
  if (now->load_error.empty()) {
    RETURN_IF_ERROR(deps_.store
                        ->UpdateContainer(*id,
                                          [](sandbox::ContainerRecord& r) {
                                            r.phase = sandbox::Phase::kRemoving;
                                            return absl::OkStatus();
                                          })
                        .status());
  }
  RETURN_IF_ERROR(DeleteContainerArtifacts(*now));  // forces the VM off if it still runs
  RETURN_IF_ERROR(deps_.store->RemoveContainer(*id));
  Emit(ContainerEventType::kDeleted, *id, c.sandbox_id);
  base::LogInfo("container removed", {{"id", *id}});
  return absl::OkStatus();
}

absl::Status PodLifecycle::ReopenContainerLog(std::string_view id_arg) {
  ASSIGN_OR_RETURN(std::string id, deps_.store->ResolveContainerId(id_arg));
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, deps_.store->GetContainer(id));
  if (c.state != sandbox::ContainerState::kRunning) {
    return absl::FailedPreconditionError(StrCat("container \"", id, "\" is not running"));
  }
  if (IsPlainContainer(c)) {
    // Both output files write into the one CRI log.
    RETURN_IF_ERROR(deps_.console->Reopen(id));
    return deps_.console->Reopen(StrCat(id, "/stderr"));
  }
  return deps_.console->Reopen(id);
}

absl::StatusOr<sandbox::SandboxRecord> PodLifecycle::Sandbox(std::string_view id_or_prefix) const {
  ASSIGN_OR_RETURN(std::string id, deps_.store->ResolveSandboxId(id_or_prefix));
  return deps_.store->GetSandbox(id);
}

absl::StatusOr<sandbox::ContainerRecord> PodLifecycle::Container(std::string_view id_or_prefix) {
  ASSIGN_OR_RETURN(std::string id, deps_.store->ResolveContainerId(id_or_prefix));
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, deps_.store->GetContainer(id));
  // One libvirt call: a guest that powered off a moment ago shows as EXITED
  // now, even if its event is still on the way.
  absl::StatusOr<sandbox::ContainerRecord> fresh = Refresh(c);
  if (fresh.ok()) return *std::move(fresh);
  base::LogWarn("container state refresh failed", {{"id", id}, {"error", std::string(fresh.status().message())}});
  return c;
}

}  // namespace kvcri::cri
