// StopPodSandbox and RemovePodSandbox: idempotent, teardown continues past
// failures and returns the first error (the record stays for a retry).
#include "cni/pod_network.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/grpc_status.h"
#include "cri/pod_network_spec.h"
#include "cri/runtime_service.h"
#include "cri/validate.h"
#include "runtime/hypervisor.h"
#include "sandbox/netns.h"

namespace kvcri::cri {

using base::StrCat;

using base::KeepFirstError;

grpc::Status RuntimeService::StopPodSandbox(grpc::ServerContext*, const pb::StopPodSandboxRequest* req,
                                            pb::StopPodSandboxResponse*) {
  if (absl::Status s = ValidateIdArgument("pod_sandbox_id", req->pod_sandbox_id()); !s.ok()) return ToGrpc(s);
  return ToGrpc(StopSandbox(req->pod_sandbox_id()));
}

grpc::Status RuntimeService::RemovePodSandbox(grpc::ServerContext*, const pb::RemovePodSandboxRequest* req,
                                              pb::RemovePodSandboxResponse*) {
  if (absl::Status s = ValidateIdArgument("pod_sandbox_id", req->pod_sandbox_id()); !s.ok()) return ToGrpc(s);
  return ToGrpc(RemoveSandbox(req->pod_sandbox_id()));
}

absl::Status RuntimeService::ReleaseSandboxResources(const sandbox::SandboxRecord& sb) {
  absl::Status first;
  if (!sb.netns_path.empty()) {
    absl::StatusOr<cni::AttachSpec> attach = AttachSpecFor(sb);
    if (!attach.ok()) {
      // Annotations were valid at RunPodSandbox; DEL only needs the ids.
      attach = cni::AttachSpec{};
      attach->container_id = sb.id;
      attach->netns = sb.netns_path;
    }
    // DHCP off, tap gone, CNI DEL (IP released) before the netns goes away.
    KeepFirstError(&first, deps_.network->Detach(*attach));
  }
  KeepFirstError(&first, deps_.netns->Remove(sb.id));
  return first;
}

absl::Status RuntimeService::StopSandbox(const std::string& id_arg) {
  absl::StatusOr<std::string> id = deps_.store->ResolveSandboxId(id_arg);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();  // CRI: stopping an unknown sandbox succeeds
  RETURN_IF_ERROR(id.status());
  absl::MutexLock pod_lock(&PodLock(*id));
  ASSIGN_OR_RETURN(sandbox::SandboxRecord sb, deps_.store->GetSandbox(*id));
  absl::Status first;
  for (const sandbox::ContainerRecord& c :
       deps_.store->ListContainers([&](const sandbox::ContainerRecord& r) { return r.sandbox_id == *id; })) {
    if (c.state != sandbox::ContainerState::kRunning) continue;
    // kubelet stops containers gracefully first; what is still running is forced off.
    KeepFirstError(&first, deps_.hypervisor->Destroy(c.domain_name));
    absl::StatusOr<sandbox::ContainerRecord> refreshed = RefreshContainerState(c);
    KeepFirstError(&first, refreshed.status());
  }
  KeepFirstError(&first, ReleaseSandboxResources(sb));
  if (!sb.load_error.empty()) return first;  // a corrupt placeholder cannot be updated
  KeepFirstError(&first, deps_.store
                        ->UpdateSandbox(*id,
                                        [&](sandbox::SandboxRecord& r) {
                                          r.state = sandbox::SandboxState::kNotReady;
                                          if (first.ok()) r.network = {};  // the IP is released
                                          return absl::OkStatus();
                                        })
                        .status());
  if (first.ok()) base::LogInfo("sandbox stopped", {{"id", *id}});
  return first;
}

absl::Status RuntimeService::RemoveSandbox(const std::string& id_arg) {
  absl::StatusOr<std::string> id = deps_.store->ResolveSandboxId(id_arg);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();
  RETURN_IF_ERROR(id.status());
  absl::MutexLock pod_lock(&PodLock(*id));
  ASSIGN_OR_RETURN(sandbox::SandboxRecord sb, deps_.store->GetSandbox(*id));
  if (sb.load_error.empty()) {
    // Recovery finishes a removal a crash interrupted.
    RETURN_IF_ERROR(deps_.store
                        ->UpdateSandbox(*id,
                                        [](sandbox::SandboxRecord& r) {
                                          r.phase = sandbox::Phase::kRemoving;
                                          r.state = sandbox::SandboxState::kNotReady;
                                          return absl::OkStatus();
                                        })
                        .status());
  }
  absl::Status first;
  for (const sandbox::ContainerRecord& c :
       deps_.store->ListContainers([&](const sandbox::ContainerRecord& r) { return r.sandbox_id == *id; })) {
    KeepFirstError(&first, DeleteContainerArtifacts(c));
  }
  KeepFirstError(&first, ReleaseSandboxResources(sb));
  if (!first.ok()) return first;  // keep the record: a retry or recovery finishes
  RETURN_IF_ERROR(deps_.store->RemoveSandbox(*id));
  ForgetTimings(*id);
  base::LogInfo("sandbox removed", {{"id", *id}});
  return absl::OkStatus();
}

}  // namespace kvcri::cri
