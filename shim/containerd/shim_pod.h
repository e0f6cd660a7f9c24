// ShimPod: the containerd shim's composition root, the daemon's Pod orchestrator and modules for one Pod.
#pragma once

// One shim serves one Pod (docs/containerd-shim.md section 7). ShimPod builds
// for it what shim/daemon.cc builds for the node: libvirt's embedded QEMU
// driver, the cgroup placer, the console copier, the record store, the tap
// wiring and DHCP responder, and a cri::PodLifecycle over them, with the
// adapters of this mode where containerd owns what the daemon owns on its
// own path: the netns and CNI result (AdoptedNetns, AdoptedCniRunner), the
// image (RootfsImageStore) and the CRI log format (the console is copied raw
// to the task's stdout FIFO).
//
// The node's config file (KVCRI_CONFIG, else /etc/kubevirt-cri/config.toml
// when present: the daemon's) gives the VM settings; the Pod's state lives in
// <root>/shim/<first 16 hex of the sandbox id> (records, VM overlays, the
// embedded libvirt root) and <state_dir>/shim/<same> (sockets), so a
// `delete` after the shim was killed finds the records and cleans up.

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "cri/container_event_sink.h"

namespace kvcri::cri {
class ExecDispatcher;
class PodLifecycle;
class StatsCollector;
}  // namespace kvcri::cri
namespace kvcri::sandbox {
class SandboxStore;
}  // namespace kvcri::sandbox
namespace kvcri::runtime {
class Hypervisor;
}  // namespace kvcri::runtime

namespace kvcri::shim::containerd {

class AdoptedNetns;
class RootfsImageStore;

// The environment variable naming the config file the shim reads.
inline constexpr std::string_view kConfigEnv = "KVCRI_CONFIG";
inline constexpr std::string_view kDefaultConfigPath = "/etc/kubevirt-cri/config.toml";

// The node's config as the shim reads it: $KVCRI_CONFIG (required to exist
// when set), else the default path when it exists, else the defaults.
absl::StatusOr<config::Config> LoadNodeConfig();

// The config one Pod's shim runs with: the node's VM, CNI-bin, cgroup and
// security settings; root and state_dir below the node's, per Pod; the
// embedded libvirt driver there; no upstream, no metrics, no streaming.
// InvalidArgument for a sandbox id that is not 64 hex digits, or a
// libvirt.uri other than the embedded default (a shim's QEMU must start in
// the Pod's netns, and one Pod's libvirt is the shim's alone).
absl::StatusOr<config::Config> PodConfig(const config::Config& node, std::string_view sandbox_id);

// The per-Pod state directories live under <root>/shim, which survives a
// node reboot while the VMs, and containerd's memory of the tasks, do not:
// no `delete` ever comes for them. Each Pod's directory records the kernel's
// boot id (/proc/sys/kernel/random/boot_id); a Pod's shim removes the
// directories (root and state_dir sides, and their lock files) of Pods from
// an earlier boot when it opens. Directories without a boot id are kept.
void SweepEarlierBoots(const config::Config& node, std::string_view boot_id);
// The current boot id ("" when unreadable: nothing is swept).
std::string CurrentBootId();

// Called for each change PodLifecycle reports, with no lock held.
using PodEventFn = std::function<void(cri::ContainerEventType type, std::string_view container_id)>;

class ShimPod {
 public:
  // Builds every module for the Pod `sandbox_id` from `node` (LoadNodeConfig)
  // and recovers what its records say (a shim restarted by `delete`):
  // adopted netns paths from the sandbox records, VMs reconciled with
  // libvirt. FailedPrecondition when the host cannot run VMs (cgroups,
  // uid range, libvirt).
  static absl::StatusOr<std::unique_ptr<ShimPod>> Open(const config::Config& node, std::string_view sandbox_id,
                                                        PodEventFn on_event);
  ~ShimPod();
  ShimPod(const ShimPod&) = delete;
  ShimPod& operator=(const ShimPod&) = delete;

  cri::PodLifecycle& pods();
  sandbox::SandboxStore& store();
  AdoptedNetns& netns();
  RootfsImageStore& images();
  runtime::Hypervisor& hypervisor();
  // The daemon's exec dispatcher over this Pod's guest agents (Task Exec).
  cri::ExecDispatcher& exec();
  // The daemon's usage reader over this Pod's modules (Task Stats).
  cri::StatsCollector& stats();
  // Whether the host's cgroups are v2 (the Metrics type containerd expects).
  bool cgroup_v2() const;
  const config::Config& config() const;

  // libvirt probes QEMU's capabilities once per driver root (seconds under
  // TCG), and each Pod's shim has a root of its own: the probe's result is
  // seeded from a node-wide copy (<root>/libvirt-caps-cache) at Open and
  // saved there by this, called once a VM has started. libvirt checks the
  // cached file against the QEMU binary and itself before using it.
  void ShareLibvirtCache();

  // After the sandbox is removed: the Pod's root and state dirs go. Call
  // with nothing of the Pod left in the store; the object is unusable then.
  absl::Status RemoveState();

 private:
  struct Modules;
  explicit ShimPod(std::unique_ptr<Modules> m);
  std::unique_ptr<Modules> m_;
};

}  // namespace kvcri::shim::containerd
