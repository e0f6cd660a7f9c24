// The orchestrator's drafts from what containerd's CRI puts in a task's OCI spec (containerd-shim mode).
#pragma once

// containerd's CRI plugin does not pass kubelet's PodSandboxConfig to a
// shim; it writes what the runtime needs into the sandbox task's OCI spec
// (docs/containerd-shim.md section 4, and what containerd 1.6.20 was seen to
// write there): the Pod's metadata and log directory as
// io.kubernetes.cri.sandbox-* annotations, the hostname, the netns CNI
// configured in linux.namespaces, the cgroup in linux.cgroupsPath, and the
// Pod's resolv.conf as the source of the /etc/resolv.conf bind mount. Pod
// annotations reach the spec only when containerd's runtime entry lists
// them in pod_annotations (for ours: "kubevirt-cri.io/*").

#include <string>
#include <string_view>

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "cri/pod_drafts.h"
#include "cri/proto/api.pb.h"

namespace kvcri::shim::containerd {

// The largest resolv.conf read (kubelet's have a few hundred bytes).
inline constexpr size_t kMaxResolvConfBytes = 64 << 10;

// What the Task service needs to tell a task's kind before anything else.
struct SpecFacts {
  std::string container_type;  // io.kubernetes.cri.container-type; "" when absent
  std::string netns;           // linux.namespaces[type=network].path; "" when absent
  std::string sandbox_id;      // io.kubernetes.cri.sandbox-id; "" when absent
};

// SpecFacts of a task's config.json text; InvalidArgument when it is not a
// JSON object.
absl::StatusOr<SpecFacts> ReadSpecFacts(std::string_view config_json);

// A SandboxDraft from the sandbox task's config.json text. InvalidArgument
// naming the field or annotation when the spec is not one containerd's CRI
// wrote for a sandbox (no metadata annotations, not JSON, a resolv.conf
// over kMaxResolvConfBytes); FailedPrecondition without a network
// namespace (host networking).
absl::StatusOr<cri::SandboxDraft> SandboxDraftFromSpec(std::string_view config_json, std::string_view runtime_handler);

// The host node of a device the spec names by type ('b' or 'c') and
// major:minor (the spec has no host path); NotFound when there is none.
using DeviceNodeFinder = std::function<absl::StatusOr<std::string>(char type, int64_t major, int64_t minor)>;

// /dev/block/<major>:<minor> or /dev/char/<major>:<minor> (udev's links),
// else a scan of /dev for a node with that number.
absl::StatusOr<std::string> FindDeviceNode(char type, int64_t major, int64_t minor);

// The CRI ContainerConfig kubelet sent, rebuilt from a container task's
// config.json text, so that the daemon's own validation and conversion
// (cri::ValidateVolumes, ContainerDraftFromRequest) serve this path too:
// metadata.name and image from the io.kubernetes.cri.container-name and
// image-name annotations (INVALID_ARGUMENT without the name); resources from
// linux.resources; mounts from the spec's bind mounts except containerd's
// own per-sandbox files (sources under .../io.containerd.grpc.v1.cri/
// sandboxes/: hostname, hosts, resolv.conf, shm) and the runtime's pseudo
// file systems, propagation from rshared/rslave (which validation then
// refuses); devices from linux.devices, their host nodes found by number
// and their permissions from the allow rules of linux.resources.devices.
absl::StatusOr<::runtime::v1::ContainerConfig> ContainerConfigFromSpec(std::string_view config_json,
                                                                       const DeviceNodeFinder& find_node = FindDeviceNode);

// UpdateTaskRequest.resources' JSON (an OCI LinuxResources) as the CRI
// message the daemon's UpdateContainerResources validates; InvalidArgument
// when it is not a JSON object.
absl::StatusOr<::runtime::v1::LinuxContainerResources> LinuxResourcesFromOciJson(std::string_view text);

// The servers, searches and options of a resolv.conf text (the lines
// kubelet writes: nameserver, search, options; the rest ignored).
sandbox::DnsConfig ParseResolvConf(std::string_view text);

}  // namespace kvcri::shim::containerd
