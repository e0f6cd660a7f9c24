// Version, Status, UpdateRuntimeConfig, RuntimeConfig.
#include <nlohmann/json.hpp>

#include "config/base/str.h"
#include "cni/network_config.h"
#include "config/base/log.h"
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"
#include "cri/streaming/streaming_server.h"
#include "runtime/hypervisor.h"
#include "runtime/vm_confinement.h"

namespace kvcri::cri {

inline constexpr char kRuntimeName[] = "kubevirt-cri";
inline constexpr char kCriApiVersion[] = "v1";
// The CRI's Version RPC carries the kubelet-facing API version "0.1.0".
inline constexpr char kKubeletApiVersion[] = "0.1.0";

RuntimeService::RuntimeService(RuntimeDeps deps, PodLifecycle* pods, ContainerEventHub* events)
    : deps_(std::move(deps)), pods_(pods), events_(events), stats_(std::make_unique<StatsCollector>(deps_)) {}

grpc::Status RuntimeService::Version(grpc::ServerContext*, const pb::VersionRequest*,
                                     pb::VersionResponse* resp) {
  resp->set_version(kKubeletApiVersion);
  resp->set_runtime_name(kRuntimeName);
  resp->set_runtime_version(KVCRI_VERSION);
  resp->set_runtime_api_version(kCriApiVersion);
  return grpc::Status::OK;
}

grpc::Status RuntimeService::Status(grpc::ServerContext*, const pb::StatusRequest* req,
                                    pb::StatusResponse* resp) {
  pb::RuntimeCondition* runtime = resp->mutable_status()->add_conditions();
  runtime->set_type("RuntimeReady");
  absl::Status hv = deps_.hypervisor != nullptr ? deps_.hypervisor->Ready()
                                                : absl::UnavailableError("no hypervisor configured");
  if (!hv.ok()) {
    runtime->set_status(false);
    runtime->set_reason("LibvirtUnavailable");
    runtime->set_message(base::StrCat("libvirt \"", deps_.config->LibvirtUri(), "\": ", std::string(hv.message())));
  } else if (deps_.accelerator == config::Accelerator::kAuto) {
    runtime->set_status(false);
    runtime->set_reason("NoAccelerator");
    runtime->set_message(deps_.accelerator_reason);
  } else {
    runtime->set_status(true);
  }

  pb::RuntimeCondition* network = resp->mutable_status()->add_conditions();
  network->set_type("NetworkReady");
  absl::StatusOr<cni::NetworkConfigList> net = cni::FindDefaultNetwork(deps_.config->cni.conf_dir);
  if (net.ok()) {
    network->set_status(true);
  } else {
    network->set_status(false);
    network->set_reason("NetworkPluginNotReady");
    // The first thing a fresh node shows: say what to do, not only what is missing.
    network->set_message(base::StrCat(net.status().message(),
                                      "; add a CNI network config there: README.md \"First VM\" (scripts/demo.sh "
                                      "installs the sample bridge network "
                                      "docs/examples/cni/10-kubevirt-cri-demo.conflist)"));
  }

  const std::string accel =
      deps_.accelerator == config::Accelerator::kAuto ? "" : std::string(config::AcceleratorName(deps_.accelerator));
  if (req->verbose()) {
    nlohmann::json info = {
        {"version", KVCRI_VERSION},
        {"libvirtUri", deps_.config->LibvirtUri()},
        {"accelerator", accel},
        {"acceleratorReason", deps_.accelerator_reason},
        {"cniConfDir", deps_.config->cni.conf_dir.string()},
        {"cniNetwork", net.ok() ? net->source.string() : ""},
        {"vmHandlers", deps_.config->runtime.vm_handlers},
        {"root", deps_.config->root.string()},
        {"stateDir", deps_.config->state_dir.string()},
        // false: exits are seen by the safety poll only ([libvirt] lifecycle_events).
        {"lifecycleEvents", pods_ != nullptr && pods_->events_active()},
        // docs/security.md "QEMU confinement".
        {"confinement",
         {{"qemuUser", deps_.config->security.confined()
                           ? base::StrCat("per-VM uid and gid from ", deps_.config->security.vm_uid_range)
                           : std::string("root (security.vm_uid_range is empty)")},
          {"seccomp", "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"},
          {"apparmor", runtime::DescribeAppArmor()}}},
        // Where Exec/Attach/PortForward URLs point (docs/exec.md); empty without one.
        {"streamingUrl", deps_.streaming != nullptr ? deps_.streaming->BaseUrl() : std::string()},
    };
    auto& map = *resp->mutable_info();
    map["kubevirt-cri"] = info.dump();
    map["accelerator"] = nlohmann::json(accel).dump();
    map["acceleratorReason"] = nlohmann::json(deps_.accelerator_reason).dump();
  }
  return grpc::Status::OK;
}

grpc::Status RuntimeService::UpdateRuntimeConfig(grpc::ServerContext*,
                                                 const pb::UpdateRuntimeConfigRequest* req,
                                                 pb::UpdateRuntimeConfigResponse*) {
  // Our CNI configs are static files; the Pod CIDR is only recorded in the log.
  base::LogInfo("runtime config update",
                {{"pod_cidr", req->runtime_config().network_config().pod_cidr()}});
  return grpc::Status::OK;
}

grpc::Status RuntimeService::RuntimeConfig(grpc::ServerContext*, const pb::RuntimeConfigRequest*,
                                           pb::RuntimeConfigResponse* resp) {
  // kubelet (KubeletCgroupDriverFromCRI) takes the node's cgroup driver from
  // here; the daemon resolved an empty runtime.cgroup_driver at start-up.
  const std::string driver = config::ResolveCgroupDriver(deps_.config->runtime.cgroup_driver);
  resp->mutable_linux()->set_cgroup_driver(driver == "systemd" ? pb::SYSTEMD : pb::CGROUPFS);
  return grpc::Status::OK;
}

}  // namespace kvcri::cri
