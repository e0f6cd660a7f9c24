// The daemon's configuration (config.toml schema) and its defaults.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvcri::config {

// Which QEMU accelerator VMs use. kAuto picks KVM only where it can run guests.
enum class Accelerator { kAuto, kKvm, kTcg };

struct LibvirtConfig {
  // Empty means the embedded QEMU driver rooted at <root>/libvirt.
  std::string uri;
  Accelerator accelerator = Accelerator::kAuto;
  // QEMU binary used for domains; empty lets libvirt choose.
  std::string emulator;
  // VM exits reach kubelet from libvirt's lifecycle events (within a moment);
  // off, only the state poll below sees them.
  bool lifecycle_events = true;
  // The safety net: every running VM's state is checked this often.
  int64_t state_poll_seconds = 10;
};

struct VmConfig {
  int64_t default_memory_mib = 512;
  int64_t min_memory_mib = 64;
  int default_vcpus = 1;
  // The vCPUs every VM can grow to without a reboot (UpdateContainerResources
  // hot-plugs up to it): the domain is defined with this many vCPU slots and
  // `vcpus` of them present. A container that asks for more at create gets
  // its own count as its maximum.
  int max_vcpus = 4;
  // The largest virtual disk a VM may get. Its qcow2 overlay grows at most to
  // the virtual size of the image's disk (plus qcow2 metadata), so this
  // bounds the host disk one VM can fill; larger images are refused at
  // CreateContainer.
  int64_t max_disk_mib = 65536;
  // A VM that QEMU paused because a disk write failed on the host (disk
  // full) is resumed by the safety sweep while space may be back; after this
  // many seconds still paused it is stopped and reported EXITED.
  int64_t io_error_timeout_seconds = 300;
  // OVMF for UEFI VMs (q35): the code and the variable-store template each
  // VM's NVRAM is copied from; plain UEFI and Secure Boot (SMM build, keys
  // of Microsoft's UEFI CA enrolled). Debian's `ovmf` paths, as its QEMU
  // firmware descriptors (/usr/share/qemu/firmware/60-edk2-x86_64.json and
  // 40-edk2-x86_64-secure-enrolled.json) pair them.
  std::filesystem::path uefi_code = "/usr/share/OVMF/OVMF_CODE_4M.fd";
  std::filesystem::path uefi_vars = "/usr/share/OVMF/OVMF_VARS_4M.fd";
  std::filesystem::path uefi_secure_code = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd";
  std::filesystem::path uefi_secure_vars = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";
};

struct CniConfig {
  std::filesystem::path conf_dir = "/etc/cni/net.d";
  std::vector<std::filesystem::path> bin_dirs = {"/opt/cni/bin", "/usr/lib/cni"};
  // Where ADD results are cached so DEL works after a restart; empty = <root>/cni-cache.
  std::filesystem::path cache_dir;
};

struct RuntimeConfig {
  // Runtime handlers served as VMs.
  std::vector<std::string> vm_handlers = {"kubevirt"};
  // What an empty runtime_handler means: one of vm_handlers.
  std::string default_handler = "kubevirt";
  // The node's cgroup driver, answered to kubelet's RuntimeConfig:
  // "systemd" or "cgroupfs". Empty in the file: detected at load as kubelet
  // documents it (systemd when systemd is the init system, i.e.
  // /run/systemd/system exists; cgroupfs otherwise).
  std::string cgroup_driver;
  // Where the cgroups of VM containers go when the Pod has no
  // linux.cgroup_parent (Pods made by crictl or tests, not kubelet): a
  // cgroup path with cgroupfs, a slice name with systemd. Empty: "/kubevirt-cri"
  // (cgroupfs) or "kubevirt_cri.slice" (systemd).
  std::string default_cgroup_parent;
};

// The cgroup driver for `configured` ("" = detect): "systemd" when
// `systemd_marker` (normally /run/systemd/system) is a directory, else
// "cgroupfs".
std::string ResolveCgroupDriver(const std::string& configured,
                                const std::filesystem::path& systemd_marker = "/run/systemd/system");

struct ImagesConfig {
  // A pull (manifest, every blob, extraction) fails after this many seconds.
  int64_t pull_timeout_seconds = 1800;
  // Registries ("host" or "host:port") reached without TLS verification,
  // falling back to plain HTTP. Loopback registries always are.
  std::vector<std::string> insecure_registries;
  // Registry domain -> mirror endpoint URLs, tried in order before it.
  std::map<std::string, std::vector<std::string>> mirrors;
  // One image's blobs as declared by its manifest (checked before the
  // download) and its layers once decompressed, each at most this (bytes).
  int64_t max_image_bytes = int64_t{64} << 30;
  // Tar entries in one image's layers together.
  int64_t max_image_entries = 1000000;
  // The unprivileged uid/gid layer extraction runs as (never 0).
  int64_t extract_uid = 65534;
  int64_t extract_gid = 65534;
};

// The node's container runtime, which serves every RuntimeClass that is not a
// VM handler. kubevirt-cri forwards those calls to it (see docs/node.md).
struct UpstreamConfig {
  // gRPC target of the upstream CRI socket ("unix:///path"). Empty: VM-only,
  // nothing is forwarded and an empty runtime_handler means default_handler.
  std::string endpoint = "unix:///run/containerd/containerd.sock";
  // How long merged reads (List*, Status, ImageFsInfo) wait for the upstream
  // before answering with our side alone.
  int64_t list_timeout_seconds = 10;
  // How long the IDs of a removed VM sandbox and its containers stay ours
  // (tombstones), so kubelet's follow-up calls about them are answered here
  // even while the upstream is down. Memory only, at most 4096 IDs.
  int64_t tombstone_ttl_seconds = 600;
};

// How VMs are confined (docs/security.md, "QEMU confinement").
struct SecurityConfig {
  // "FIRST-LAST": each VM's QEMU runs under its own uid and gid from this
  // range (uid == gid), kept in the container record until RemoveContainer.
  // No user or group of the host may lie in it (checked at start-up). Empty:
  // QEMU runs as root, unconfined (start-up logs a warning).
  std::string vm_uid_range = "2000000000-2000065535";
  // Parsed from vm_uid_range; 0/0 when it is empty.
  uint32_t vm_uid_first = 2000000000;
  uint32_t vm_uid_last = 2000065535;

  bool confined() const { return vm_uid_first != 0; }
};

// The streaming server that serves Exec, Attach and PortForward URLs
// (docs/exec.md, "The streaming server").
struct StreamingConfig {
  // "IP:port" ("[IPv6]:port"); port 0 picks a free port. Loopback by
  // default: kubelet on this node is the only client it needs.
  std::string address = "127.0.0.1:0";
  // Both or neither: HTTPS with this PEM certificate chain and key.
  std::string tls_cert_file;
  std::string tls_key_file;
  int64_t token_ttl_seconds = 60;
  int64_t max_connections = 256;
};

// The Pod micro-VM that runs plain-image containers (docs/microvm.md).
// Its boot files are built from the node's Debian packages by
// share/kubevirt-cri/microvm/build-microvm.sh (scripts/run.sh does it).
struct MicroVmConfig {
  std::filesystem::path kernel = "/var/lib/kubevirt-cri/microvm/vmlinuz";
  std::filesystem::path initramfs = "/var/lib/kubevirt-cri/microvm/initramfs.img";
  // The guest's size: its containers' cgroups (crun's, inside) divide it.
  int64_t memory_mib = 512;
  int64_t vcpus = 1;
  // How long CreateContainer waits for a booting micro-VM's agent.
  int64_t boot_timeout_seconds = 180;
};

// The Prometheus endpoint (docs/operator-guide.md, "Metrics").
struct MetricsConfig {
  // "IP:port" ("[IPv6]:port") serving GET /metrics; empty: off.
  std::string address;
};

struct Config {
  std::filesystem::path listen = "/run/kubevirt-cri/kubevirt-cri.sock";
  // Persistent state: images, sandbox records, libvirt embed root.
  std::filesystem::path root = "/var/lib/kubevirt-cri";
  // Volatile state: network namespaces, console sockets.
  std::filesystem::path state_dir = "/run/kubevirt-cri";
  std::string log_level = "info";
  LibvirtConfig libvirt;
  VmConfig vm;
  CniConfig cni;
  RuntimeConfig runtime;
  UpstreamConfig upstream;
  ImagesConfig images;
  SecurityConfig security;
  StreamingConfig streaming;
  MetricsConfig metrics;
  MicroVmConfig microvm;

  // The libvirt URI actually used: `libvirt.uri` or the embedded default.
  std::string LibvirtUri() const;
  std::filesystem::path CniCacheDir() const;
};

// Parses a TOML document; unknown keys are errors so typos do not go unnoticed.
absl::StatusOr<Config> ParseConfig(std::string_view toml_text, std::string_view source_name);
// Reads and parses a file. A missing file yields the defaults only when `optional`.
absl::StatusOr<Config> LoadConfig(const std::filesystem::path& path, bool optional);

// Parses "FIRST-LAST" of [security] vm_uid_range into `out` (0/0 for "").
absl::Status ParseVmUidRange(std::string_view text, SecurityConfig* out);

// "IP:port" or "[IPv6]:port" with a numeric address (no names: what a
// listener binds must not depend on the resolver).
struct HostPort {
  std::string host;  // without brackets
  uint16_t port = 0;
};
absl::StatusOr<HostPort> ParseHostPort(std::string_view text);

absl::StatusOr<Accelerator> ParseAccelerator(std::string_view text);
std::string_view AcceleratorName(Accelerator a);

}  // namespace kvcri::config
