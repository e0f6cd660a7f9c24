// StartContainer, StopContainer, RemoveContainer, ReopenContainerLog, and the
// refresh of a RUNNING record from its domain's state.
#include "absl/time/clock.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"
#include "cri/validate.h"
#include "cri/volumes.h"
#include "runtime/console_log.h"
#include "runtime/hypervisor.h"

namespace kvcri::cri {

using base::StrCat;

namespace {

runtime::VmSpec BuildVmSpec(const sandbox::ContainerRecord& c, const sandbox::SandboxRecord& sb,
                            config::Accelerator accel) {
  runtime::VmSpec spec;
  spec.name = c.domain_name;
  spec.pod_id = sb.id;
  spec.container_id = c.id;
  spec.pod_namespace = sb.metadata.namespace_;
  spec.pod_name = sb.metadata.name;
  spec.vcpus = c.vcpus;
  spec.memory_mib = c.memory_mib;
  spec.accel = accel;
  spec.console_log = c.console_path;
  if (c.boot.kind == sandbox::BootKind::kKernel) {
    spec.kernel = c.boot.kernel;
    spec.initrd = c.boot.initrd;
    spec.cmdline = c.boot.cmdline;
  } else {
    runtime::DiskSpec disk;
    disk.path = c.boot.disk;
    disk.format = c.boot.disk_format;
    disk.boot = true;
    spec.disks.push_back(disk);
  }
  if (!c.seed_path.empty()) {
    runtime::DiskSpec seed;
    seed.path = c.seed_path;
    seed.format = "raw";
    seed.read_only = true;
    seed.serial = "cidata";
    spec.disks.push_back(seed);
  }
  if (!sb.network.nic.tap_name.empty()) {
    // The tap exists in the Pod netns since RunPodSandbox: the guest's first
    // frame already crosses a complete wiring.
    runtime::NicSpec nic;
    nic.tap_name = sb.network.nic.tap_name;
    nic.mac = sb.network.nic.mac;
    nic.mtu = sb.network.nic.mtu;
    spec.nics.push_back(nic);
  }
  return spec;
}

std::string LogPathOf(const sandbox::ContainerRecord& c, const sandbox::SandboxRecord& sb) {
  if (c.log_path.empty() || sb.log_directory.empty()) return "";
  return (std::filesystem::path(sb.log_directory) / c.log_path).string();
}

}  // namespace

void RuntimeService::RegisterConsole(const sandbox::ContainerRecord& c, const sandbox::SandboxRecord& sb) {
  std::string log_path = LogPathOf(c, sb);
  if (log_path.empty()) return;  // no CRI log requested
  base::LogIfError(deps_.console->Add(c.id, c.console_path, log_path), "console log copy not started");
}

grpc::Status RuntimeService::StartContainer(grpc::ServerContext*, const pb::StartContainerRequest* req,
                                            pb::StartContainerResponse*) {
  if (absl::Status s = ValidateIdArgument("container_id", req->container_id()); !s.ok()) return ToGrpc(s);
  return ToGrpc(StartVmContainer(req->container_id()));
}

absl::Status RuntimeService::StartVmContainer(const std::string& id_arg) {
  ASSIGN_OR_RETURN(std::string id, deps_.store->ResolveContainerId(id_arg));
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, deps_.store->GetContainer(id));
  absl::MutexLock pod_lock(&PodLock(c.sandbox_id));
  ASSIGN_OR_RETURN(c, deps_.store->GetContainer(id));  // re-read under the lock
  if (c.state != sandbox::ContainerState::kCreated) {
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
  std::string log_path = LogPathOf(c, sb);
  if (!log_path.empty()) RETURN_IF_ERROR(base::MakeDirs(std::filesystem::path(log_path).parent_path(), 0755));

  runtime::VmSpec spec = BuildVmSpec(c, sb, deps_.accelerator);
  RETURN_IF_ERROR(AddVolumesToVmSpec(c, VolumeOptions{}, &spec));  // devices, mounts
  absl::Time t0 = absl::Now();
  spec.netns = sb.netns_path;  // QEMU opens the Pod's tap device there
  absl::Status created = deps_.hypervisor->Create(spec);
  absl::Duration libvirt_took = absl::Now() - t0;
  if (!created.ok()) {
    base::LogIfError(deps_.hypervisor->Remove(spec.name), "rollback: remove domain");
    (void)deps_.store
        ->UpdateContainer(id,
                          [&](sandbox::ContainerRecord& r) {
                            r.state = sandbox::ContainerState::kExited;
                            r.finished_at = absl::ToUnixNanos(absl::Now());
                            r.exit_code = 128;
                            r.reason = "StartError";
                            r.message = std::string(created.message());
                            return absl::OkStatus();
                          })
        .IgnoreError();  // the start error is what the caller needs to see
    return created;
  }
  absl::StatusOr<sandbox::ContainerRecord> started = deps_.store->UpdateContainer(id, [&](sandbox::ContainerRecord& r) {
    r.state = sandbox::ContainerState::kRunning;
    r.started_at = absl::ToUnixNanos(absl::Now());
    return absl::OkStatus();
  });
  if (!started.ok()) {
    // Without a RUNNING record nobody would own the VM: take it down again.
    base::LogIfError(deps_.hypervisor->Remove(spec.name), "rollback: remove domain");
    return started.status();
  }
  RegisterConsole(*started, sb);
  RecordTimings(id, StrCat("{\"libvirtCreateMs\":", absl::ToDoubleMilliseconds(libvirt_took),
                          ",\"startMs\":", absl::ToDoubleMilliseconds(absl::Now() - t0), "}"));
  base::LogInfo("container started", {{"id", id}, {"domain", spec.name},
                                      {"libvirt_ms", StrCat(absl::ToInt64Milliseconds(libvirt_took))}});
  return absl::OkStatus();
}

absl::StatusOr<sandbox::ContainerRecord> RuntimeService::RefreshContainerState(const sandbox::ContainerRecord& c) {
  if (c.state != sandbox::ContainerState::kRunning) return c;
  ASSIGN_OR_RETURN(runtime::VmStatus vm, deps_.hypervisor->Status(c.domain_name));
  if (vm.phase == runtime::VmPhase::kRunning || vm.phase == runtime::VmPhase::kPaused) return c;
  int exit_code = vm.exit_code;
  std::string reason = vm.reason;
  if (vm.phase == runtime::VmPhase::kMissing) {
    exit_code = 255;
    reason = "VMNotFound";
  }
  ASSIGN_OR_RETURN(sandbox::ContainerRecord updated, deps_.store->UpdateContainer(c.id, [&](sandbox::ContainerRecord& r) {
    if (r.state != sandbox::ContainerState::kRunning) return absl::OkStatus();
    r.state = sandbox::ContainerState::kExited;
    r.finished_at = absl::ToUnixNanos(absl::Now());
    r.exit_code = exit_code;
    r.reason = reason;
    if (vm.phase == runtime::VmPhase::kMissing) r.message = StrCat("libvirt domain \"", c.domain_name, "\" is gone");
    return absl::OkStatus();
  }));
  // The guest is off: copy what is left of its console, then stop following it.
  base::LogIfError(deps_.console->Remove(c.id), "console log flush");
  base::LogInfo("container exited", {{"id", c.id}, {"exit_code", StrCat(exit_code)}, {"reason", reason}});
  return updated;
}

grpc::Status RuntimeService::StopContainer(grpc::ServerContext*, const pb::StopContainerRequest* req,
                                           pb::StopContainerResponse*) {
  if (absl::Status s = ValidateIdArgument("container_id", req->container_id()); !s.ok()) return ToGrpc(s);
  return ToGrpc(StopVmContainer(req->container_id(), req->timeout()));
}

absl::Status RuntimeService::StopVmContainer(const std::string& id_arg, int64_t timeout_seconds) {
  absl::StatusOr<std::string> id = deps_.store->ResolveContainerId(id_arg);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();  // CRI: stopping an unknown container succeeds
  RETURN_IF_ERROR(id.status());
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, deps_.store->GetContainer(*id));
  absl::MutexLock pod_lock(&PodLock(c.sandbox_id));
  ASSIGN_OR_RETURN(c, deps_.store->GetContainer(*id));
  if (c.state != sandbox::ContainerState::kRunning) return absl::OkStatus();
  if (timeout_seconds > 0) {
    // ACPI power button; the hypervisor forces the VM off after the grace period.
    RETURN_IF_ERROR(deps_.hypervisor->Shutdown(c.domain_name, absl::Seconds(timeout_seconds)));
  } else {
    RETURN_IF_ERROR(deps_.hypervisor->Destroy(c.domain_name));
  }
  return RefreshContainerState(c).status();
}

absl::Status RuntimeService::DeleteContainerArtifacts(const sandbox::ContainerRecord& c) {
  absl::Status first;
  base::KeepFirstError(&first, deps_.console->Remove(c.id));
  if (!c.domain_name.empty()) base::KeepFirstError(&first, deps_.hypervisor->Remove(c.domain_name));
  base::KeepFirstError(&first, base::RemoveAll(ContainerDir(c.id)));
  ForgetTimings(c.id);
  return first;
}

grpc::Status RuntimeService::RemoveContainer(grpc::ServerContext*, const pb::RemoveContainerRequest* req,
                                             pb::RemoveContainerResponse*) {
  if (absl::Status s = ValidateIdArgument("container_id", req->container_id()); !s.ok()) return ToGrpc(s);
  return ToGrpc(RemoveVmContainer(req->container_id()));
}

absl::Status RuntimeService::RemoveVmContainer(const std::string& id_arg) {
  absl::StatusOr<std::string> id = deps_.store->ResolveContainerId(id_arg);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();  // CRI: removing an unknown container succeeds
  RETURN_IF_ERROR(id.status());
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, deps_.store->GetContainer(*id));
  absl::MutexLock pod_lock(&PodLock(c.sandbox_id));
  ASSIGN_OR_RETURN(c, deps_.store->GetContainer(*id));
  if (c.load_error.empty()) {
    RETURN_IF_ERROR(deps_.store
                        ->UpdateContainer(*id,
                                          [](sandbox::ContainerRecord& r) {
                                            r.phase = sandbox::Phase::kRemoving;
                                            return absl::OkStatus();
                                          })
                        .status());
  }
  RETURN_IF_ERROR(DeleteContainerArtifacts(c));  // forces the VM off if it still runs
  RETURN_IF_ERROR(deps_.store->RemoveContainer(*id));
  base::LogInfo("container removed", {{"id", *id}});
  return absl::OkStatus();
}

grpc::Status RuntimeService::ReopenContainerLog(grpc::ServerContext*, const pb::ReopenContainerLogRequest* req,
                                                pb::ReopenContainerLogResponse*) {
  if (absl::Status s = ValidateIdArgument("container_id", req->container_id()); !s.ok()) return ToGrpc(s);
  absl::StatusOr<std::string> id = deps_.store->ResolveContainerId(req->container_id());
  if (!id.ok()) return ToGrpc(id.status());
  absl::StatusOr<sandbox::ContainerRecord> c = deps_.store->GetContainer(*id);
  if (!c.ok()) return ToGrpc(c.status());
  if (c->state != sandbox::ContainerState::kRunning) {
    return ToGrpc(absl::FailedPreconditionError(StrCat("container \"", *id, "\" is not running")));
  }
  return ToGrpc(deps_.console->Reopen(*id));
}

}  // namespace kvcri::cri
