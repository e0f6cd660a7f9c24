// ContainerStatus and ListContainers.
#include <nlohmann/json.hpp>

#include "config/base/status_macros.h"
#include "cri/convert.h"
#include "cri/filters.h"
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"
#include "cri/validate.h"

namespace kvcri::cri {

grpc::Status RuntimeService::ContainerStatus(grpc::ServerContext*, const pb::ContainerStatusRequest* req,
                                             pb::ContainerStatusResponse* resp) {
  if (absl::Status s = ValidateIdArgument("container_id", req->container_id()); !s.ok()) return ToGrpc(s);
  absl::StatusOr<sandbox::ContainerRecord> c = pods_->Container(req->container_id());
  if (!c.ok()) return ToGrpc(c.status());
  absl::StatusOr<sandbox::SandboxRecord> sb = deps_.store->GetSandbox(c->sandbox_id);
  ToPb(*c, sb.ok() ? sb->log_directory : std::string(), resp->mutable_status());
  if (req->verbose()) {
    nlohmann::json info = {
        {"domain", c->domain_name},
        {"console", c->console_path},
        {"vcpus", c->vcpus},
        {"memoryMib", c->memory_mib},
        {"boot", std::string(sandbox::BootKindName(c->boot.kind))},
        {"disk", c->boot.disk},
        {"firmware", c->boot.firmware.empty() ? std::string("bios") : c->boot.firmware},
        {"phase", std::string(sandbox::PhaseName(c->phase))},
        {"cgroup", c->cgroup_path},
    };
    if (!c->cgroup_unit.empty()) info["cgroupUnit"] = c->cgroup_unit;
    if (!c->boot.device.empty()) info["bootDevice"] = c->boot.device;
    if (!c->boot.nvram.empty()) info["nvram"] = c->boot.nvram;
    if (!c->boot.nvram_device.empty()) info["nvramDevice"] = c->boot.nvram_device;
    if (c->boot.tpm) info["tpm"] = "2.0";
    if (std::string busy = pods_->BusyWith(c->id); !busy.empty()) info["inProgress"] = busy;
    (*resp->mutable_info())["info"] = info.dump();
    if (std::string t = pods_->Timings(c->id); !t.empty()) (*resp->mutable_info())["timings"] = t;
  }
  return grpc::Status::OK;
}

grpc::Status RuntimeService::ListContainers(grpc::ServerContext*, const pb::ListContainersRequest* req,
                                            pb::ListContainersResponse* resp) {
  const pb::ContainerFilter& f = req->filter();
  auto match = [&](const sandbox::ContainerRecord& r) {
    if (!MatchesIdFilter(r.id, f.id())) return false;
    if (!MatchesIdFilter(r.sandbox_id, f.pod_sandbox_id())) return false;
    if (f.has_state() && ToPb(r.state) != f.state().state()) return false;
    return MatchesSelector(r.labels, f.label_selector());
  };
  for (const sandbox::ContainerRecord& r : deps_.store->ListContainers(match)) ToPb(r, resp->add_containers());
  return grpc::Status::OK;
}

}  // namespace kvcri::cri
