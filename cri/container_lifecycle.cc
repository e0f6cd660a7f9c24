// StartContainer, StopContainer, RemoveContainer, ReopenContainerLog: validate the ID, delegate to PodLifecycle.
#include "absl/time/time.h"
#include "config/base/str.h"
#include "cri/exec_dispatch.h"
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"
#include "cri/validate.h"
#include "sandbox/sandbox_store.h"

namespace kvcri::cri {

grpc::Status RuntimeService::StartContainer(grpc::ServerContext*, const pb::StartContainerRequest* req,
                                            pb::StartContainerResponse*) {
  if (absl::Status s = ValidateIdArgument("container_id", req->container_id()); !s.ok()) return ToGrpc(s);
  return ToGrpc(pods_->StartContainer(req->container_id()));
}

grpc::Status RuntimeService::StopContainer(grpc::ServerContext*, const pb::StopContainerRequest* req,
                                           pb::StopContainerResponse*) {
  if (absl::Status s = ValidateIdArgument("container_id", req->container_id()); !s.ok()) return ToGrpc(s);
  if (req->timeout() < 0) {
    return ToGrpc(absl::InvalidArgumentError(base::StrCat("timeout ", req->timeout(), " is negative")));
  }
  return ToGrpc(pods_->StopContainer(req->container_id(), absl::Seconds(req->timeout())));
}

grpc::Status RuntimeService::RemoveContainer(grpc::ServerContext*, const pb::RemoveContainerRequest* req,
                                             pb::RemoveContainerResponse*) {
  if (absl::Status s = ValidateIdArgument("container_id", req->container_id()); !s.ok()) return ToGrpc(s);
  absl::StatusOr<std::string> full_id = deps_.store->ResolveContainerId(req->container_id());
  absl::Status removed = pods_->RemoveContainer(req->container_id());
  // The VM is gone: its kvcri-agent connection and cached answers with it.
  if (removed.ok() && full_id.ok() && deps_.exec != nullptr) deps_.exec->Forget(*full_id);
  return ToGrpc(removed);
}

grpc::Status RuntimeService::ReopenContainerLog(grpc::ServerContext*, const pb::ReopenContainerLogRequest* req,
                                                pb::ReopenContainerLogResponse*) {
  if (absl::Status s = ValidateIdArgument("container_id", req->container_id()); !s.ok()) return ToGrpc(s);
  return ToGrpc(pods_->ReopenContainerLog(req->container_id()));
}

}  // namespace kvcri::cri
