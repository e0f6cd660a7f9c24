// Sandbox and container records as stored on disk (versioned JSON), their IDs and names.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvcri::sandbox {

// Version of the on-disk JSON of both records. A reader refuses any other
// version; additive optional fields do not need a bump (unknown keys are
// ignored, missing optional keys take their defaults).
inline constexpr int kRecordVersion = 1;

// Length of sandbox and container IDs: 32 random bytes as lowercase hex.
inline constexpr size_t kIdLength = 64;

// Crash-safety phase of a record. A multi-step operation writes its phase
// before the first side effect, so a restart finds what was half done:
//   kCreating: written before netns/CNI (sandbox) or overlay/domain (container);
//              recovery undoes whatever side effects exist and removes the record.
//   kReady:    every side effect of creation exists.
//   kRemoving: written before teardown; recovery finishes the teardown.
enum class Phase { kCreating, kReady, kRemoving };

// CRI PodSandboxState.
enum class SandboxState { kReady, kNotReady };

// CRI ContainerState.
enum class ContainerState { kCreated, kRunning, kExited, kUnknown };

enum class Protocol { kTcp, kUdp, kSctp };

struct SandboxMetadata {
  std::string name;
  std::string namespace_;  // CRI "namespace"; trailing _ because it is a keyword.
  std::string uid;
  uint32_t attempt = 0;

  bool operator==(const SandboxMetadata&) const = default;
};

struct DnsConfig {
  std::vector<std::string> servers;
  std::vector<std::string> searches;
  std::vector<std::string> options;

  bool operator==(const DnsConfig&) const = default;
};

struct PortMapping {
  Protocol protocol = Protocol::kTcp;
  int32_t container_port = 0;
  int32_t host_port = 0;
  std::string host_ip;

  bool operator==(const PortMapping&) const = default;
};

struct GuestRoute {
  std::string dst;      // CIDR
  std::string gateway;  // empty for on-link

  bool operator==(const GuestRoute&) const = default;
};

// The VM's NIC as the Pod network wired it (cni::WiredNic, without the cni/
// dependency): tap in the Pod netns, the CNI interface's MAC and MTU, and the
// addresses and routes the guest is handed.
struct GuestNic {
  std::string cni_ifname;
  std::string tap_name;  // empty: no NIC (no Pod network)
  std::string mac;
  int32_t mtu = 0;
  std::vector<std::string> addresses;  // CIDR, IPv4 first
  std::string gateway4;
  std::string gateway6;
  std::string gateway6_mac;  // learnt at wiring; empty when unknown
  std::vector<GuestRoute> routes;

  bool operator==(const GuestNic&) const = default;
};

// What CNI reported for the pod network; empty until CNI ADD succeeded.
struct NetworkStatus {
  std::string ip;                           // the primary interface's first address
  std::vector<std::string> additional_ips;  // its other addresses, then the other NICs'
  // The guest's NICs in the CNI result's order (tap0, tap1, ...): one per
  // interface CNI placed in the netns. Written as "nics" plus, for readers of
  // builds before several networks, the first as "nic"; a record with only
  // "nic" reads as one NIC.
  std::vector<GuestNic> nics;

  bool operator==(const NetworkStatus&) const = default;
};

// The Pod micro-VM (docs/microvm.md): the one VM of a Pod whose containers
// are plain OCI images, booted from the runtime's kernel and initramfs at the
// Pod's first plain container. Everything is named before the domain
// exists, so recovery and the sweep find what a crash left. Empty
// domain_name: the Pod has none.
struct PodVm {
  std::string domain_name;  // "kvcri-<sandbox id>"
  std::string dir;          // <root>/pods/<sandbox id>: console.log, share/
  std::string share;        // <dir>/share: served to the guest by virtio-fs, a mount point of its own
  std::string console_path;
  std::string console_socket;
  std::string agent_socket;
  std::string kernel, initrd, cmdline;
  int32_t vcpus = 0;
  int64_t memory_mib = 0;
  // As ContainerRecord::cgroup_path: the VM's cgroup below the Pod's.
  std::string cgroup_path;
  std::string cgroup_unit;
  // ns since the Unix epoch: when the domain was created (0: not yet).
  int64_t started_at = 0;

  bool operator==(const PodVm&) const = default;
};

struct SandboxRecord {
  std::string id;  // kIdLength lowercase hex
  SandboxMetadata metadata;
  std::string runtime_handler;
  SandboxState state = SandboxState::kNotReady;
  Phase phase = Phase::kCreating;
  int64_t created_at = 0;  // ns since the Unix epoch
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string log_directory;
  std::string hostname;
  std::string netns_path;  // empty for host_network
  DnsConfig dns;
  std::vector<PortMapping> port_mappings;
  bool host_network = false;
  std::string cgroup_parent;
  // CRI linux.sysctls: applied by a Pod micro-VM's init (docs/microvm.md).
  std::map<std::string, std::string> sysctls;
  NetworkStatus network;
  PodVm pod_vm;

  // Memory only, never serialized: non-empty when Load() found this record's
  // file unreadable. Such a placeholder carries only `id`, state kNotReady and
  // this reason; it can be listed and removed but not updated.
  std::string load_error;

  bool operator==(const SandboxRecord&) const = default;

  std::string ToJson() const;
  // InvalidArgument for corrupt JSON, a wrong type, a missing required field,
  // an unknown enum value or an unknown version.
  static absl::StatusOr<SandboxRecord> FromJson(std::string_view text);
};

struct ContainerMetadata {
  std::string name;
  uint32_t attempt = 0;

  bool operator==(const ContainerMetadata&) const = default;
};

// How the VM boots: a kernel (+initrd, cmdline), a disk image (an overlay of
// the image's disk), or through the firmware from one of the container's
// block devices, used in place (the Pod's kubevirt-cri.io/boot-device
// annotation, docs/volumes.md "Persistent VMs"). kMicroVm: not a VM of its
// own but a plain-image container run by crun in the Pod micro-VM
// (SandboxRecord::pod_vm) from its bundle (ContainerRecord::bundle_dir).
enum class BootKind { kUnset, kKernel, kDisk, kDevice, kMicroVm };

struct BootInfo {
  BootKind kind = BootKind::kUnset;
  std::string kernel;
  std::string initrd;
  std::string cmdline;
  std::string disk;
  std::string disk_format;  // "qcow2", "raw"
  // The container path of the device (one of ContainerRecord::devices) the
  // VM boots from or (kKernel) has as its first disk; empty without the
  // annotation. kDevice always has one.
  std::string device;
  // runtime::FirmwareName: "bios", "uefi", "uefi-secure"; empty (records
  // from before UEFI) is bios. UEFI: the OVMF code and variable-store
  // template chosen at create, and the VM's own copy of the template.
  std::string firmware;
  std::string uefi_code;
  std::string uefi_vars;
  std::string nvram;
  // The container path of the CRI device holding the variable store
  // (kubevirt-cri.io/nvram-device); `nvram` is then its host path. Empty:
  // `nvram` is a file in the container directory.
  std::string nvram_device;
  bool tpm = false;  // a swtpm TPM 2.0

  bool operator==(const BootInfo&) const = default;
};

struct DeviceSpec {
  std::string container_path;
  std::string host_path;
  std::string permissions;  // CRI cgroup permissions, e.g. "rwm"
  // The device number (st_rdev) host_path named at CreateContainer; 0 in
  // records written before it was kept. StartContainer refuses another one.
  uint64_t host_rdev = 0;

  bool operator==(const DeviceSpec&) const = default;
};

struct MountSpec {
  std::string container_path;
  std::string host_path;
  bool readonly = false;
  // The inode (st_dev, st_ino) host_path named at CreateContainer; 0 in
  // records written before they were kept. StartContainer refuses another.
  uint64_t host_dev = 0;
  uint64_t host_ino = 0;

  bool operator==(const MountSpec&) const = default;
};

// CRI LinuxContainerResources of a VM container, as far as we apply them.
struct ContainerLinuxResources {
  int64_t cpu_period = 0;
  int64_t cpu_quota = 0;
  int64_t cpu_shares = 0;
  int64_t memory_limit_in_bytes = 0;
  std::string cpuset_cpus;
  std::string cpuset_mems;

  bool operator==(const ContainerLinuxResources&) const = default;
};

struct ContainerRecord {
  std::string id;          // kIdLength lowercase hex
  std::string sandbox_id;  // kIdLength lowercase hex
  ContainerMetadata metadata;
  std::string image;      // the reference the user gave
  std::string image_ref;  // resolved image ID
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string log_path;  // relative to the sandbox's log_directory, as in CRI
  ContainerState state = ContainerState::kCreated;
  Phase phase = Phase::kCreating;
  int64_t created_at = 0;   // ns since the Unix epoch
  int64_t started_at = 0;   // 0 = never started
  int64_t finished_at = 0;  // 0 = not finished
  int32_t exit_code = 0;
  std::string reason;
  std::string message;
  std::string domain_name;   // libvirt domain
  std::string overlay_path;  // writable disk layered over the image
  std::string console_path;
  // The VM's size now in force: vCPUs present and the balloon's target
  // (until start: what the VM boots with). UpdateContainerResources changes
  // them, after the live change succeeded (cri/pod_resize.cc).
  int32_t vcpus = 0;
  int64_t memory_mib = 0;
  // Fixed when the VM starts: the vCPU slots it can be hot-plugged up to, and
  // its boot memory, which the balloon shrinks the guest below and never
  // exceeds. 0 in records from before resizing: vcpus and memory_mib.
  int32_t max_vcpus = 0;
  int64_t max_memory_mib = 0;
  // The CRI linux resources in force as the request gave them
  // (ContainerStatus.resources reports them; 0 / empty: not set). The CPU
  // ones are also written to the VM's cgroup.
  ContainerLinuxResources resources;
  BootInfo boot;
  std::vector<DeviceSpec> devices;
  std::vector<MountSpec> mounts;
  // cloud-init NoCloud seed (raw VFAT image) given to the VM read-only.
  std::string seed_path;
  // While RUNNING: when QEMU paused the VM on a host I/O error (a full
  // disk), ns since the Unix epoch; 0 while it runs. Bounds how long the
  // pause is retried before the container is failed.
  int64_t io_error_since = 0;
  // The uid (== gid) this VM's QEMU runs as, from [security] vm_uid_range;
  // 0: QEMU runs as root (confinement off). Held until the record is removed,
  // so a restarted daemon never hands it to another VM.
  uint32_t vm_uid = 0;
  // Host paths outside the container dir on which vm_uid got an ACL entry
  // (image files, block devices, shared directories) and, for each, its
  // ancestors: what RemoveContainer takes back.
  std::vector<std::string> vm_grants;
  // Unix sockets QEMU listens on (short paths below the state dir: a socket
  // path has at most 107 bytes): the serial console's interactive side
  // (attach; its output also goes to console_path) and kvcri-agent's
  // virtio-serial channel. Empty in records of VMs made before they existed.
  std::string console_socket;
  std::string agent_socket;
  // The cgroup this VM's QEMU and helpers run in, a child of the Pod's
  // cgroup_parent (runtime/cgroup/cgroup_placer.h): its path below each
  // hierarchy's root, and for the systemd driver its transient scope unit.
  // Written before it is created, so a crash never leaves one nobody removes.
  // Empty: none (records from before, or no cgroup placement configured).
  std::string cgroup_path;
  std::string cgroup_unit;
  // kMicroVm: the container's OCI bundle on the Pod share (<share>/<id>),
  // its root filesystem mounted at rootfs/ (overlay upper and work dirs
  // in the container dir, out of the guest's reach).
  std::string bundle_dir;
  // kMicroVm: the OCI process of the container's spec without its args
  // (JSON), which an exec's process is made from (`crun exec --process`),
  // as containerd makes an exec's from the container's: same user, groups,
  // capabilities, env and cwd.
  std::string exec_process;

  // Memory only, as SandboxRecord::load_error; placeholders are kUnknown.
  std::string load_error;

  bool operator==(const ContainerRecord&) const = default;

  std::string ToJson() const;
  static absl::StatusOr<ContainerRecord> FromJson(std::string_view text);
};

// CRI's unique sandbox name: "<name>_<namespace>_<uid>_<attempt>".
std::string SandboxName(const SandboxMetadata& m);
// Container name, unique within its sandbox: "<name>_<attempt>".
std::string ContainerName(const ContainerMetadata& m);

// True for a well-formed ID (kIdLength lowercase hex).
bool IsValidId(std::string_view id);

std::string_view PhaseName(Phase p);
std::string_view SandboxStateName(SandboxState s);
std::string_view ContainerStateName(ContainerState s);
std::string_view ProtocolName(Protocol p);
std::string_view BootKindName(BootKind k);

}  // namespace kvcri::sandbox
