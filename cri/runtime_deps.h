// RuntimeDeps: the module interfaces the CRI services and the Pod orchestrator are built from.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "config/config.h"

namespace kvcri::base {
class Clock;
class MetricFamily;
}  // namespace kvcri::base
namespace kvcri::runtime {
class Hypervisor;
class ConsoleLogCopier;
}  // namespace kvcri::runtime
namespace kvcri::runtime::image {
class ImageStore;
class ImagePuller;
}  // namespace kvcri::runtime::image
namespace kvcri::runtime::cgroup {
class CgroupPlacer;
}  // namespace kvcri::runtime::cgroup
namespace kvcri::cni {
class PodNetwork;
class NetdevReader;
}  // namespace kvcri::cni
namespace kvcri::sandbox {
class SandboxStore;
class NetnsManager;
class UidClaims;
}  // namespace kvcri::sandbox

namespace kvcri::streaming {
class StreamingServer;
}  // namespace kvcri::streaming

namespace kvcri::cri {

class ExecDispatcher;
class ContainerEventSink;
class GuestAgents;

// What the services need from the modules, owned by the daemon (shim/) and
// handed in by pointer so tests can pass fakes.
struct RuntimeDeps {
  const config::Config* config = nullptr;
  // Accelerator chosen at start-up; kAuto here means none is usable.
  config::Accelerator accelerator = config::Accelerator::kAuto;
  std::string accelerator_reason;
  runtime::Hypervisor* hypervisor = nullptr;
  runtime::ConsoleLogCopier* console = nullptr;
  runtime::image::ImageStore* images = nullptr;
  // PullImage; null answers UNIMPLEMENTED.
  runtime::image::ImagePuller* puller = nullptr;
  sandbox::SandboxStore* store = nullptr;
  sandbox::NetnsManager* netns = nullptr;
  // Node-wide claims on VM uids for when several processes allocate from
  // one [security] vm_uid_range (one shim per Pod, containerd-shim mode);
  // null: this process's records are the only holders (the daemon).
  sandbox::UidClaims* uid_claims = nullptr;
  // CNI ADD/DEL, tap wiring and the guest's DHCP responder.
  cni::PodNetwork* network = nullptr;
  // Record times, grace periods, the monitor's poll.
  base::Clock* clock = nullptr;
  // Exec/Attach/PortForward URLs; null answers UNAVAILABLE.
  streaming::StreamingServer* streaming = nullptr;
  // Puts each VM's QEMU and helpers into a cgroup below the Pod's
  // (runtime/cgroup/cgroup_placer.h) and reads its accounting; null: VMs
  // stay where libvirt starts them and stats have no cgroup (fakes).
  runtime::cgroup::CgroupPlacer* cgroups = nullptr;
  // ExecSync, and the checks before a URL is handed out; null answers UNAVAILABLE.
  ExecDispatcher* exec = nullptr;
  // kvcri-agent connections (shared with `exec`): the Pod micro-VM's
  // containers are started and stopped through them; null: plain-image
  // containers are refused.
  GuestAgents* agents = nullptr;
  // CONTAINER_CREATED/STARTED/STOPPED/DELETED for GetContainerEvents
  // (cri/container_events.h); null: no events are published.
  ContainerEventSink* events = nullptr;
  // Interface counters of a Pod's netns for the stats calls; null: the
  // service reads /proc inside the netns itself (cni::ProcNetdevReader).
  cni::NetdevReader* netdev = nullptr;
  // kvcri_stats_collection_duration_seconds{rpc}, a histogram the daemon
  // registers; null: not observed.
  base::MetricFamily* stats_duration = nullptr;
  // kvcri_vm_start_duration_seconds{result="ok"|"error"}: StartContainer's
  // VM part, from domain create to the resumed guest; null: not observed.
  base::MetricFamily* vm_start_duration = nullptr;
};

}  // namespace kvcri::cri
