// PodLifecycle: the proto-free Pod orchestrator (sandboxes, VM containers, recovery, exits).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "cri/container_event_sink.h"
#include "cri/exit_watcher.h"
#include "cri/op_tracker.h"
#include "cri/pod_drafts.h"
#include "cri/runtime_deps.h"
#include "cri/vm_monitor.h"
#include "runtime/cgroup/cgroup_placer.h"
#include "runtime/microvm/container_runner.h"
#include "runtime/vm_confinement.h"
#include "sandbox/records.h"

namespace kvcri::sandbox {
struct LoadReport;
}  // namespace kvcri::sandbox
namespace kvcri::base {
class Rollback;
}  // namespace kvcri::base
namespace kvcri::runtime {
struct VmStatus;
}  // namespace kvcri::runtime
namespace kvcri::runtime::image {
struct ImageInfo;
}  // namespace kvcri::runtime::image

namespace kvcri::cri {

// Our libvirt domains are "kvcri-<container id>" (container IDs are never
// reused), which is how a domain is tied to its record.
inline constexpr std::string_view kDomainPrefix = "kvcri-";
// The domain of `c`. A placeholder of an unreadable record has no
// domain_name: it gets the name our rule gives its ID, so that stopping or
// removing it still reaches its VM.
std::string DomainOf(const sandbox::ContainerRecord& c);
// A plain-image container, run by crun in its Pod's micro-VM (BootKind::kMicroVm).
bool IsPlainContainer(const sandbox::ContainerRecord& c);
// A plain container's bundle, from the directory its record names.
runtime::microvm::Bundle BundleOf(const sandbox::ContainerRecord& c);
// A VM that runs or is paused (its domain is up).
inline bool IsUp(runtime::VmPhase p) { return p == runtime::VmPhase::kRunning || p == runtime::VmPhase::kPaused; }
// The cgroup the record names for its VM (empty path: none).
runtime::cgroup::CgroupTarget CgroupOf(const sandbox::ContainerRecord& c);

// ContainerStatus.reason of a RUNNING container whose VM QEMU paused on a
// host I/O error (its disk's file system is full), and of its exit when the
// pause outlasted vm.io_error_timeout_seconds.
inline constexpr std::string_view kPausedIoErrorReason = "PausedIOError";
inline constexpr std::string_view kIoErrorExitReason = "IOError";
// ContainerStatus.reason of a VM whose QEMU the kernel killed for the Pod
// cgroup's memory limit (exit code 137), as runc's containers report it.
inline constexpr std::string_view kOomKilledReason = "OOMKilled";

struct PodLifecycleOptions {
  // How long a call waits for a conflicting call on the same Pod or
  // container (a StopPodSandbox behind a StartContainer) before it fails
  // with FailedPrecondition. Calls on other Pods never wait.
  absl::Duration op_wait = absl::Minutes(1);
  // During a graceful stop: the VM's state is checked at this interval even
  // without an event, and the power button pressed again at the second (a
  // guest still booting has no ACPI listener and loses earlier presses).
  absl::Duration stop_check = absl::Seconds(1);
  absl::Duration power_button_repress = absl::Seconds(5);
  VmMonitorOptions monitor;
  // The kvcri-agent binary put on the seed of Pods annotated
  // kubevirt-cri.io/guest-agent=inject (runtime::kGuestAgentBinary).
  std::string guest_agent_binary = "/usr/share/kubevirt-cri/guest/kvcri-agent";
};

// Turns the Pod lifecycle into netns + CNI + VM + records. Every call is
// crash-safe (the record's phase is on disk before the first side effect),
// rolls back what it made when it fails, and keeps the record when a
// rollback step fails so that a retry, the safety sweep or the next start-up
// finishes the job. No lock is held across CNI, libvirt, disk or a grace
// period: calls mark the IDs they work on (OpTracker) instead.
class PodLifecycle {
 public:
  PodLifecycle(RuntimeDeps deps, PodLifecycleOptions options = {});
  ~PodLifecycle();  // StopBackground()
  PodLifecycle(const PodLifecycle&) = delete;
  PodLifecycle& operator=(const PodLifecycle&) = delete;

  // pod_recovery.cc: reconciles records loaded from disk with libvirt and the
  // network namespaces, finishing or undoing what a crash interrupted, then
  // starts the VM monitor. Call once, before serving.
  absl::Status Recover(const sandbox::LoadReport& report);
  // Stops the VM monitor; VMs keep running.
  void StopBackground();

  // pod_sandbox.cc. RunSandbox is idempotent for kubelet's retries: a second
  // call for the same Pod (same sandbox name) while the first is in flight
  // waits for it and returns its answer; once it is READY, the same config
  // returns the same ID. Nothing is created twice.
  absl::StatusOr<std::string> RunSandbox(const SandboxDraft& draft);
  // Unknown IDs are OK (CRI). Running VMs are forced off, the network
  // released; the record stays NOTREADY.
  absl::Status StopSandbox(std::string_view id);
  absl::Status RemoveSandbox(std::string_view id);

  // pod_container.cc
  absl::StatusOr<std::string> CreateContainer(const ContainerDraft& draft);
  absl::Status StartContainer(std::string_view id);
  // Power button, then waits up to `grace` for the exit and forces the VM
  // off. Zero grace forces it off at once. Holds no lock while waiting.
  absl::Status StopContainer(std::string_view id, absl::Duration grace);
  absl::Status RemoveContainer(std::string_view id);
  absl::Status ReopenContainerLog(std::string_view id);
  // pod_resize.cc: UpdateContainerResources. A running VM gets the vCPUs
  // (hot-plugged up to its max_vcpus, then the guest agent onlines or
  // offlines them), the
  // balloon target (at most its boot memory) and the cgroup's CPU limits;
  // a created one records the size it will boot with. InvalidArgument
  // naming the field beyond a maximum; FailedPrecondition once exited.
  absl::Status UpdateResources(std::string_view id, const ContainerResources& resources);

  // Reads. Container() brings a RUNNING record in line with its VM first
  // (one libvirt call), so an exit shows at once.
  absl::StatusOr<sandbox::SandboxRecord> Sandbox(std::string_view id_or_prefix) const;
  absl::StatusOr<sandbox::ContainerRecord> Container(std::string_view id_or_prefix);
  // Start timings as a JSON object ("" when none), memory only.
  std::string Timings(std::string_view id) const;
  // The call in flight on `id`, "" when none.
  std::string BusyWith(std::string_view id) const { return ops_.Busy(id); }
  bool events_active() const { return monitor_.events_active(); }

  // The safety sweep: settles RUNNING records whose VM is gone, retries
  // teardowns that failed. The monitor runs it every safety_poll.
  void Sweep();
  // Wakes the monitor for a sweep (tests).
  void SweepSoon() { monitor_.SweepSoon(); }

 private:
  // pod_sandbox.cc
  absl::StatusOr<std::string> DoRunSandbox(const SandboxDraft& draft);
  // DHCP off, tap gone, CNI DEL, netns removed; every step tried.
  absl::Status ReleaseSandboxResources(const sandbox::SandboxRecord& sb);
  // pod_container.cc
  absl::Status DeleteContainerArtifacts(const sandbox::ContainerRecord& c);
  // EXITED with code and reason once the VM is off; wakes StopContainer.
  // A VM paused on a host I/O error is noted (NoteIoErrorPause).
  absl::StatusOr<sandbox::ContainerRecord> Refresh(const sandbox::ContainerRecord& c);
  // Keeps the record's reason/message/io_error_since in line with whether
  // QEMU has the VM paused on a host I/O error; writes only on a change.
  absl::StatusOr<sandbox::ContainerRecord> NoteIoErrorPause(const sandbox::ContainerRecord& c,
                                                            const runtime::VmStatus& vm);
  // From the sweep, for a RUNNING container whose VM is paused on an I/O
  // error: resumes it (space may be back), or once the pause has lasted
  // vm.io_error_timeout_seconds, forces it off and records EXITED "IOError".
  void RetryIoErrorPause(const sandbox::ContainerRecord& c);
  void RegisterConsole(const sandbox::ContainerRecord& c, const sandbox::SandboxRecord& sb);
  // Creates the container's cgroup (record's cgroup_path) and moves the
  // VM's QEMU and helpers in; OK when no cgroup is planned.
  absl::Status PlaceVm(const sandbox::ContainerRecord& c);
  // `c`, with the cgroup our rule gives it when it is an unreadable
  // record's placeholder (which names none).
  sandbox::ContainerRecord WithPlannedCgroup(const sandbox::ContainerRecord& c) const;
  // Writes the record's CPU limits (quota, period, shares, cpusets) to the
  // container's cgroup; OK when it has none. Never the memory limit: QEMU
  // needs more than the guest's RAM, and the Pod cgroup (kubelet's) bounds it.
  absl::Status ApplyCpuLimits(const sandbox::ContainerRecord& c);
  // pod_resize.cc: has the guest run on vCPUs 0..vcpus-1, onlining
  // hot-plugged ones and offlining the rest (qemu-guest-agent's
  // guest-set-vcpus, else a shell through kvcri-agent); logs when it cannot.
  void GuestVcpus(const sandbox::ContainerRecord& c, int vcpus);
  // Removes the container's cgroup once its processes are gone; OK when none.
  absl::Status RemoveVmCgroup(const sandbox::ContainerRecord& c);
  // OOM kills the kernel counted in the container's cgroup (0 when none or
  // unreadable).
  uint64_t OomKillsOf(const sandbox::ContainerRecord& c) const;
  std::filesystem::path ContainerDir(std::string_view container_id) const;
  // `wanted` when set (InvalidArgument when it is not a well-formed ID,
  // AlreadyExists when a sandbox or container holds it), else a new ID.
  absl::StatusOr<std::string> IdFor(const std::string& wanted) const;
  // <state_dir>/vm/<first 16 hex of the id>: the VM's unix sockets.
  std::filesystem::path VmSocketDir(std::string_view container_id) const;
  // A uid of [security] vm_uid_range no container record holds (0 when
  // confinement is off), reserved in pending_uids_ until the caller's record
  // holds it (ReleasePendingUid).
  // With deps.uid_claims, the uid is also claimed node-wide for the
  // container's dir (released by DeleteContainerArtifacts).
  absl::StatusOr<uint32_t> AllocateVmUid(const std::string& container_id);
  void ReleasePendingUid(uint32_t uid);
  // pod_device_claims.cc: a block device is open in at most one VM of the
  // node when any of its opens writes (DeviceOpensConflict), identified by
  // st_rdev, not by path (kubelet's paths differ per Pod). FailedPrecondition
  // naming the field, the device and the container and Pod holding it, when
  // one of `devices` conflicts with a device of a container record that is
  // not EXITED (records are on disk: the hold survives a daemon restart and
  // ends with RemoveContainer, or when the VM exits) or of a CreateContainer
  // in flight. Otherwise reserves them for `container_id` in
  // pending_devices_ until ReleaseDeviceClaims, called once the caller's
  // record holds them (or the call failed).
  absl::Status ClaimDevices(const std::string& container_id, const std::vector<sandbox::DeviceSpec>& devices);
  void ReleaseDeviceClaims(const std::string& container_id);
  // Releases a CreateContainer's pending claims when it returns: from
  // PutContainer on, the record holds them.
  struct DeviceClaimHold {
    PodLifecycle* self;
    std::string id;
    ~DeviceClaimHold() { self->ReleaseDeviceClaims(id); }
  };
  // Writes a new container record (phase creating) and registers its
  // rollback: removed, or, when a later rollback step failed, left in phase
  // removing for RemoveContainer or the sweep to finish.
  absl::Status PutNewContainer(const sandbox::ContainerRecord& rec, base::Rollback& undo);
  // Ownership of the container dir's files and ACL entries outside it, for
  // the VM's uid (docs/security.md "QEMU confinement").
  absl::Status ConfineFiles(const sandbox::ContainerRecord& c);
  // pod_microvm.cc: plain-image containers in the Pod micro-VM (docs/microvm.md).
  // Where the Pod's micro-VM lives and how it boots, from the sandbox and the config.
  sandbox::PodVm PlanPodVm(const sandbox::SandboxRecord& sb) const;
  sandbox::ContainerRecord PodVmAsRecord(const sandbox::SandboxRecord& sb) const;
  absl::Status CheckMicroVmFiles() const;
  absl::StatusOr<std::shared_ptr<runtime::agent::AgentClient>> PodAgent(const sandbox::SandboxRecord& sb);
  runtime::microvm::ContainerRunner RunnerFor(const sandbox::SandboxRecord& sb);
  // Boots the Pod's micro-VM unless it runs, and waits for its agent; the
  // sandbox record as it is then. Serialized per Pod.
  // `devices`: the block volumes of the container that boots it, given to
  // the VM as virtio disks (a running micro-VM cannot take more yet).
  absl::StatusOr<sandbox::SandboxRecord> EnsurePodVm(const std::string& sandbox_id,
                                                     const std::vector<sandbox::DeviceSpec>& devices,
                                                     const std::string& container_id);
  // Forces the micro-VM off (StopPodSandbox); OK when the Pod has none.
  absl::Status StopPodVm(const sandbox::SandboxRecord& sb);
  // Removes the micro-VM's domain, cgroup, share and files, then clears the
  // record's pod_vm; keeps it when a step fails, for a retry.
  absl::Status TearDownPodVm(const sandbox::SandboxRecord& sb);
  absl::StatusOr<std::string> CreatePlainContainer(const ContainerDraft& draft, const sandbox::SandboxRecord& sb,
                                                   const runtime::image::ImageInfo& image);
  absl::Status StartPlainContainer(const sandbox::ContainerRecord& c, const sandbox::SandboxRecord& sb);
  absl::Status StopPlainContainer(const sandbox::ContainerRecord& c, absl::Duration grace);
  absl::StatusOr<sandbox::ContainerRecord> RefreshPlain(const sandbox::ContainerRecord& c);
  absl::Status DeletePlainArtifacts(const sandbox::ContainerRecord& c);
  // The container's stdout and stderr files into its CRI log.
  void RegisterPlainLogs(const sandbox::ContainerRecord& c, const sandbox::SandboxRecord& sb);
  void UnregisterPlainLogs(const std::string& id);
  // Refreshes the container as soon as its exit file appears.
  void WatchPlainExit(const sandbox::ContainerRecord& c);
  void UnwatchPlainExit(const std::string& id);
  void OnPlainExit(const std::string& id);

  // pod_recovery.cc
  void OnDomainEvent(const std::string& domain);
  // Retries a failed teardown with backoff; false while backing off.
  bool RetryDue(const std::string& id);
  void RecordTimings(const std::string& id, std::string json);
  void ForgetTimings(const std::string& id);

  // GetContainerEvents: called right after the change is on disk and in
  // memory, with no lock held; the sink snapshots the Pod from the store.
  void Emit(ContainerEventType type, const std::string& container_id, const std::string& sandbox_id) {
    if (deps_.events != nullptr) deps_.events->Publish(type, container_id, sandbox_id);
  }

  // One-shot exit notifications per container ID.
  std::shared_ptr<absl::Notification> WatchExit(const std::string& id);
  void NotifyExit(const std::string& id);

  // A RunSandbox in flight, shared with retries of the same Pod.
  struct Flight {
    absl::Notification done;
    absl::StatusOr<std::string> result;
  };

  const RuntimeDeps deps_;
  const PodLifecycleOptions options_;
  OpTracker ops_;

  mutable absl::Mutex runs_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Flight>> runs_ ABSL_GUARDED_BY(runs_mu_);  // by sandbox name

  absl::Mutex exits_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<absl::Notification>> exits_ ABSL_GUARDED_BY(exits_mu_);

  mutable absl::Mutex timings_mu_;
  std::map<std::string, std::string, std::less<>> timings_ ABSL_GUARDED_BY(timings_mu_);

  absl::Mutex uids_mu_;
  std::set<uint32_t> pending_uids_ ABSL_GUARDED_BY(uids_mu_);
  // Round robin: a uid just released is the last to be handed out again.
  uint32_t next_uid_ ABSL_GUARDED_BY(uids_mu_) = 0;
  runtime::VmFileAccess file_access_;

  struct DeviceClaim {
    std::string container_id;
    uint64_t rdev = 0;
    std::string permissions;
  };
  absl::Mutex devices_mu_;
  std::vector<DeviceClaim> pending_devices_ ABSL_GUARDED_BY(devices_mu_);

  absl::Mutex retry_mu_;
  struct Backoff {
    absl::Time next;
    absl::Duration delay;
  };
  absl::flat_hash_map<std::string, Backoff> retry_ ABSL_GUARDED_BY(retry_mu_);

  // Their threads call into the members above, so they stop first.
  ExitFileWatcher exit_watcher_;
  VmMonitor monitor_;
};

}  // namespace kvcri::cri
