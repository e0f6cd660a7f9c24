// The VM seam cri/ uses: typed VM specs, lifecycle calls and exit events.
#pragma once

// The VM interface cri/ uses. One VM per CRI container; the domain name is
// the key. Implementations: LibvirtHypervisor (runtime/libvirt_hypervisor.h)
// and fakes under test/fakes/.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "config/config.h"

namespace kvcri::runtime {

// A tap device created by cni/ in the Pod's network namespace; QEMU opens it
// (libvirt <interface type='ethernet'> with managed='no').
struct NicSpec {
  std::string tap_name;
  std::string mac;  // "52:54:00:..."; empty lets libvirt pick one
  int mtu = 0;      // 0 = default
};

struct DiskSpec {
  std::filesystem::path path;
  std::string format;  // "qcow2" or "raw"; always explicit, never probed
  bool read_only = false;
  std::string serial;  // visible in the guest as /sys/block/vdX/serial
  bool boot = false;   // the disk firmware boots from (disk boot only)
  bool block_device = false;
  // QEMU host cache mode ("none", "writeback", ...) and AIO ("native",
  // "io_uring", "threads"); empty leaves libvirt's default. Shared storage
  // (CSI block volumes) wants cache "none" (O_DIRECT) with io "native".
  std::string cache;
  std::string io;
};

// How a host directory reaches the guest.
enum class FsDriver {
  kVirtiofs,  // vhost-user-fs; libvirt runs virtiofsd, which lives and dies with QEMU
  // virtio-9p served by QEMU itself, security model "squash": files the
  // guest creates belong to QEMU's (per-VM) uid, chown errors are ignored;
  // the fallback, read-only shares, and every share of a confined VM.
  k9p,
};

// A host directory shared into the guest, which mounts it by `tag`.
struct FilesystemSpec {
  std::filesystem::path source_dir;  // absolute, already resolved
  std::string tag;                   // mount tag; at most 36 bytes for virtiofs
  bool read_only = false;            // 9p only: libvirt 9.0 cannot make virtiofs read-only
  FsDriver driver = FsDriver::kVirtiofs;
  std::filesystem::path virtiofsd;   // virtiofsd binary (kVirtiofs); empty lets libvirt pick
};

// What the VM boots with. kBios is SeaBIOS on i440fx ("pc"), as before UEFI
// existed; the UEFI kinds are OVMF on q35 with a per-VM variable store.
enum class Firmware {
  kBios,
  kUefi,        // OVMF without Secure Boot
  kUefiSecure,  // OVMF with Secure Boot enforced (needs SMM), Microsoft keys enrolled
};

// OVMF as two pflash devices: the read-only code and the VM's own writable
// variable store (NVRAM), a copy of a template. The caller makes `nvram`
// before Create (runtime/firmware.h CopyNvramTemplate) so it carries the
// VM's owner: libvirt would create a missing one as its own user (root),
// which a VM confined to its own uid cannot open.
struct UefiSpec {
  std::filesystem::path code;           // e.g. /usr/share/OVMF/OVMF_CODE_4M.fd
  std::filesystem::path vars_template;  // recorded in the domain (<nvram template=...>)
  std::filesystem::path nvram;          // this VM's variable store
  // `nvram` is a block device (a persistent VM's, docs/volumes.md): Create
  // hands QEMU its first template-size bytes (runtime/nvram_slice.h) through
  // a block node at `nvram_node` (<nvram type='block'>), made for the start
  // and unlinked after it; the device is kept when the domain is undefined.
  bool nvram_is_device = false;
  std::filesystem::path nvram_node;
};

struct VmSpec {
  std::string name;  // libvirt domain name, e.g. "kvcri-<container id>"
  // Recorded in the domain's <metadata> so List() can map domains back.
  std::string pod_id, container_id, pod_namespace, pod_name;
  int vcpus = 1;
  // vCPU slots of the machine (<vcpu current='vcpus'>max_vcpus</vcpu>):
  // SetVcpus hot-plugs up to it. 0 or <= vcpus: no room to grow.
  int max_vcpus = 0;
  // The boot size and the maximum: the balloon (SetMemory) takes the guest
  // below it and back, never above.
  int64_t memory_mib = 512;
  config::Accelerator accel = config::Accelerator::kTcg;  // kKvm or kTcg
  std::vector<DiskSpec> disks;
  // Any kVirtiofs entry makes guest RAM shared memory (memfd), which
  // vhost-user needs.
  std::vector<FilesystemSpec> filesystems;
  // Direct kernel boot when `kernel` is set; disk boot otherwise.
  std::filesystem::path kernel, initrd;
  std::string cmdline;
  // QEMU appends the serial console (ttyS0) to this file.
  std::filesystem::path console_log;
  // Non-empty: the console's interactive side as well, a unix socket QEMU
  // listens on (attach); its output still goes to console_log.
  std::filesystem::path console_socket;
  // Non-empty: a virtio-serial channel for kvcri-agent
  // (runtime/agent/agent_client.h), a unix socket QEMU listens on. Every VM
  // also gets libvirt's qemu-guest-agent channel (org.qemu.guest_agent.0).
  std::filesystem::path agent_socket;
  // Non-empty: where QEMU binds the qemu-guest-agent channel. Empty: libvirt
  // picks <root>/lib/qemu/channel/target/domain-<id>-<name>/..., which
  // outgrows a unix socket path (107 bytes) once domain ids reach 100 under
  // /var/lib/kubevirt-cri, or 10 under a long embed root.
  std::filesystem::path qga_socket;
  std::vector<NicSpec> nics;
  // The Pod's network namespace (a pinned netns path): QEMU is started inside
  // it so it finds the Pod's tap devices. Empty: the caller's namespace.
  std::filesystem::path netns;
  // Create paused; Resume() lets the guest run (e.g. once networking is wired).
  bool start_paused = false;
  // QEMU runs as this uid and gid (libvirt's per-domain DAC label); 0 runs it
  // as the driver's default user (root). The caller made every file of the
  // spec openable by them (runtime/vm_confinement.h).
  uint32_t uid = 0;
  uint32_t gid = 0;
  Firmware firmware = Firmware::kBios;
  UefiSpec uefi;  // set exactly when firmware is not kBios
  // A TPM 2.0 (tpm-crb) emulated by swtpm, which libvirt starts with QEMU and
  // whose state it keeps under its root (lib/swtpm/<uuid>/) until the domain
  // is undefined. Needs uid == 0: see docs/security.md "vTPM".
  bool tpm = false;
};

enum class VmPhase { kRunning, kPaused, kShutoff, kCrashed, kMissing, kOther };

// Exit code and reason as CRI reports them for a VM that stopped; see
// VmStatusFromLibvirtState (runtime/vm_state.h) for the mapping.
struct VmStatus {
  VmPhase phase = VmPhase::kOther;
  int exit_code = 0;
  std::string reason;  // "Completed", "Killed", "Crashed", "StartFailed", ...; kPaused: "IOError" or ""
  // kPaused with reason kIoErrorReason: which disks failed how, e.g.
  // "vda: no space left on the host" (empty when libvirt cannot say).
  std::string message;
};

// VmStatus::reason of a VM that QEMU paused because a write to one of its
// disks failed on the host (werror=enospc: the host file system is full).
inline constexpr char kIoErrorReason[] = "IOError";

struct VmListing {
  std::string name;
  std::string pod_id;
  std::string container_id;
  VmPhase phase = VmPhase::kOther;
  std::string reason;  // as VmStatus::reason
};

struct VmStats {
  absl::Time timestamp;
  uint64_t cpu_ns = 0;             // guest CPU time consumed, all vCPUs
  uint64_t memory_rss_bytes = 0;   // QEMU's resident set (0 if unknown)
  uint64_t memory_actual_bytes = 0;  // balloon size: memory the guest has
  uint64_t memory_unused_bytes = 0;  // guest-reported free memory (0 if unknown)
};

// A domain of ours changed lifecycle state (stopped, crashed, started, ...).
// Only a hint: the receiver asks Status() for the settled state.
struct VmEvent {
  std::string name;    // domain name
  std::string detail;  // e.g. "stopped/shutdown", "crashed/panicked"; for logs
};

// Thread-safe: cri/ calls it from many gRPC threads.
class Hypervisor {
 public:
  virtual ~Hypervisor() = default;

  // OK when the hypervisor connection is usable.
  virtual absl::Status Ready() = 0;
  // Defines a persistent domain and starts it (paused if asked). On failure
  // nothing is left behind (the definition is undone).
  virtual absl::Status Create(const VmSpec& spec) = 0;
  virtual absl::Status Resume(std::string_view name) = 0;
  // Presses the ACPI power button once and returns at once; the guest decides
  // when (or whether) to power off. OK when the VM is already off;
  // NotFound when there is no such domain. Callers wait for the exit event
  // and Destroy() after their grace period.
  virtual absl::Status PowerButton(std::string_view name) = 0;
  // Forces the VM off. OK when it is off or missing.
  virtual absl::Status Destroy(std::string_view name) = 0;
  // Forces the VM off and deletes its definition and its QEMU log
  // (DomainLogPath). OK when missing.
  virtual absl::Status Remove(std::string_view name) = 0;
  // The file the driver writes the domain's QEMU stdout/stderr to (libvirt's
  // <root>/log/qemu/<name>.log for the embedded driver; all in one
  // directory); empty when the driver keeps no such file. Not virtual-pure:
  // fakes keep none.
  virtual std::filesystem::path DomainLogPath(std::string_view /*name*/) const { return {}; }
  // Phase kMissing when there is no such domain.
  virtual absl::StatusOr<VmStatus> Status(std::string_view name) = 0;
  // Every domain we created (those carrying our metadata), any phase.
  virtual absl::StatusOr<std::vector<VmListing>> List() = 0;
  // FailedPrecondition when the VM is not running; NotFound when missing.
  virtual absl::StatusOr<VmStats> Stats(std::string_view name) = 0;
  // Live resize of a running VM (UpdateContainerResources). PlugVcpus
  // hot-plugs vCPUs until at least `vcpus` are present (up to the spec's
  // max_vcpus) and never unplugs: under TCG the guest ejects a CPU after
  // libvirt 9.0 stopped waiting (5 s), and libvirt then keeps counting it.
  // Callers shrink by having the guest offline vCPUs instead. A plugged
  // vCPU is offline in a Linux guest until the guest onlines it. SetMemory
  // moves the balloon target to `mib` (at most the boot size). Both are OK
  // when the VM already has that size, so a retry after a crash converges.
  // InvalidArgument beyond the maximum, FailedPrecondition when not
  // running, NotFound when missing.
  virtual absl::Status PlugVcpus(std::string_view name, int vcpus) = 0;
  virtual absl::Status SetMemory(std::string_view name, int64_t mib) = 0;
  // Calls `on_event` for every lifecycle event of a domain, from the
  // hypervisor's event thread: it must only note the event and return, never
  // call back into the Hypervisor. One subscriber; a second call replaces it.
  // Unimplemented when the driver has no events (callers then poll).
  virtual absl::Status Subscribe(std::function<void(const VmEvent&)> on_event) = 0;
  // Sends one JSON command to the domain's qemu-guest-agent and returns the
  // reply (JSON text, untrusted). Unavailable when no agent is connected;
  // DeadlineExceeded after `timeout`. Not pure: fakes may have no agent.
  virtual absl::StatusOr<std::string> GuestAgentCommand(std::string_view /*name*/, std::string_view /*command_json*/,
                                                        absl::Duration /*timeout*/) {
    return absl::UnimplementedError("this hypervisor has no guest agent channel");
  }
  // The host processes running the VM: QEMU first, then its helpers
  // (virtiofsd, one per virtio-fs share), each checked to belong to this
  // domain. FailedPrecondition when the VM is not running; NotFound when
  // missing. Not pure: fakes may run no processes.
  virtual absl::StatusOr<std::vector<int>> Processes(std::string_view /*name*/) {
    return absl::UnimplementedError("this hypervisor reports no processes");
  }
  // Whether the guest has opened the virtio-serial port named `channel`
  // (libvirt's channel state), e.g. runtime::agent::kAgentChannelName.
  virtual absl::StatusOr<bool> GuestChannelConnected(std::string_view /*name*/, std::string_view /*channel*/) {
    return absl::UnimplementedError("this hypervisor reports no channel state");
  }
};

}  // namespace kvcri::runtime
