// RunPodSandbox: validate, resolve the VM handler, convert, delegate to PodLifecycle.
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/convert.h"
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"
#include "cri/validate.h"

namespace kvcri::cri {

using base::StrCat;

namespace {

absl::StatusOr<std::string> ResolveHandler(const config::Config& cfg, const std::string& requested) {
  std::string handler = requested.empty() ? cfg.runtime.default_handler : requested;
  for (const std::string& h : cfg.runtime.vm_handlers) {
    if (h == handler) return handler;
  }
  std::string served;
  for (const std::string& h : cfg.runtime.vm_handlers) served += (served.empty() ? "" : ", ") + h;
  return absl::InvalidArgumentError(StrCat("runtime_handler \"", handler,
                                           "\" is not served by kubevirt-cri (VM handlers: ", served, ")"));
}

absl::StatusOr<SandboxDraft> DraftFrom(const config::Config& cfg, const pb::RunPodSandboxRequest& req) {
  RETURN_IF_ERROR(ValidateSandboxConfig(req.config()));
  SandboxDraft draft;
  ASSIGN_OR_RETURN(draft.runtime_handler, ResolveHandler(cfg, req.runtime_handler()));
  draft.record = SandboxRecordFromConfig(req.config());
  if (draft.record.host_network) {
    // A VM has its own kernel and network stack; it cannot join the node's.
    return absl::InvalidArgumentError(
        "config.linux.security_context.namespace_options.network is NODE: host-network Pods cannot run as VMs "
        "(use a container RuntimeClass for hostNetwork Pods)");
  }
  return draft;
}

}  // namespace

grpc::Status RuntimeService::RunPodSandbox(grpc::ServerContext*, const pb::RunPodSandboxRequest* req,
                                           pb::RunPodSandboxResponse* resp) {
  absl::StatusOr<SandboxDraft> draft = DraftFrom(*deps_.config, *req);
  if (!draft.ok()) return ToGrpc(draft.status());
  absl::StatusOr<std::string> id = pods_->RunSandbox(*draft);
  if (!id.ok()) return ToGrpc(id.status());
  resp->set_pod_sandbox_id(*id);
  return grpc::Status::OK;
}

}  // namespace kvcri::cri
