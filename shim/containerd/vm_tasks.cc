// VmTasks: the sandbox's wiring and the VM container tasks through cri::PodLifecycle (vm_tasks.h).
#include "shim/containerd/vm_tasks.h"

#include <signal.h>

#include <map>

#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/convert.h"
#include "cri/pod_lifecycle.h"
#include "cri/stats_collector.h"
#include "cri/validate.h"
#include "runtime/hypervisor.h"
#include "sandbox/sandbox_store.h"
#include "shim/containerd/adopted_network.h"
#include "shim/containerd/bootstrap.h"
#include "shim/containerd/image_labels.h"
#include "shim/containerd/names.h"
#include "shim/containerd/rootfs_image.h"
#include "shim/containerd/rootfs_image_store.h"
#include "shim/containerd/spec_drafts.h"
#include "shim/containerd/task_metrics.h"

namespace kvcri::shim::containerd {

using base::StrCat;

absl::StatusOr<std::unique_ptr<VmTasks>> VmTasks::Open(const config::Config& node, std::string_view sandbox_id,
                                                       ExitFn on_exit, VmExecs::ExitFn on_exec_exit,
                                                       ContainerdApi api) {
  std::unique_ptr<VmTasks> t(new VmTasks(std::move(on_exit), std::move(api)));
  VmTasks* self = t.get();
  // Events only start once Recover runs inside Open, when `self` is whole.
  ASSIGN_OR_RETURN(t->pod_, ShimPod::Open(node, sandbox_id, [self](cri::ContainerEventType type, std::string_view id) {
                     self->OnEvent(type, id);
                   }));
  t->execs_ = std::make_unique<VmExecs>(&t->pod_->exec(), std::move(on_exec_exit));
  return t;
}

VmTasks::~VmTasks() {
  port_forward_.reset();  // its connections use the Pod's dispatcher
  std::vector<std::thread> stoppers;
  {
    absl::MutexLock lock(&mu_);
    stoppers.swap(stoppers_);
  }
  // A stop in progress ends with the VM's exit or at kGracefulStopBound;
  // containerd only shuts a shim down once its tasks are deleted.
  for (std::thread& t : stoppers) t.join();
}

absl::Status VmTasks::RunSandbox(const std::string& id, std::string_view config_json) {
  if (pod_ == nullptr) return absl::FailedPreconditionError("this shim's Pod has been removed");
  ASSIGN_OR_RETURN(SpecFacts facts, ReadSpecFacts(config_json));
  ASSIGN_OR_RETURN(cri::SandboxDraft draft,
                   SandboxDraftFromSpec(config_json, pod_->config().runtime.default_handler));
  draft.id = id;
  pod_->netns().Adopt(id, facts.netns);
  absl::StatusOr<std::string> ran = pod_->pods().RunSandbox(draft);
  if (!ran.ok()) {
    pod_->netns().Remove(id).IgnoreError();
    return ran.status();
  }
  absl::StatusOr<std::unique_ptr<NetnsPortForwarder>> forwarder =
      NetnsPortForwarder::Start(facts.netns, id, &pod_->exec());
  if (!forwarder.ok()) {
    // The Pod runs; only `kubectl port-forward` to it will fail.
    base::LogWarn("port-forward into the VM unavailable", {{"id", id}, {"error", std::string(forwarder.status().message())}});
  } else {
    port_forward_ = *std::move(forwarder);
  }
  return absl::OkStatus();
}

absl::Status VmTasks::RemoveSandbox(const std::string& id) {
  if (pod_ == nullptr) return absl::OkStatus();
  RETURN_IF_ERROR(pod_->pods().StopSandbox(id));
  // StopSandbox forced the Pod's VMs off; their records go with the sandbox.
  for (const sandbox::ContainerRecord& c :
       pod_->store().ListContainers([&](const sandbox::ContainerRecord& r) { return r.sandbox_id == id; })) {
    RETURN_IF_ERROR(RemoveContainer(c.id).status());
  }
  RETURN_IF_ERROR(pod_->pods().RemoveSandbox(id));
  if (pod_->store().SandboxCount() == 0) {
    // The shim's Pod is gone: its records, libvirt root and sockets too.
    port_forward_.reset();
    execs_.reset();  // its sessions ran on the Pod's dispatcher
    absl::Status removed = pod_->RemoveState();
    pod_.reset();
    return removed;
  }
  return absl::OkStatus();
}

absl::Status VmTasks::CreateContainer(const pb::CreateTaskRequest& req, std::string_view config_json) {
  if (pod_ == nullptr) return absl::FailedPreconditionError("this shim's Pod has been removed");
  const std::string& id = req.id();
  ASSIGN_OR_RETURN(SpecFacts facts, ReadSpecFacts(config_json));
  if (!pod_->store().GetSandbox(facts.sandbox_id).ok()) {
    return absl::FailedPreconditionError(StrCat("container task \"", id, "\": its sandbox \"", facts.sandbox_id,
                                                "\" (annotation ", kAnnotationSandboxId,
                                                ") is not the Pod this shim serves"));
  }
  ASSIGN_OR_RETURN(::runtime::v1::ContainerConfig config, ContainerConfigFromSpec(config_json));
  absl::MutexLock create_lock(&create_mu_);  // one container create at a time: a Pod has one VM
  ::runtime::v1::CreateContainerRequest creq;
  creq.set_pod_sandbox_id(facts.sandbox_id);
  *creq.mutable_config() = config;
  // The daemon's own checks: devices, mounts, resources, names.
  ASSIGN_OR_RETURN(cri::ContainerDraft draft, cri::ValidatedContainerDraft(creq));

  base::Rollback undo;
  const std::filesystem::path rootfs = std::filesystem::path(req.bundle()) / "rootfs";
  if (req.rootfs_size() > 0) {
    std::vector<pb::Mount> mounts(req.rootfs().begin(), req.rootfs().end());
    RETURN_IF_ERROR(base::MakeDirs(rootfs, 0711));
    RETURN_IF_ERROR(MountRootfs(mounts, rootfs));
    undo.Add("unmount rootfs", [rootfs] { return UnmountRootfs(rootfs); });
  }
  // Containerd's snapshot is the image: registered under the task id, so a
  // restarted container of the same image (a new task) is its own entry.
  // The image config's labels choose the kernel command line and firmware,
  // as in the daemon's store; without them the image boots with defaults.
  std::map<std::string, std::string> labels;
  if (!api_.address.empty() && !config.image().image().empty()) {
    absl::StatusOr<std::map<std::string, std::string>> read =
        ImageLabels(api_.address, api_.ns, config.image().image());
    if (read.ok()) {
      labels = *std::move(read);
    } else {
      base::LogWarn("image labels unread: the VM boots with the defaults",
                    {{"id", id}, {"image", config.image().image()}, {"error", std::string(read.status().message())}});
    }
  }
  absl::StatusOr<runtime::image::ImageInfo> image = pod_->images().Add(id, rootfs, config.image().image(), labels);
  if (!image.ok()) {
    return absl::Status(image.status().code(),
                        StrCat("container task \"", id, "\": the image \"", config.image().image(),
                               "\" is not a VM image: ", image.status().message()));
  }
  RootfsImageStore* images = &pod_->images();
  undo.Add("forget rootfs image", [images, id] {
    images->Forget(id);
    return absl::OkStatus();
  });
  draft.id = id;
  // Resolved by name to the rootfs just added (create_mu_ keeps another
  // Add of the same image out until CreateContainer has resolved it).
  // The console goes to the task's stdout FIFO; containerd writes the CRI log.
  draft.log_path = req.stdout();
  RETURN_IF_ERROR(pod_->pods().CreateContainer(draft).status());
  undo.Dismiss();
  absl::MutexLock lock(&mu_);
  rootfs_[id] = req.rootfs_size() > 0 ? rootfs.string() : std::string();
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> VmTasks::StartContainer(const std::string& id) {
  if (pod_ == nullptr) return absl::FailedPreconditionError("this shim's Pod has been removed");
  {
    absl::MutexLock lock(&mu_);
    if (exits_.contains(id)) {
      return absl::FailedPreconditionError(StrCat("task \"", id, "\" was killed before it started"));
    }
    starting_.insert(id);
  }
  absl::Status started = pod_->pods().StartContainer(id);
  bool killed = false;
  {
    absl::MutexLock lock(&mu_);
    starting_.erase(id);
    killed = kill_pending_.erase(id) > 0;
  }
  RETURN_IF_ERROR(started);
  pod_->ShareLibvirtCache();  // the next Pod's shim skips libvirt's QEMU probe
  if (killed) {
    // containerd gave up on this start (its caller's deadline) and killed
    // the task meanwhile: the VM goes now; its exit is reported as any.
    RETURN_IF_ERROR(pod_->pods().StopContainer(id, absl::ZeroDuration()));
  }
  ASSIGN_OR_RETURN(VmTaskState state, State(id));
  return state.pid;
}

absl::Status VmTasks::Signal(const std::string& id, int signal) {
  if (pod_ == nullptr) return absl::NotFoundError(StrCat("task \"", id, "\": process already finished"));
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, pod_->pods().Container(id));
  if (c.state == sandbox::ContainerState::kCreated && signal == SIGKILL) {
    // runc kills a created container's waiting init; containerd then waits
    // for the exit and deletes the task (its clean-up after a failed or
    // abandoned StartContainer does exactly this).
    bool report = false;
    {
      absl::MutexLock lock(&mu_);
      if (starting_.contains(id)) {
        kill_pending_.insert(id);  // StartContainer forces the VM off once it is up
      } else {
        report = exits_.emplace(id, VmExit{kKilledExitStatus, absl::Now()}).second;
      }
    }
    if (report && on_exit_) on_exit_(id, RecordedExit(id));
    return absl::OkStatus();
  }
  if (c.state != sandbox::ContainerState::kRunning) {
    // runc's answer, which containerd's CRI tolerates when stopping.
    return absl::NotFoundError(StrCat("task \"", id, "\": process already finished"));
  }
  if (signal == SIGKILL) return pod_->pods().StopContainer(id, absl::ZeroDuration());
  cri::PodLifecycle* pods = &pod_->pods();
  absl::MutexLock lock(&mu_);
  stoppers_.emplace_back([pods, id] {
    base::LogIfError(pods->StopContainer(id, kGracefulStopBound), "graceful VM stop");
  });
  return absl::OkStatus();
}

VmExit VmTasks::RecordedExit(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = exits_.find(id);
  return it != exits_.end() ? it->second : VmExit{kKilledExitStatus, absl::Now()};
}

std::optional<VmExit> VmTasks::ExitOf(const std::string& id) {
  if (pod_ == nullptr) return std::nullopt;
  absl::StatusOr<sandbox::ContainerRecord> c = pod_->store().GetContainer(id);
  if (!c.ok() || c->state != sandbox::ContainerState::kExited) return std::nullopt;
  return VmExit{static_cast<uint32_t>(c->exit_code), absl::FromUnixNanos(c->finished_at)};
}

absl::StatusOr<VmTaskState> VmTasks::State(const std::string& id) {
  if (pod_ == nullptr) return absl::NotFoundError(StrCat("task \"", id, "\" not found"));
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, pod_->pods().Container(id));
  VmTaskState s;
  switch (c.state) {
    case sandbox::ContainerState::kCreated: {
      // Killed before it started: stopped, as runc reports such a task.
      absl::MutexLock lock(&mu_);
      if (auto it = exits_.find(id); it != exits_.end()) {
        s.status = pb::STOPPED;
        s.exit = it->second;
      } else {
        s.status = pb::CREATED;
      }
      break;
    }
    case sandbox::ContainerState::kRunning: {
      s.status = pb::RUNNING;
      absl::StatusOr<std::vector<int>> pids = pod_->hypervisor().Processes(c.domain_name);
      if (pids.ok() && !pids->empty()) s.pid = static_cast<uint32_t>(pids->front());
      break;
    }
    case sandbox::ContainerState::kExited:
      s.status = pb::STOPPED;
      s.exit = VmExit{static_cast<uint32_t>(c.exit_code), absl::FromUnixNanos(c.finished_at)};
      break;
    case sandbox::ContainerState::kUnknown:
      s.status = pb::UNKNOWN;
      break;
  }
  return s;
}

void VmTasks::OnEvent(cri::ContainerEventType type, std::string_view container_id) {
  if (type != cri::ContainerEventType::kStopped) return;
  const std::string id(container_id);
  std::optional<VmExit> exit = ExitOf(id);
  if (!exit.has_value()) return;
  {
    absl::MutexLock lock(&mu_);
    if (!exits_.emplace(id, *exit).second) return;  // reported once
  }
  if (on_exit_) on_exit_(id, *exit);
}

absl::StatusOr<VmExit> VmTasks::Wait(const std::string& id, const ttrpc::CallContext& ctx) {
  ASSIGN_OR_RETURN(VmTaskState state, State(id));
  if (state.exit.has_value()) return *state.exit;
  std::unique_ptr<ttrpc::CancelSubscription> sub;
  if (ctx.cancel) sub = std::make_unique<ttrpc::CancelSubscription>(ctx.cancel, [this] { absl::MutexLock wake(&mu_); });
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return exits_.contains(id) || (ctx.cancel && ctx.cancel->cancelled());
  };
  if (!mu_.AwaitWithDeadline(absl::Condition(&done), ctx.deadline)) {
    return absl::DeadlineExceededError("the task did not exit before the call's deadline");
  }
  if (auto it = exits_.find(id); it != exits_.end()) return it->second;
  return absl::CancelledError("the connection of the Wait call ended");
}

absl::StatusOr<VmExit> VmTasks::RemoveContainer(const std::string& id) {
  if (pod_ == nullptr) return absl::NotFoundError(StrCat("task \"", id, "\" not found"));
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, pod_->pods().Container(id));
  if (c.state == sandbox::ContainerState::kRunning) {
    return absl::FailedPreconditionError(
        StrCat("task \"", id, "\" is still running: kill it and wait for its exit first"));
  }
  VmExit exit{static_cast<uint32_t>(c.exit_code), c.finished_at != 0 ? absl::FromUnixNanos(c.finished_at) : absl::Now()};
  if (c.state == sandbox::ContainerState::kCreated) exit = RecordedExit(id);
  RETURN_IF_ERROR(pod_->pods().RemoveContainer(id));
  std::string rootfs;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = rootfs_.find(id); it != rootfs_.end()) rootfs = it->second;
    rootfs_.erase(id);
    exits_.erase(id);
  }
  pod_->images().Forget(id);
  if (!rootfs.empty()) RETURN_IF_ERROR(UnmountRootfs(rootfs));
  return exit;
}

absl::Status VmTasks::AddExec(const pb::ExecProcessRequest& req) {
  if (pod_ == nullptr) return absl::NotFoundError(StrCat("task \"", req.id(), "\" not found"));
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, pod_->pods().Container(req.id()));
  if (c.state != sandbox::ContainerState::kRunning) {
    return absl::FailedPreconditionError(StrCat("task \"", req.id(), "\" is not running: nothing to exec in"));
  }
  return execs_->Add(req);
}

std::vector<uint32_t> VmTasks::Pids(const std::string& id) {
  std::vector<uint32_t> out;
  if (pod_ == nullptr) return out;
  absl::StatusOr<sandbox::ContainerRecord> c = pod_->store().GetContainer(id);
  if (!c.ok() || c->state != sandbox::ContainerState::kRunning) return out;
  absl::StatusOr<std::vector<int>> pids = pod_->hypervisor().Processes(c->domain_name);
  if (pids.ok()) {
    for (int p : *pids) out.push_back(static_cast<uint32_t>(p));
  }
  return out;
}

absl::StatusOr<google::protobuf::Any> VmTasks::Stats(const std::string& id) {
  if (pod_ == nullptr) return absl::NotFoundError(StrCat("task \"", id, "\" not found"));
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, pod_->store().GetContainer(id));
  if (c.state != sandbox::ContainerState::kRunning) {
    return absl::NotFoundError(StrCat("task \"", id, "\": process already finished"));
  }
  const cri::ContainerUsage usage = pod_->stats().Container(c);
  return MetricsFromUsage(usage, pod_->cgroup_v2() ? MetricsVersion::kCgroupsV2 : MetricsVersion::kCgroupsV1);
}

absl::Status VmTasks::Update(const std::string& id, const google::protobuf::Any& resources) {
  if (pod_ == nullptr) return absl::NotFoundError(StrCat("task \"", id, "\" not found"));
  if (resources.type_url() != kOciLinuxResourcesTypeUrl) {
    return absl::InvalidArgumentError(StrCat("UpdateTaskRequest.resources has type \"", resources.type_url(),
                                             "\", not ", kOciLinuxResourcesTypeUrl));
  }
  ASSIGN_OR_RETURN(::runtime::v1::LinuxContainerResources r, LinuxResourcesFromOciJson(resources.value()));
  RETURN_IF_ERROR(cri::ValidateLinuxResources(r));
  return pod_->pods().UpdateResources(id, cri::ResourcesFromPb(r));
}

}  // namespace kvcri::shim::containerd
