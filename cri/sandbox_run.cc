// RunPodSandbox: validate, record (phase creating), network namespace, Pod
// network (CNI ADD, tap wiring, DHCP for the guest), ready.
#include "absl/time/clock.h"
#include "cni/pod_network.h"
#include "config/base/log.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/convert.h"
#include "cri/grpc_status.h"
#include "cri/pod_network_spec.h"
#include "cri/runtime_service.h"
#include "cri/validate.h"
#include "sandbox/netns.h"

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

}  // namespace

grpc::Status RuntimeService::RunPodSandbox(grpc::ServerContext*, const pb::RunPodSandboxRequest* req,
                                           pb::RunPodSandboxResponse* resp) {
  absl::StatusOr<std::string> id = RunSandbox(*req);
  if (!id.ok()) return ToGrpc(id.status());
  resp->set_pod_sandbox_id(*id);
  return grpc::Status::OK;
}

absl::StatusOr<std::string> RuntimeService::RunSandbox(const pb::RunPodSandboxRequest& req) {
  RETURN_IF_ERROR(ValidateSandboxConfig(req.config()));
  ASSIGN_OR_RETURN(std::string handler, ResolveHandler(*deps_.config, req.runtime_handler()));
  sandbox::SandboxRecord record = SandboxRecordFromConfig(req.config());
  if (record.host_network) {
    // A VM has its own kernel and network stack; it cannot join the node's.
    return absl::InvalidArgumentError(
        "config.linux.security_context.namespace_options.network is NODE: host-network Pods cannot run as VMs "
        "(use a container RuntimeClass for hostNetwork Pods)");
  }
  // Refuses bad bandwidth annotations before anything exists.
  RETURN_IF_ERROR(AttachSpecFor(record).status());
  absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(record.id, deps_.store->NewId());
  record.runtime_handler = handler;
  record.state = sandbox::SandboxState::kNotReady;
  record.phase = sandbox::Phase::kCreating;
  record.created_at = absl::ToUnixNanos(start);
  const std::string id = record.id;
  absl::MutexLock pod_lock(&PodLock(id));

  base::Rollback undo;
  // The record goes to disk first (phase creating): after a crash, recovery
  // finds it and undoes whatever else exists.
  RETURN_IF_ERROR(deps_.store->PutSandbox(record));
  undo.Add("remove sandbox record", [this, id] { return deps_.store->RemoveSandbox(id); });

  ASSIGN_OR_RETURN(std::filesystem::path netns, deps_.netns->Create(id));
  undo.Add("remove netns", [this, id] { return deps_.netns->Remove(id); });
  // The netns path is on disk before CNI ADD: recovery can DEL what a crash
  // during ADD left allocated.
  ASSIGN_OR_RETURN(record, deps_.store->UpdateSandbox(id, [&](sandbox::SandboxRecord& r) {
    r.netns_path = netns.string();
    return absl::OkStatus();
  }));

  ASSIGN_OR_RETURN(cni::AttachSpec attach, AttachSpecFor(record));
  cni::AttachTimings net_took;
  ASSIGN_OR_RETURN(cni::WiredNic nic, deps_.network->Attach(attach, GuestDhcpFor(record), &net_took));
  undo.Add("detach pod network", [this, attach] { return deps_.network->Detach(attach); });
  const sandbox::NetworkStatus network = NetworkStatusFrom(nic);

  RETURN_IF_ERROR(deps_.store
                      ->UpdateSandbox(id,
                                      [&](sandbox::SandboxRecord& r) {
                                        r.network = network;
                                        r.state = sandbox::SandboxState::kReady;
                                        r.phase = sandbox::Phase::kReady;
                                        return absl::OkStatus();
                                      })
                      .status());
  undo.Dismiss();
  RecordTimings(id, StrCat("{\"cniPluginsMs\":", absl::ToDoubleMilliseconds(net_took.cni_plugins),
                          ",\"wiringMs\":", absl::ToDoubleMilliseconds(net_took.wiring),
                          ",\"runPodSandboxMs\":", absl::ToDoubleMilliseconds(absl::Now() - start), "}"));
  base::LogInfo("sandbox ready", {{"pod", StrCat(record.metadata.namespace_, "/", record.metadata.name)},
                                  {"id", id},
                                  {"ip", network.ip},
                                  {"cni_ms", StrCat(absl::ToInt64Milliseconds(net_took.cni_plugins))},
                                  {"wiring_ms", StrCat(absl::ToInt64Milliseconds(net_took.wiring))},
                                  {"took_ms", StrCat(absl::ToInt64Milliseconds(absl::Now() - start))}});
  return id;
}

}  // namespace kvcri::cri
