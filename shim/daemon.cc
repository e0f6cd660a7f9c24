// Daemon: builds every module, recovers state, serves CRI on the socket; owns it all.
#include "shim/daemon.h"

#include <sys/stat.h>

#include <map>

#include "cni/dhcp_server.h"
#include "cni/exec_cni_runner.h"
#include "cni/pod_network.h"
#include "cni/tap.h"
#include "config/base/clock.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/metrics.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/exec_dispatch.h"
#include "cri/pool_guest_agents.h"
#include "cri/pod_lifecycle.h"
#include "cri/container_events.h"
#include "cri/convert.h"
#include "cri/rpc_metrics.h"
#include "cri/router_image_service.h"
#include "cri/router_runtime_service.h"
#include "cri/runtime_service.h"
#include "cri/streaming/streaming_config.h"
#include "cri/streaming/streaming_server.h"
#include "cri/tombstones.h"
#include "cri/upstream_client.h"
#include "runtime/accelerator.h"
#include "runtime/agent/agent_client.h"
#include "runtime/console_attach.h"
#include "runtime/console_log.h"
#include "runtime/image/image_store.h"
#include "runtime/image/puller.h"
#include "runtime/cgroup/cgroup_placer.h"
#include "runtime/cgroup/placer_for_config.h"
#include "runtime/libvirt_hypervisor.h"
#include "runtime/qemu_guest_agent.h"
#include "runtime/vm_confinement.h"
#include "sandbox/file_sandbox_store.h"
#include "sandbox/pinned_netns.h"
#include "sandbox/uid_claims.h"
#include "shim/metrics_server.h"
#include "shim/socket.h"

namespace kvcri::shim {

using base::StrCat;

// Everything the daemon owns, in construction order (destroyed in reverse).
struct Daemon::Modules {
  base::RealClock clock;
  // [metrics]: the registry, the CRI call interceptor and the state gauges
  // (the endpoint is the last member).
  base::MetricsRegistry metrics;
  std::unique_ptr<cri::RpcMetrics> rpc_metrics;
  base::MetricFamily* pods_by_state = nullptr;
  base::MetricFamily* containers_by_state = nullptr;
  std::unique_ptr<runtime::LibvirtHypervisor> hypervisor;
  // Each VM's cgroup below its Pod's, by runtime.cgroup_driver.
  std::unique_ptr<runtime::cgroup::CgroupPlacer> cgroups;
  std::unique_ptr<runtime::ConsoleLogCopier> console;
  std::unique_ptr<runtime::image::LocalImageStore> images;
  std::unique_ptr<runtime::image::CurlFetcher> http;
  std::unique_ptr<runtime::image::RegistryPuller> puller;
  std::unique_ptr<sandbox::FileSandboxStore> store;
  std::unique_ptr<sandbox::PinnedNetnsManager> netns;
  // VM uids claimed node-wide, shared with containerd-shim-kubevirt-v1's
  // Pods when both ways in are used on one node.
  std::unique_ptr<sandbox::UidClaims> uid_claims;
  std::unique_ptr<cni::ExecCniRunner> cni_runner;
  std::unique_ptr<cni::NetlinkTapWiring> tap_wiring;
  std::unique_ptr<cni::DhcpServer> dhcp;
  std::unique_ptr<cni::PodNetwork> network;
  // Exec, attach, port-forward: the agents, the console hubs, the dispatcher
  // and the streaming server calling it (declared after it: the backend
  // outlives the server).
  std::unique_ptr<runtime::agent::AgentPool> agent_pool;
  std::unique_ptr<runtime::QemuGuestAgent> qga;
  std::unique_ptr<cri::PoolGuestAgents> guest_agents;
  std::unique_ptr<runtime::ConsoleHubs> consoles;
  std::unique_ptr<cri::ExecDispatcher> exec;
  std::unique_ptr<streaming::StreamingServer> streaming;
  // GetContainerEvents: fed by `pods`, read by the services' streams.
  base::MetricFamily* events_dropped = nullptr;
  std::unique_ptr<cri::ContainerEventHub> events;
  std::unique_ptr<cri::PodLifecycle> pods;
  // With an upstream endpoint: the channel to it and the services kubelet
  // talks to, which call ours directly and forward the rest.
  std::unique_ptr<cri::UpstreamClient> upstream;
  // IDs of VM sandboxes and containers removed recently, still routed here.
  std::unique_ptr<cri::Tombstones> removed;
  std::unique_ptr<cri::RouterRuntimeService> router_runtime;
  std::unique_ptr<cri::RouterImageService> router_images;
  // The metrics endpoint (null when metrics.address is empty). Last: its
  // thread reads `store` at each scrape, so it stops before anything goes.
  std::unique_ptr<MetricsServer> metrics_server;
};

Daemon::Daemon(config::Config config) : config_(std::move(config)) {}

Daemon::~Daemon() { Shutdown(); }

absl::Status Daemon::Start() {
  // First: a second daemon on the same paths must stop before it touches the
  // state (libvirt's embed root admits one process anyway).
  RETURN_IF_ERROR(PrepareSocketPath(config_.listen));
  // State is the daemon's alone (the .deb creates the root 0700 too).
  RETURN_IF_ERROR(base::MakeDirs(config_.root, 0700));
  RETURN_IF_ERROR(base::MakeDirs(config_.state_dir, 0700));
  RETURN_IF_ERROR(base::MakeDirs(config_.root / "containers", 0700));
  modules_ = std::make_unique<Modules>();
  Modules& m = *modules_;

  cri::RuntimeDeps deps;
  deps.config = &config_;
  absl::StatusOr<runtime::AccelChoice> accel =
      runtime::ChooseAccelerator(config_.libvirt.accelerator, runtime::HostProbe());
  if (accel.ok()) {
    deps.accelerator = accel->accel;
    deps.accelerator_reason = accel->reason;
    base::LogInfo("accelerator chosen", {{"requested", std::string(config::AcceleratorName(config_.libvirt.accelerator))},
                                         {"accelerator", std::string(config::AcceleratorName(accel->accel))},
                                         {"reason", accel->reason}});
  } else {
    // Served anyway: Status reports RuntimeReady=false with the reason.
    deps.accelerator = config::Accelerator::kAuto;
    deps.accelerator_reason = std::string(accel.status().message());
    base::LogError("no usable accelerator", {{"requested", std::string(config::AcceleratorName(config_.libvirt.accelerator))},
                                             {"reason", deps.accelerator_reason}});
  }

  // Before any VM gets one of its uids: a range holding a host user or
  // group would let VMs own that user's files.
  if (config_.security.confined()) {
    RETURN_IF_ERROR(runtime::CheckVmUidRange(config_.security.vm_uid_first, config_.security.vm_uid_last));
    base::LogInfo("vm confinement", {{"vm_uid_range", config_.security.vm_uid_range},
                                     {"seccomp", "on"},
                                     {"apparmor", runtime::DescribeAppArmor()}});
  } else {
    base::LogWarn("vm confinement off: QEMU runs as root (security.vm_uid_range is empty)",
                  {{"apparmor", runtime::DescribeAppArmor()}});
  }

  // Before anything is created: a URI whose QEMU cannot reach the Pod's
  // tap is refused, not discovered at the first Pod.
  RETURN_IF_ERROR(runtime::CheckUriSupportsPodNetns(config_.LibvirtUri()));
  // Registered whether or not the endpoint is on (nothing reads them then);
  // the modules below count into them from the start.
  runtime::LibvirtHypervisorOptions hv_options;
  ASSIGN_OR_RETURN(hv_options.errors,
                   m.metrics.Counter("kvcri_libvirt_errors_total",
                                     "libvirt calls that failed, by libvirt function (lookups finding no domain "
                                     "and an absent guest agent are answers, not counted).",
                                     {"operation"}));
  hv_options.uri = config_.LibvirtUri();
  hv_options.emulator = config_.libvirt.emulator;
  ASSIGN_OR_RETURN(hv_options.boot_durations,
                   m.metrics.Histogram("kvcri_vm_boot_duration_seconds",
                                       "From a new VM's first resume to its qemu-guest-agent connecting (guests "
                                       "without qemu-guest-agent are not observed).",
                                       {}, base::DurationBuckets()));
  ASSIGN_OR_RETURN(deps.vm_start_duration,
                   m.metrics.Histogram("kvcri_vm_start_duration_seconds",
                                       "StartContainer's VM part: domain create, cgroup placement and resume, by "
                                       "result.",
                                       {"result"}, base::DurationBuckets()));
  ASSIGN_OR_RETURN(m.hypervisor, runtime::LibvirtHypervisor::Open(hv_options));
  ASSIGN_OR_RETURN(m.cgroups, runtime::cgroup::MakeCgroupPlacer(config_.runtime));
  base::LogInfo("cgroups", {{"driver", std::string(m.cgroups->driver())},
                            {"version", m.cgroups->layout().version() == runtime::cgroup::CgroupVersion::kV2 ? "v2" : "v1"}});
  runtime::ConsoleLogOptions console_options;
  console_options.clock = &m.clock;  // declared before `console`, so it outlives it
  m.console = std::make_unique<runtime::ConsoleLogCopier>(console_options);
  ASSIGN_OR_RETURN(m.images, runtime::image::LocalImageStore::Open(
                                 config_.root / "images",
                                 runtime::image::LocalImageStore::Options::FromConfig(config_.images, true)));
  m.http = std::make_unique<runtime::image::CurlFetcher>();
  runtime::image::PullerOptions pull_options;
  pull_options.registry.insecure_registries = config_.images.insecure_registries;
  pull_options.registry.mirrors = config_.images.mirrors;
  pull_options.timeout = absl::Seconds(config_.images.pull_timeout_seconds);
  ASSIGN_OR_RETURN(pull_options.pulled_bytes,
                   m.metrics.Counter("kvcri_image_pull_bytes_total",
                                     "Image blob bytes received from registries (failed pulls included)."));
  pull_options.pulled_bytes->Add({}, 0);  // a series from the start: rate() needs the zero
  ASSIGN_OR_RETURN(pull_options.pull_durations,
                   m.metrics.Histogram("kvcri_image_pull_duration_seconds",
                                       "Image pulls from the first registry request to the image in the store, by "
                                       "result.",
                                       {"result"}, base::DurationBuckets()));
  m.puller = std::make_unique<runtime::image::RegistryPuller>(m.images.get(), m.http.get(), pull_options);
  m.store = std::make_unique<sandbox::FileSandboxStore>(config_.root);
  m.netns = std::make_unique<sandbox::PinnedNetnsManager>(config_.state_dir);
  m.uid_claims = std::make_unique<sandbox::UidClaims>(config_.state_dir / "vm-uids");
  ASSIGN_OR_RETURN(sandbox::LoadReport report, m.store->Load());
  m.cni_runner = std::make_unique<cni::ExecCniRunner>(cni::ExecCniRunnerOptions::FromConfig(config_));
  m.tap_wiring = std::make_unique<cni::NetlinkTapWiring>();
  cni::DhcpMetrics dhcp_metrics;
  ASSIGN_OR_RETURN(dhcp_metrics.leases,
                   m.metrics.Gauge("kvcri_dhcp_leases", "Leases the guests' DHCP responder serves (one per VM NIC)."));
  ASSIGN_OR_RETURN(dhcp_metrics.replies, m.metrics.Counter("kvcri_dhcp_replies_total",
                                                           "DHCP replies sent to guests, by message type.", {"type"}));
  ASSIGN_OR_RETURN(m.dhcp, cni::DhcpServer::Start(dhcp_metrics));
  m.network = std::make_unique<cni::PodNetwork>(m.cni_runner.get(), m.tap_wiring.get(), m.dhcp.get());

  deps.hypervisor = m.hypervisor.get();
  deps.cgroups = m.cgroups.get();
  deps.console = m.console.get();
  deps.images = m.images.get();
  deps.puller = m.puller.get();
  deps.store = m.store.get();
  deps.netns = m.netns.get();
  deps.uid_claims = m.uid_claims.get();
  deps.network = m.network.get();
  deps.clock = &m.clock;
  // Registered whether or not the endpoint is on: the stats calls observe it.
  ASSIGN_OR_RETURN(deps.stats_duration,
                   m.metrics.Histogram("kvcri_stats_collection_duration_seconds",
                                       "Time a CRI stats or metrics call spent collecting, by RPC.", {"rpc"},
                                       base::DurationBuckets()));
  m.agent_pool = std::make_unique<runtime::agent::AgentPool>();
  m.qga = std::make_unique<runtime::QemuGuestAgent>(m.hypervisor.get());
  m.guest_agents = std::make_unique<cri::PoolGuestAgents>(m.agent_pool.get(), m.qga.get());
  m.consoles = std::make_unique<runtime::ConsoleHubs>();
  m.exec = std::make_unique<cri::ExecDispatcher>(m.store.get(), m.hypervisor.get(), m.guest_agents.get(),
                                                 m.consoles.get());
  ASSIGN_OR_RETURN(streaming::StreamingServerOptions streaming_options,
                   streaming::StreamingOptionsFromConfig(config_.streaming));
  streaming_options.clock = &m.clock;
  ASSIGN_OR_RETURN(m.streaming, streaming::StreamingServer::Start(streaming_options, m.exec.get()));
  base::LogInfo("streaming server", {{"url", m.streaming->BaseUrl()}});
  deps.exec = m.exec.get();
  deps.agents = m.guest_agents.get();
  deps.streaming = m.streaming.get();
  cri::PodLifecycleOptions pod_options;
  pod_options.monitor.use_events = config_.libvirt.lifecycle_events;
  pod_options.monitor.safety_poll = absl::Seconds(config_.libvirt.state_poll_seconds);
  if (!config_.metrics.address.empty()) {
    ASSIGN_OR_RETURN(m.events_dropped,
                     m.metrics.Counter("kvcri_container_events_dropped_total",
                                       "Container events dropped for GetContainerEvents subscribers that fell behind "
                                       "(each such stream is ended so that kubelet relists)."));
    m.events_dropped->Add({}, 0);  // a series from the start: rate() needs the zero
  }
  m.events = std::make_unique<cri::ContainerEventHub>(m.store.get(), &m.clock, m.events_dropped);
  deps.events = m.events.get();
  m.pods = std::make_unique<cri::PodLifecycle>(deps, pod_options);
  RETURN_IF_ERROR(m.pods->Recover(report));
  runtime_service_ = std::make_unique<cri::RuntimeService>(deps, m.pods.get(), m.events.get());
  image_service_ = std::make_unique<cri::ImageService>(deps);

  grpc::ServerBuilder builder;
  builder.AddListeningPort(StrCat("unix:", config_.listen.string()), grpc::InsecureServerCredentials());
  if (!config_.metrics.address.empty()) RETURN_IF_ERROR(StartMetrics(builder));
  if (config_.upstream.endpoint.empty()) {
    builder.RegisterService(runtime_service_.get());
    builder.RegisterService(image_service_.get());
  } else {
    // Nothing is dialled yet: gRPC connects on the first forwarded call, so a
    // containerd that starts after us is fine.
    m.upstream = std::make_unique<cri::UpstreamClient>(config_.upstream.endpoint,
                                                       absl::Seconds(config_.upstream.list_timeout_seconds));
    m.removed =
        std::make_unique<cri::Tombstones>(&m.clock, absl::Seconds(config_.upstream.tombstone_ttl_seconds));
    cri::SideResolver sides(&config_, m.store.get(), m.removed.get());
    m.router_runtime = std::make_unique<cri::RouterRuntimeService>(
        static_cast<cri::RuntimeService*>(runtime_service_.get()), sides, m.upstream.get(), m.removed.get(),
        m.events.get());
    m.router_images = std::make_unique<cri::RouterImageService>(
        static_cast<cri::ImageService*>(image_service_.get()), sides, m.upstream.get());
    builder.RegisterService(m.router_runtime.get());
    builder.RegisterService(m.router_images.get());
  }
  // kubelet sends large ListContainers/ListPodSandbox answers back; match its 16 MiB.
  builder.SetMaxReceiveMessageSize(16 << 20);
  builder.SetMaxSendMessageSize(16 << 20);
  // The socket is born 0660 (no window with a wider mode), then set explicitly.
  mode_t old_umask = ::umask(0117);
  server_ = builder.BuildAndStart();
  ::umask(old_umask);
  if (server_ == nullptr) {
    return absl::UnavailableError(StrCat("cannot listen on \"", config_.listen.string(), "\""));
  }
  RETURN_IF_ERROR(SetSocketMode(config_.listen, 0660));
  base::LogInfo("serving CRI", {{"socket", config_.listen.string()},
                                {"libvirt", config_.LibvirtUri()},
                                {"upstream", config_.upstream.endpoint.empty() ? "none" : config_.upstream.endpoint}});
  return absl::OkStatus();
}

absl::Status Daemon::StartMetrics(grpc::ServerBuilder& builder) {
  Modules& m = *modules_;
  ASSIGN_OR_RETURN(m.rpc_metrics, cri::RpcMetrics::Create(&m.metrics));
  builder.experimental().SetInterceptorCreators(m.rpc_metrics->InterceptorFactories());
  ASSIGN_OR_RETURN(m.pods_by_state, m.metrics.Gauge("kvcri_pod_sandboxes", "VM Pod sandboxes by CRI state.", {"state"}));
  ASSIGN_OR_RETURN(m.containers_by_state,
                   m.metrics.Gauge("kvcri_containers", "VM containers by CRI state.", {"state"}));
  // Counted from the records at each scrape: one pass over memory, no I/O.
  auto refresh = [&m] {
    // Labelled with the CRI's state names, as kubelet and crictl show them.
    std::map<std::string, int> pods = {{"SANDBOX_READY", 0}, {"SANDBOX_NOTREADY", 0}};
    m.store->ListSandboxes([&](const sandbox::SandboxRecord& r) {
      ++pods[cri::pb::PodSandboxState_Name(cri::ToPb(r.state))];
      return false;
    });
    std::map<std::string, int> ctrs = {
        {"CONTAINER_CREATED", 0}, {"CONTAINER_RUNNING", 0}, {"CONTAINER_EXITED", 0}, {"CONTAINER_UNKNOWN", 0}};
    m.store->ListContainers([&](const sandbox::ContainerRecord& r) {
      ++ctrs[cri::pb::ContainerState_Name(cri::ToPb(r.state))];
      return false;
    });
    for (const auto& [state, n] : pods) m.pods_by_state->Set({state}, n);
    for (const auto& [state, n] : ctrs) m.containers_by_state->Set({state}, n);
  };
  ASSIGN_OR_RETURN(m.metrics_server, MetricsServer::Start(config_.metrics.address, &m.metrics, refresh));
  base::LogInfo("metrics endpoint", {{"url", m.metrics_server->BaseUrl() + "/metrics"}});
  return absl::OkStatus();
}

void Daemon::Shutdown() {
  // Open GetContainerEvents streams end now (UNAVAILABLE): they would hold
  // the server's shutdown until its deadline.
  if (modules_ != nullptr && modules_->events != nullptr) modules_->events->Close();
  if (server_ != nullptr) {
    // In-flight calls get 2 s; idle client connections (kubelet keeps one) hold
    // Shutdown until the deadline, so it stays short.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
    base::LogIfError(base::RemoveFile(config_.listen), "remove socket");
  }
  // Open exec/attach/port-forward sessions end here; VMs are untouched.
  if (modules_ != nullptr && modules_->streaming != nullptr) modules_->streaming->Shutdown();
  if (modules_ != nullptr && modules_->pods != nullptr) modules_->pods->StopBackground();
  image_service_.reset();
  runtime_service_.reset();
  modules_.reset();
}

}  // namespace kvcri::shim
