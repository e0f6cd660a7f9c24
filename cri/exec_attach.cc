// ExecSync, Exec, Attach, PortForward: validate, check the container or sandbox, run ExecSync or hand out a streaming URL.
#include "config/base/str.h"
#include "absl/time/time.h"
#include "cri/exec_dispatch.h"
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"
#include "cri/streaming/streaming_server.h"
#include "cri/validate.h"
#include "sandbox/sandbox_store.h"

namespace kvcri::cri {
namespace {

// The full ID of container `id_arg` (an ID or unique prefix).
absl::StatusOr<std::string> ResolveContainer(const RuntimeDeps& deps, const std::string& id_arg) {
  if (absl::Status s = ValidateIdArgument("container_id", id_arg); !s.ok()) return s;
  absl::StatusOr<std::string> id = deps.store->ResolveContainerId(id_arg);
  if (absl::IsNotFound(id.status())) {
    return absl::NotFoundError(base::StrCat("container_id \"", id_arg, "\": no such container"));
  }
  return id;
}

absl::Status CheckCmd(const google::protobuf::RepeatedPtrField<std::string>& cmd) {
  if (cmd.empty()) return absl::InvalidArgumentError("cmd is empty");
  if (cmd[0].empty()) return absl::InvalidArgumentError("cmd[0] is empty");
  return absl::OkStatus();
}

// What the kubelet streaming server checks (validateExecRequest,
// validateAttachRequest), with its messages.
absl::Status CheckStreams(bool tty, bool in, bool out, bool err) {
  if (tty && err) return absl::InvalidArgumentError("tty and stderr cannot both be true");
  if (!in && !out && !err) return absl::InvalidArgumentError("one of stdin, stdout, or stderr must be set");
  return absl::OkStatus();
}

absl::Status Ready(const RuntimeDeps& deps, bool needs_streaming) {
  if (deps.exec == nullptr) return absl::UnavailableError("exec is not configured in this daemon");
  if (needs_streaming && deps.streaming == nullptr) {
    return absl::UnavailableError("the streaming server is not running");
  }
  return absl::OkStatus();
}

}  // namespace

grpc::Status RuntimeService::ExecSync(grpc::ServerContext*, const pb::ExecSyncRequest* req,
                                      pb::ExecSyncResponse* resp) {
  if (absl::Status s = CheckCmd(req->cmd()); !s.ok()) return ToGrpc(s);
  if (req->timeout() < 0) {
    return ToGrpc(absl::InvalidArgumentError(base::StrCat("timeout ", req->timeout(), " is negative")));
  }
  absl::StatusOr<std::string> id = ResolveContainer(deps_, req->container_id());
  if (!id.ok()) return ToGrpc(id.status());
  if (absl::Status s = Ready(deps_, false); !s.ok()) return ToGrpc(s);
  std::vector<std::string> cmd(req->cmd().begin(), req->cmd().end());
  absl::StatusOr<ExecSyncResult> r = deps_.exec->ExecSync(*id, cmd, absl::Seconds(req->timeout()));
  if (!r.ok()) return ToGrpc(r.status());
  resp->set_stdout(std::move(r->stdout_data));
  resp->set_stderr(std::move(r->stderr_data));
  resp->set_exit_code(r->exit_code);
  return grpc::Status::OK;
}

grpc::Status RuntimeService::Exec(grpc::ServerContext*, const pb::ExecRequest* req, pb::ExecResponse* resp) {
  if (absl::Status s = CheckCmd(req->cmd()); !s.ok()) return ToGrpc(s);
  if (absl::Status s = CheckStreams(req->tty(), req->stdin(), req->stdout(), req->stderr()); !s.ok()) return ToGrpc(s);
  absl::StatusOr<std::string> id = ResolveContainer(deps_, req->container_id());
  if (!id.ok()) return ToGrpc(id.status());
  if (absl::Status s = Ready(deps_, true); !s.ok()) return ToGrpc(s);
  if (absl::Status s = deps_.exec->CheckRunning(*id); !s.ok()) return ToGrpc(s);
  streaming::ExecSpec spec;
  spec.container_id = *id;
  spec.cmd.assign(req->cmd().begin(), req->cmd().end());
  spec.tty = req->tty();
  spec.stdin = req->stdin();
  spec.stdout = req->stdout();
  spec.stderr = req->stderr();
  absl::StatusOr<std::string> url = deps_.streaming->PrepareExec(spec);
  if (!url.ok()) return ToGrpc(url.status());
  resp->set_url(*url);
  return grpc::Status::OK;
}

grpc::Status RuntimeService::Attach(grpc::ServerContext*, const pb::AttachRequest* req, pb::AttachResponse* resp) {
  if (absl::Status s = CheckStreams(req->tty(), req->stdin(), req->stdout(), req->stderr()); !s.ok()) return ToGrpc(s);
  absl::StatusOr<std::string> id = ResolveContainer(deps_, req->container_id());
  if (!id.ok()) return ToGrpc(id.status());
  if (absl::Status s = Ready(deps_, true); !s.ok()) return ToGrpc(s);
  if (absl::Status s = deps_.exec->CheckAttachable(*id); !s.ok()) return ToGrpc(s);
  streaming::AttachSpec spec;
  spec.container_id = *id;
  spec.tty = req->tty();
  spec.stdin = req->stdin();
  spec.stdout = req->stdout();
  spec.stderr = req->stderr();
  absl::StatusOr<std::string> url = deps_.streaming->PrepareAttach(spec);
  if (!url.ok()) return ToGrpc(url.status());
  resp->set_url(*url);
  return grpc::Status::OK;
}

grpc::Status RuntimeService::PortForward(grpc::ServerContext*, const pb::PortForwardRequest* req,
                                         pb::PortForwardResponse* resp) {
  if (absl::Status s = ValidateIdArgument("pod_sandbox_id", req->pod_sandbox_id()); !s.ok()) return ToGrpc(s);
  for (int i = 0; i < req->port_size(); ++i) {
    if (req->port(i) < 1 || req->port(i) > 65535) {
      return ToGrpc(absl::InvalidArgumentError(
          base::StrCat("port[", i, "] ", req->port(i), " is not a TCP port (1-65535)")));
    }
  }
  absl::StatusOr<std::string> id = deps_.store->ResolveSandboxId(req->pod_sandbox_id());
  if (absl::IsNotFound(id.status())) {
    return ToGrpc(absl::NotFoundError(base::StrCat("pod_sandbox_id \"", req->pod_sandbox_id(), "\": no such sandbox")));
  }
  if (!id.ok()) return ToGrpc(id.status());
  if (absl::Status s = Ready(deps_, true); !s.ok()) return ToGrpc(s);
  if (absl::Status s = deps_.exec->CheckSandboxReady(*id); !s.ok()) return ToGrpc(s);
  streaming::PortForwardSpec spec;
  spec.pod_sandbox_id = *id;
  spec.ports.assign(req->port().begin(), req->port().end());
  absl::StatusOr<std::string> url = deps_.streaming->PreparePortForward(spec);
  if (!url.ok()) return ToGrpc(url.status());
  resp->set_url(*url);
  return grpc::Status::OK;
}

}  // namespace kvcri::cri
