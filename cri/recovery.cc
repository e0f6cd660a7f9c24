// Start-up recovery and the VM monitor. Disk is the truth for what should
// exist; libvirt and the pinned namespaces are checked against it.
#include <set>
#include <system_error>

#include "cni/pod_network.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/pod_network_spec.h"
#include "cri/runtime_service.h"
#include "runtime/console_log.h"
#include "runtime/hypervisor.h"
#include "sandbox/netns.h"

namespace kvcri::cri {

using base::StrCat;

RuntimeService::~RuntimeService() { StopBackground(); }

void RuntimeService::StopBackground() {
  if (!stop_monitor_.HasBeenNotified()) stop_monitor_.Notify();
  if (monitor_.joinable()) monitor_.join();
}

std::filesystem::path RuntimeService::ContainerDir(const std::string& container_id) const {
  return deps_.config->root / "containers" / container_id;
}

absl::Mutex& RuntimeService::PodLock(std::string_view sandbox_id) {
  return pod_locks_[std::hash<std::string_view>()(sandbox_id) % pod_locks_.size()];
}

void RuntimeService::RecordTimings(const std::string& id, std::string json) {
  absl::MutexLock l(&timings_mu_);
  timings_[id] = std::move(json);
}

void RuntimeService::ForgetTimings(const std::string& id) {
  absl::MutexLock l(&timings_mu_);
  timings_.erase(id);
}

void RuntimeService::AddTimingsInfo(const std::string& id, google::protobuf::Map<std::string, std::string>* info) {
  absl::MutexLock l(&timings_mu_);
  if (auto it = timings_.find(id); it != timings_.end()) (*info)["timings"] = it->second;
}

absl::Status RuntimeService::Recover(const sandbox::LoadReport& report) {
  size_t fixed = 0;
  // 1. Operations a crash cut short: a creation is undone, a removal finished.
  for (const std::string& id : report.unfinished_containers) {
    absl::StatusOr<sandbox::ContainerRecord> c = deps_.store->GetContainer(id);
    if (!c.ok()) continue;
    if (c->phase == sandbox::Phase::kCreating || c->phase == sandbox::Phase::kRemoving) {
      absl::Status s = DeleteContainerArtifacts(*c);
      if (s.ok()) s = deps_.store->RemoveContainer(id);
      base::LogIfError(s, "recovery: unfinished container not cleaned");
      base::LogInfo("recovery: rolled back unfinished container", {{"id", id}, {"phase", std::string(sandbox::PhaseName(c->phase))}});
      ++fixed;
    }
  }
  for (const std::string& id : report.unfinished_sandboxes) {
    absl::StatusOr<sandbox::SandboxRecord> sb = deps_.store->GetSandbox(id);
    if (!sb.ok()) continue;
    base::LogInfo("recovery: finishing interrupted sandbox operation",
                  {{"id", id}, {"phase", std::string(sandbox::PhaseName(sb->phase))}});
    base::LogIfError(RemoveSandbox(id), "recovery: unfinished sandbox not cleaned");
    ++fixed;
  }
  base::LogIfError(deps_.store->CleanUp(report), "recovery: store clean-up");

  // 2. Domains: ours without a record are leftovers of a crash; a record in
  //    CREATED whose domain runs was started just before a crash.
  ASSIGN_OR_RETURN(std::vector<runtime::VmListing> domains, deps_.hypervisor->List());
  std::set<std::string> known_domains;
  for (const runtime::VmListing& vm : domains) {
    absl::StatusOr<sandbox::ContainerRecord> c = deps_.store->GetContainer(vm.container_id);
    if (!c.ok() || c->domain_name != vm.name) {
      base::LogInfo("recovery: removing orphan domain", {{"domain", vm.name}, {"container", vm.container_id}});
      base::LogIfError(deps_.hypervisor->Remove(vm.name), "recovery: orphan domain");
      ++fixed;
      continue;
    }
    known_domains.insert(vm.name);
    if (c->state == sandbox::ContainerState::kCreated) {
      bool running = vm.phase == runtime::VmPhase::kRunning || vm.phase == runtime::VmPhase::kPaused;
      if (running) {
        base::LogIfError(deps_.store
                             ->UpdateContainer(c->id,
                                               [](sandbox::ContainerRecord& r) {
                                                 r.state = sandbox::ContainerState::kRunning;
                                                 r.started_at = r.created_at;
                                                 return absl::OkStatus();
                                               })
                             .status(),
                         "recovery: completing start");
      } else {
        base::LogIfError(deps_.hypervisor->Remove(vm.name), "recovery: half-started domain");
      }
      ++fixed;
    }
  }

  // 3. Running containers: follow the ones still up, settle the ones that
  //    ended (or were destroyed) while we were down.
  size_t running = 0;
  for (const sandbox::ContainerRecord& c : deps_.store->ListContainers(
           [](const sandbox::ContainerRecord& r) { return r.state == sandbox::ContainerState::kRunning; })) {
    // Follow the console first: a VM that ended while we were down still
    // gets the tail of its output copied when the refresh below settles it.
    absl::StatusOr<sandbox::SandboxRecord> sb = deps_.store->GetSandbox(c.sandbox_id);
    if (sb.ok()) RegisterConsole(c, *sb);
    absl::StatusOr<sandbox::ContainerRecord> now = RefreshContainerState(c);
    if (!now.ok()) {
      base::LogWarn("recovery: container state unknown", {{"id", c.id}, {"error", std::string(now.status().message())}});
      continue;
    }
    if (now->state == sandbox::ContainerState::kRunning) ++running;
  }

  // 4. Namespaces: a pinned netns without a sandbox is a leftover; a READY
  //    sandbox whose netns vanished (node reboot) is NOTREADY.
  absl::StatusOr<std::vector<sandbox::PinnedNetns>> pinned = deps_.netns->ListPinned();
  if (pinned.ok()) {
    for (const sandbox::PinnedNetns& ns : *pinned) {
      if (deps_.store->GetSandbox(ns.id).ok()) continue;
      base::LogInfo("recovery: removing orphan netns", {{"id", ns.id}});
      base::LogIfError(deps_.netns->Remove(ns.id), "recovery: orphan netns");
      ++fixed;
    }
  } else {
    base::LogIfError(pinned.status(), "recovery: list netns");
  }
  for (const sandbox::SandboxRecord& sb : deps_.store->ListSandboxes(
           [](const sandbox::SandboxRecord& r) { return r.state == sandbox::SandboxState::kReady; })) {
    absl::StatusOr<bool> exists = deps_.netns->Exists(sb.id);
    absl::Status network_ok = absl::OkStatus();
    if (exists.ok() && *exists && !sb.network.nic.tap_name.empty()) {
      // The DHCP responder lived in our process: serve the guest again (its
      // lease renewals), and re-assert the tap wiring.
      absl::StatusOr<cni::AttachSpec> attach = AttachSpecFor(sb);
      network_ok = attach.status();
      if (attach.ok()) network_ok = deps_.network->Restore(*attach, GuestDhcpFor(sb)).status();
      if (!network_ok.ok()) {
        base::LogError("recovery: Pod network not restored",
                       {{"id", sb.id}, {"error", std::string(network_ok.message())}});
      }
    }
    if ((exists.ok() && !*exists) || !network_ok.ok()) {
      if (exists.ok() && !*exists) base::LogWarn("recovery: sandbox lost its network namespace", {{"id", sb.id}});
      base::LogIfError(deps_.store
                           ->UpdateSandbox(sb.id,
                                           [](sandbox::SandboxRecord& r) {
                                             r.state = sandbox::SandboxState::kNotReady;
                                             return absl::OkStatus();
                                           })
                           .status(),
                       "recovery: mark sandbox not ready");
    }
  }

  // 5. Container directories (overlays, consoles) without a record.
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(deps_.config->root / "containers", ec)) {
    std::string id = e.path().filename();
    if (deps_.store->GetContainer(id).ok()) continue;
    base::LogInfo("recovery: removing orphan container dir", {{"path", e.path().string()}});
    base::LogIfError(base::RemoveAll(e.path()), "recovery: orphan container dir");
    ++fixed;
  }

  base::LogInfo("recovery done", {{"sandboxes", StrCat(deps_.store->SandboxCount())},
                                  {"running_vms", StrCat(running)},
                                  {"corrupt_records", StrCat(report.corrupt.size())},
                                  {"repaired", StrCat(fixed)}});
  monitor_ = std::thread([this] { MonitorLoop(); });
  return absl::OkStatus();
}

void RuntimeService::MonitorLoop() {
  // Guests power off on their own; kubelet must see EXITED within a second or so.
  while (!stop_monitor_.WaitForNotificationWithTimeout(absl::Milliseconds(500))) {
    std::vector<sandbox::ContainerRecord> running = deps_.store->ListContainers(
        [](const sandbox::ContainerRecord& r) { return r.state == sandbox::ContainerState::kRunning; });
    if (running.empty()) continue;
    absl::StatusOr<std::vector<runtime::VmListing>> domains = deps_.hypervisor->List();
    if (!domains.ok()) {
      base::LogWarn("monitor: list domains", {{"error", std::string(domains.status().message())}});
      continue;
    }
    std::set<std::string> up;
    for (const runtime::VmListing& vm : *domains) {
      if (vm.phase == runtime::VmPhase::kRunning || vm.phase == runtime::VmPhase::kPaused) up.insert(vm.name);
    }
    for (const sandbox::ContainerRecord& c : running) {
      if (up.count(c.domain_name)) continue;
      absl::StatusOr<sandbox::ContainerRecord> r = RefreshContainerState(c);
      if (!r.ok() && !absl::IsNotFound(r.status())) {
        base::LogWarn("monitor: refresh", {{"id", c.id}, {"error", std::string(r.status().message())}});
      }
    }
  }
}

}  // namespace kvcri::cri
