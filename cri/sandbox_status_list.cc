// PodSandboxStatus and ListPodSandbox: memory only (kubelet asks every second).
#include <nlohmann/json.hpp>

#include "config/base/status_macros.h"
#include "cri/convert.h"
#include "cri/filters.h"
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"
#include "cri/validate.h"

namespace kvcri::cri {

grpc::Status RuntimeService::PodSandboxStatus(grpc::ServerContext*, const pb::PodSandboxStatusRequest* req,
                                              pb::PodSandboxStatusResponse* resp) {
  if (absl::Status s = ValidateIdArgument("pod_sandbox_id", req->pod_sandbox_id()); !s.ok()) return ToGrpc(s);
  absl::StatusOr<sandbox::SandboxRecord> sb = pods_->Sandbox(req->pod_sandbox_id());
  if (!sb.ok()) return ToGrpc(sb.status());
  ToPb(*sb, resp->mutable_status());
  if (req->verbose()) {
    nlohmann::json info = {
        {"netns", sb->netns_path},
        {"phase", std::string(sandbox::PhaseName(sb->phase))},
        {"runtimeHandler", sb->runtime_handler},
        {"logDirectory", sb->log_directory},
    };
    if (!sb->load_error.empty()) info["loadError"] = sb->load_error;
    if (std::string busy = pods_->BusyWith(sb->id); !busy.empty()) info["inProgress"] = busy;
    nlohmann::json nics = nlohmann::json::array();
    for (const sandbox::GuestNic& g : sb->network.nics) {
      nics.push_back({{"interface", g.cni_ifname},
                      {"tap", g.tap_name},
                      {"mac", g.mac},
                      {"mtu", g.mtu},
                      {"addresses", g.addresses}});
    }
    if (!nics.empty()) {
      info["guestNic"] = nics.front();  // the primary, as before several networks
      info["guestNics"] = std::move(nics);
    }
    (*resp->mutable_info())["info"] = info.dump();
    if (std::string t = pods_->Timings(sb->id); !t.empty()) (*resp->mutable_info())["timings"] = t;
  }
  return grpc::Status::OK;
}

grpc::Status RuntimeService::ListPodSandbox(grpc::ServerContext*, const pb::ListPodSandboxRequest* req,
                                            pb::ListPodSandboxResponse* resp) {
  const pb::PodSandboxFilter& f = req->filter();
  auto match = [&](const sandbox::SandboxRecord& r) {
    if (!MatchesIdFilter(r.id, f.id())) return false;
    if (f.has_state() && ToPb(r.state) != f.state().state()) return false;
    return MatchesSelector(r.labels, f.label_selector());
  };
  for (const sandbox::SandboxRecord& r : deps_.store->ListSandboxes(match)) {
    ToPb(r, resp->add_items());
  }
  return grpc::Status::OK;
}

}  // namespace kvcri::cri
