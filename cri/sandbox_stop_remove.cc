// StopPodSandbox and RemovePodSandbox: validate the ID, delegate to PodLifecycle.
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"
#include "cri/validate.h"

namespace kvcri::cri {

grpc::Status RuntimeService::StopPodSandbox(grpc::ServerContext*, const pb::StopPodSandboxRequest* req,
                                            pb::StopPodSandboxResponse*) {
  if (absl::Status s = ValidateIdArgument("pod_sandbox_id", req->pod_sandbox_id()); !s.ok()) return ToGrpc(s);
  return ToGrpc(pods_->StopSandbox(req->pod_sandbox_id()));
}

grpc::Status RuntimeService::RemovePodSandbox(grpc::ServerContext*, const pb::RemovePodSandboxRequest* req,
                                              pb::RemovePodSandboxResponse*) {
  if (absl::Status s = ValidateIdArgument("pod_sandbox_id", req->pod_sandbox_id()); !s.ok()) return ToGrpc(s);
  return ToGrpc(pods_->RemoveSandbox(req->pod_sandbox_id()));
}

}  // namespace kvcri::cri
