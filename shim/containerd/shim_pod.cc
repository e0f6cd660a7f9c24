// ShimPod: builds one Pod's modules and orchestrator for containerd-shim mode (shim_pod.h).
#include "shim/containerd/shim_pod.h"

#include <cstdlib>

#include "cni/dhcp_server.h"
#include "cni/pod_network.h"
#include "cni/tap.h"
#include "config/base/clock.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/exec_dispatch.h"
#include "cri/pod_lifecycle.h"
#include "cri/pool_guest_agents.h"
#include "cri/stats_collector.h"
#include "runtime/accelerator.h"
#include "runtime/cgroup/placer_for_config.h"
#include "runtime/agent/agent_client.h"
#include "runtime/console_attach.h"
#include "runtime/console_log.h"
#include "runtime/qemu_guest_agent.h"
#include "runtime/libvirt_hypervisor.h"
#include "runtime/vm_confinement.h"
#include "sandbox/file_sandbox_store.h"
#include "sandbox/records.h"
#include "sandbox/uid_claims.h"
#include "shim/containerd/adopted_network.h"
#include "shim/containerd/rootfs_image_store.h"

namespace kvcri::shim::containerd {

using base::StrCat;

namespace {

// PodLifecycle's changes to the shim's callback.
class EventForwarder final : public cri::ContainerEventSink {
 public:
  explicit EventForwarder(PodEventFn fn) : fn_(std::move(fn)) {}
  void Publish(cri::ContainerEventType type, std::string_view container_id, std::string_view) override {
    if (fn_) fn_(type, container_id);
  }

 private:
  PodEventFn fn_;
};

}  // namespace

absl::StatusOr<config::Config> LoadNodeConfig() {
  const char* env = std::getenv(std::string(kConfigEnv).c_str());
  if (env != nullptr && *env != '\0') return config::LoadConfig(env, /*optional=*/false);
  return config::LoadConfig(std::string(kDefaultConfigPath), /*optional=*/true);
}

absl::StatusOr<config::Config> PodConfig(const config::Config& node, std::string_view sandbox_id) {
  if (!sandbox::IsValidId(sandbox_id)) {
    return absl::InvalidArgumentError(StrCat("sandbox id \"", sandbox_id, "\" is not 64 lowercase hex digits"));
  }
  if (!node.libvirt.uri.empty()) {
    return absl::InvalidArgumentError(StrCat(
        "libvirt.uri \"", node.libvirt.uri,
        "\": containerd-shim-kubevirt-v1 runs each Pod's VM on its own embedded QEMU driver; leave libvirt.uri empty"));
  }
  config::Config c = node;
  // 16 hex digits keep the embedded driver's monitor sockets and our VM
  // sockets well inside sockaddr_un's 107 bytes, as the daemon's are.
  const std::string short_id(sandbox_id.substr(0, 16));
  c.root = node.root / "shim" / short_id;
  c.state_dir = node.state_dir / "shim" / short_id;
  c.cni.cache_dir = c.root / "cni-cache";
  c.upstream.endpoint.clear();
  c.metrics.address.clear();
  return c;
}

namespace {

// Where libvirt's embedded driver keeps QEMU's probed capabilities.
std::filesystem::path QemuCapsDir(const config::Config& pod) { return pod.root / "libvirt/cache/qemu/capabilities"; }
std::filesystem::path SharedCapsDir(const config::Config& node) { return node.root / "libvirt-caps-cache"; }

// Copies the regular *.xml files of `from` that `to` lacks or holds in
// another size (each written atomically); errors are logged, never fatal:
// without the copy libvirt probes again.
void CopyCapsFiles(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::error_code ec;
  if (!std::filesystem::is_directory(from, ec)) return;
  if (absl::Status s = base::MakeDirs(to, 0700); !s.ok()) {
    base::LogWarn("libvirt capabilities cache", {{"error", std::string(s.message())}});
    return;
  }
  for (const auto& e : std::filesystem::directory_iterator(from, ec)) {
    if (!e.is_regular_file(ec) || e.is_symlink(ec) || e.path().extension() != ".xml") continue;
    const std::filesystem::path dst = to / e.path().filename();
    std::error_code size_ec;
    if (std::filesystem::exists(dst, ec) &&
        std::filesystem::file_size(dst, size_ec) == std::filesystem::file_size(e.path(), size_ec)) {
      continue;
    }
    absl::StatusOr<std::string> text = base::ReadFileAtMost(e.path(), 16 << 20, /*follow_symlinks=*/false);
    absl::Status written = text.ok() ? base::WriteFileAtomic(dst, *text, 0600) : text.status();
    base::LogIfError(written, "libvirt capabilities cache copy");
  }
}

}  // namespace

std::string CurrentBootId() {
  absl::StatusOr<std::string> id = base::ReadFileAtMost("/proc/sys/kernel/random/boot_id", 128);
  if (!id.ok()) return "";
  std::string out = *id;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

void SweepEarlierBoots(const config::Config& node, std::string_view boot_id) {
  if (boot_id.empty()) return;
  const std::filesystem::path roots = node.root / "shim", states = node.state_dir / "shim";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(roots, ec)) {
    if (!e.is_directory(ec) || e.is_symlink(ec)) continue;
    absl::StatusOr<std::string> recorded = base::ReadFileAtMost(e.path() / "boot_id", 128, /*follow_symlinks=*/false);
    if (!recorded.ok() || *recorded == boot_id) continue;
    const std::string name = e.path().filename().string();
    base::LogInfo("removing a Pod's state from an earlier boot", {{"dir", e.path().string()}});
    base::LogIfError(base::RemoveAll(e.path()), "earlier boot's Pod state");
    base::LogIfError(base::RemoveAll(states / name), "earlier boot's Pod state");
    std::filesystem::remove(roots / (name + ".lock"), ec);
  }
}

struct ShimPod::Modules {
  config::Config config;
  std::filesystem::path shared_caps;
  bool caps_shared = false;
  base::RealClock clock;
  std::unique_ptr<runtime::LibvirtHypervisor> hypervisor;
  std::unique_ptr<runtime::cgroup::CgroupPlacer> cgroups;
  std::unique_ptr<runtime::ConsoleLogCopier> console;
  std::unique_ptr<RootfsImageStore> images;
  std::unique_ptr<sandbox::FileSandboxStore> store;
  // VM uids are allocated by every Pod's shim from one range.
  std::unique_ptr<sandbox::UidClaims> uid_claims;
  std::unique_ptr<AdoptedNetns> netns;
  std::unique_ptr<AdoptedCniRunner> cni;
  std::unique_ptr<cni::NetlinkTapWiring> tap_wiring;
  std::unique_ptr<cni::DhcpServer> dhcp;
  std::unique_ptr<cni::PodNetwork> network;
  std::unique_ptr<EventForwarder> events;
  std::unique_ptr<cri::StatsCollector> stats;
  // Exec through the guest agents, as the daemon's streaming server runs it.
  std::unique_ptr<runtime::agent::AgentPool> agent_pool;
  std::unique_ptr<runtime::QemuGuestAgent> qga;
  std::unique_ptr<cri::PoolGuestAgents> guest_agents;
  std::unique_ptr<runtime::ConsoleHubs> consoles;
  std::unique_ptr<cri::ExecDispatcher> exec;
  // Last: its monitor thread calls into everything above.
  std::unique_ptr<cri::PodLifecycle> pods;
};

ShimPod::ShimPod(std::unique_ptr<Modules> m) : m_(std::move(m)) {}

ShimPod::~ShimPod() {
  if (m_ != nullptr && m_->pods != nullptr) m_->pods->StopBackground();
}

absl::StatusOr<std::unique_ptr<ShimPod>> ShimPod::Open(const config::Config& node, std::string_view sandbox_id,
                                                       PodEventFn on_event) {
  auto m = std::make_unique<Modules>();
  ASSIGN_OR_RETURN(m->config, PodConfig(node, sandbox_id));
  const config::Config& cfg = m->config;
  RETURN_IF_ERROR(base::MakeDirs(cfg.root, 0700));
  RETURN_IF_ERROR(base::MakeDirs(cfg.state_dir, 0700));
  RETURN_IF_ERROR(base::MakeDirs(cfg.root / "containers", 0700));
  const std::string boot_id = CurrentBootId();
  if (!boot_id.empty() && !std::filesystem::exists(cfg.root / "boot_id")) {
    RETURN_IF_ERROR(base::WriteFileAtomic(cfg.root / "boot_id", boot_id, 0600));
  }
  SweepEarlierBoots(node, boot_id);  // ours carries this boot's id: kept

  cri::RuntimeDeps deps;
  deps.config = &m->config;
  absl::StatusOr<runtime::AccelChoice> accel =
      runtime::ChooseAccelerator(cfg.libvirt.accelerator, runtime::HostProbe());
  if (accel.ok()) {
    deps.accelerator = accel->accel;
    deps.accelerator_reason = accel->reason;
  } else {
    // As the daemon: the sandbox runs, its VM container is refused with the reason.
    deps.accelerator = config::Accelerator::kAuto;
    deps.accelerator_reason = std::string(accel.status().message());
    base::LogError("no usable accelerator", {{"reason", deps.accelerator_reason}});
  }
  if (cfg.security.confined()) {
    RETURN_IF_ERROR(runtime::CheckVmUidRange(cfg.security.vm_uid_first, cfg.security.vm_uid_last));
  }
  RETURN_IF_ERROR(runtime::CheckUriSupportsPodNetns(cfg.LibvirtUri()));
  m->shared_caps = SharedCapsDir(node);
  CopyCapsFiles(m->shared_caps, QemuCapsDir(cfg));  // before libvirt starts: it reads its cache once
  runtime::LibvirtHypervisorOptions hv_options;
  hv_options.uri = cfg.LibvirtUri();
  hv_options.emulator = cfg.libvirt.emulator;
  ASSIGN_OR_RETURN(m->hypervisor, runtime::LibvirtHypervisor::Open(hv_options));
  ASSIGN_OR_RETURN(m->cgroups, runtime::cgroup::MakeCgroupPlacer(cfg.runtime));
  runtime::ConsoleLogOptions console_options;
  console_options.clock = &m->clock;
  console_options.raw = true;  // containerd's CRI writes the log format from the FIFO
  m->console = std::make_unique<runtime::ConsoleLogCopier>(console_options);
  m->images = std::make_unique<RootfsImageStore>();
  m->store = std::make_unique<sandbox::FileSandboxStore>(cfg.root);
  ASSIGN_OR_RETURN(sandbox::LoadReport report, m->store->Load());
  m->uid_claims = std::make_unique<sandbox::UidClaims>(node.state_dir / "vm-uids");
  m->netns = std::make_unique<AdoptedNetns>();
  // A shim restarted for `delete` knows the namespaces from the records.
  for (const sandbox::SandboxRecord& sb : m->store->ListSandboxes()) {
    if (!sb.netns_path.empty()) m->netns->Adopt(sb.id, sb.netns_path);
  }
  m->cni = std::make_unique<AdoptedCniRunner>(cfg.CniCacheDir());
  m->tap_wiring = std::make_unique<cni::NetlinkTapWiring>();
  ASSIGN_OR_RETURN(m->dhcp, cni::DhcpServer::Start());
  m->network = std::make_unique<cni::PodNetwork>(m->cni.get(), m->tap_wiring.get(), m->dhcp.get());
  m->events = std::make_unique<EventForwarder>(std::move(on_event));

  deps.hypervisor = m->hypervisor.get();
  deps.cgroups = m->cgroups.get();
  deps.console = m->console.get();
  deps.images = m->images.get();
  deps.store = m->store.get();
  deps.netns = m->netns.get();
  deps.uid_claims = m->uid_claims.get();
  deps.network = m->network.get();
  deps.clock = &m->clock;
  deps.events = m->events.get();
  cri::PodLifecycleOptions pod_options;
  pod_options.monitor.use_events = cfg.libvirt.lifecycle_events;
  pod_options.monitor.safety_poll = absl::Seconds(cfg.libvirt.state_poll_seconds);
  m->agent_pool = std::make_unique<runtime::agent::AgentPool>();
  m->qga = std::make_unique<runtime::QemuGuestAgent>(m->hypervisor.get());
  m->guest_agents = std::make_unique<cri::PoolGuestAgents>(m->agent_pool.get(), m->qga.get());
  m->consoles = std::make_unique<runtime::ConsoleHubs>();
  m->exec = std::make_unique<cri::ExecDispatcher>(m->store.get(), m->hypervisor.get(), m->guest_agents.get(),
                                                  m->consoles.get());
  deps.exec = m->exec.get();
  m->stats = std::make_unique<cri::StatsCollector>(deps);
  m->pods = std::make_unique<cri::PodLifecycle>(deps, pod_options);
  RETURN_IF_ERROR(m->pods->Recover(report));
  return std::unique_ptr<ShimPod>(new ShimPod(std::move(m)));
}

cri::PodLifecycle& ShimPod::pods() { return *m_->pods; }
sandbox::SandboxStore& ShimPod::store() { return *m_->store; }
AdoptedNetns& ShimPod::netns() { return *m_->netns; }
RootfsImageStore& ShimPod::images() { return *m_->images; }
runtime::Hypervisor& ShimPod::hypervisor() { return *m_->hypervisor; }
cri::StatsCollector& ShimPod::stats() { return *m_->stats; }
cri::ExecDispatcher& ShimPod::exec() { return *m_->exec; }
bool ShimPod::cgroup_v2() const { return m_->cgroups->layout().version() == runtime::cgroup::CgroupVersion::kV2; }
const config::Config& ShimPod::config() const { return m_->config; }

void ShimPod::ShareLibvirtCache() {
  if (m_ == nullptr || m_->caps_shared) return;
  m_->caps_shared = true;
  CopyCapsFiles(QemuCapsDir(m_->config), m_->shared_caps);
}

absl::Status ShimPod::RemoveState() {
  const std::filesystem::path root = m_->config.root, state = m_->config.state_dir;
  m_->pods->StopBackground();
  m_.reset();  // libvirt's embedded driver lets go of its root first
  absl::Status first;
  base::KeepFirstError(&first, base::RemoveAll(root));
  base::KeepFirstError(&first, base::RemoveAll(state));
  return first;
}

}  // namespace kvcri::shim::containerd
