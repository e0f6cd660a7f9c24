// VmTasks: containerd task calls of one Pod turned into the daemon's orchestrator calls (sandbox wiring, the VM container).
#pragma once

// The sandbox task's network (RunSandbox over the netns containerd's CNI
// configured: tap + tc redirect + DHCP from what the interfaces hold) and
// the VM container tasks (CreateContainer from the spec rebuilt as the CRI
// ContainerConfig kubelet sent, StartContainer, StopContainer,
// RemoveContainer) run through one cri::PodLifecycle (ShimPod), keyed by
// containerd's own IDs, which the records, libvirt domains ("kvcri-<id>")
// and containerd's tasks then share.
//
// Signals of a VM task: SIGKILL forces the VM off at once (what containerd
// sends after the stop timeout, and to every container when the Pod stops;
// to a created task, also one still inside StartContainer, it means the
// start was abandoned: the task ends 137 without a VM left running);
// any other signal is the stop signal: the ACPI power button, pressed again
// while the guest has not powered off (PodLifecycle::StopContainer with
// kGracefulStopBound), on a thread of its own so Kill returns at once.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/config.h"
#include "shim/containerd/proto/task.pb.h"
#include "shim/containerd/shim_pod.h"
#include "shim/containerd/netns_port_forward.h"
#include "shim/containerd/vm_execs.h"
#include "shim/containerd/vm_exit.h"
#include "shim/ttrpc/server.h"

namespace kvcri::shim::containerd {

// How long a stop signal waits for the guest before the VM is forced off
// when containerd sends no SIGKILL (it always does, after its timeout).
inline constexpr absl::Duration kGracefulStopBound = absl::Hours(1);

// What a VM task is now, as containerd's State reports it.
struct VmTaskState {
  pb::Status status = pb::UNKNOWN;
  uint32_t pid = 0;  // QEMU's, while it runs
  std::optional<VmExit> exit;
};

// containerd's own gRPC socket and the tasks' namespace (the shim's
// -address and -namespace): where image labels are read (image_labels.h).
struct ContainerdApi {
  std::string address;
  std::string ns;
};

class VmTasks {
 public:
  // Called once per container task when its VM has stopped (exit recorded),
  // from the orchestrator's threads; must not call back into VmTasks.
  using ExitFn = std::function<void(const std::string& id, const VmExit& exit)>;

  // Opens the Pod's orchestrator (ShimPod::Open) for `sandbox_id`.
  // `on_exec_exit` reports the end of each Task Exec (VmExecs).
  // `api` empty: images boot without their labels (the `delete` path).
  static absl::StatusOr<std::unique_ptr<VmTasks>> Open(const config::Config& node, std::string_view sandbox_id,
                                                        ExitFn on_exit, VmExecs::ExitFn on_exec_exit = nullptr,
                                                        ContainerdApi api = {});
  // Joins the stop threads (the VMs they wait for keep running).
  ~VmTasks();
  VmTasks(const VmTasks&) = delete;
  VmTasks& operator=(const VmTasks&) = delete;

  // The sandbox task: the Pod record and its network wiring in the netns
  // the sandbox spec (`config_json`) names, and the redirect that brings
  // containerd's port-forward dials to the guest (NetnsPortForwarder).
  absl::Status RunSandbox(const std::string& id, std::string_view config_json);
  // Stops what still runs and removes the sandbox's records and wiring;
  // the Pod's state directories go with the last of them.
  absl::Status RemoveSandbox(const std::string& id);

  // A container task: its rootfs mounted at <bundle>/rootfs from
  // req.rootfs(), read as the VM's image, the container created from the
  // spec; the console copied to req.stdout(). Every step is undone when a
  // later one fails.
  absl::Status CreateContainer(const pb::CreateTaskRequest& req, std::string_view config_json);
  // Boots the VM; QEMU's pid.
  absl::StatusOr<uint32_t> StartContainer(const std::string& id);
  absl::Status Signal(const std::string& id, int signal);
  absl::StatusOr<VmTaskState> State(const std::string& id);
  // Blocks until the VM task has exited; Cancelled/DeadlineExceeded as ctx says.
  absl::StatusOr<VmExit> Wait(const std::string& id, const ttrpc::CallContext& ctx);
  // Removes an exited container: its record, VM files and rootfs mount.
  // FailedPrecondition while it runs.
  absl::StatusOr<VmExit> RemoveContainer(const std::string& id);
  // The Task Exec processes of this Pod's VM containers; null once the
  // Pod is removed.
  VmExecs* execs() { return execs_.get(); }
  // Task Exec of container `req.id()`: it must be a RUNNING VM container.
  absl::Status AddExec(const pb::ExecProcessRequest& req);

  // QEMU and its helpers while the VM runs.
  std::vector<uint32_t> Pids(const std::string& id);
  // The VM's usage as the cgroups Metrics containerd's CRI decodes.
  absl::StatusOr<google::protobuf::Any> Stats(const std::string& id);
  // UpdateTaskRequest.resources (OCI LinuxResources JSON): what the
  // daemon's UpdateContainerResources does (vCPU hot-plug, balloon, cgroup
  // CPU limits), with the same checks.
  absl::Status Update(const std::string& id, const google::protobuf::Any& resources);

 private:
  VmTasks(ExitFn on_exit, ContainerdApi api) : on_exit_(std::move(on_exit)), api_(std::move(api)) {}
  void OnEvent(cri::ContainerEventType type, std::string_view container_id);
  std::optional<VmExit> ExitOf(const std::string& id);
  // The exit recorded for `id`, else 137 now.
  VmExit RecordedExit(const std::string& id);

  const ExitFn on_exit_;
  const ContainerdApi api_;
  std::unique_ptr<ShimPod> pod_;
  std::unique_ptr<VmExecs> execs_;  // after pod_: its sessions end before the dispatcher goes
  // containerd's port-forward into the guest (one sandbox per shim).
  std::unique_ptr<NetnsPortForwarder> port_forward_;
  absl::Mutex create_mu_;  // held across CreateContainer (it never waits on mu_'s holders)
  absl::Mutex mu_;
  // Container task id → its bundle's rootfs mount point.
  absl::flat_hash_map<std::string, std::string> rootfs_ ABSL_GUARDED_BY(mu_);
  // Exits seen, by container task id (OnEvent), for Wait.
  absl::flat_hash_map<std::string, VmExit> exits_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> stoppers_ ABSL_GUARDED_BY(mu_);
  // Container tasks inside StartContainer, and those SIGKILLed meanwhile.
  absl::flat_hash_set<std::string> starting_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> kill_pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::shim::containerd
