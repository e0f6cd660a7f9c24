// CreateContainer: validate the config and its volumes, convert to a draft, delegate to PodLifecycle.
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/convert.h"
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"
#include "cri/validate.h"
#include "cri/validate_volumes.h"
#include "cri/volumes.h"

namespace kvcri::cri {

absl::StatusOr<ContainerDraft> ValidatedContainerDraft(const pb::CreateContainerRequest& req) {
  RETURN_IF_ERROR(ValidateIdArgument("pod_sandbox_id", req.pod_sandbox_id()));
  RETURN_IF_ERROR(ValidateContainerConfig(req.config()));
  if (req.config().annotations().contains(kBootDeviceAnnotation)) {
    // kubelet copies a Pod's annotations to its sandbox only: honouring it
    // here would make a crictl-made Pod boot differently from the same Pod
    // under kubelet.
    return absl::InvalidArgumentError(
        base::StrCat("config.annotations has ", kBootDeviceAnnotation,
                     "; it is a Pod annotation: set it in the Pod's metadata.annotations "
                     "(PodSandboxConfig.annotations), see docs/volumes.md \"Persistent VMs\""));
  }
  // Devices and mounts: checked and resolved before anything is created.
  ASSIGN_OR_RETURN(VolumePlan volumes, ValidateVolumes(req.config()));
  return ContainerDraftFromRequest(req, std::move(volumes));
}

grpc::Status RuntimeService::CreateContainer(grpc::ServerContext*, const pb::CreateContainerRequest* req,
                                             pb::CreateContainerResponse* resp) {
  absl::StatusOr<ContainerDraft> draft = ValidatedContainerDraft(*req);
  if (!draft.ok()) return ToGrpc(draft.status());
  absl::StatusOr<std::string> id = pods_->CreateContainer(*draft);
  if (!id.ok()) return ToGrpc(id.status());
  resp->set_container_id(*id);
  return grpc::Status::OK;
}

}  // namespace kvcri::cri
