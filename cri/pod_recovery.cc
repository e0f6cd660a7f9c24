// PodLifecycle, start-up and background: recovery from disk and libvirt, exit events, the safety sweep.
#include <set>
#include <system_error>

#include "cni/pod_network.h"
#include "config/base/clock.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/pod_lifecycle.h"
#include "cri/pod_network_spec.h"
#include "runtime/console_log.h"
#include "runtime/hypervisor.h"
#include "sandbox/netns.h"
#include "sandbox/sandbox_store.h"

namespace kvcri::cri {

using base::StrCat;

namespace {

constexpr absl::Duration kFirstRetry = absl::Seconds(10);
constexpr absl::Duration kMaxRetry = absl::Minutes(5);


}  // namespace

PodLifecycle::PodLifecycle(RuntimeDeps deps, PodLifecycleOptions options)
    : deps_(std::move(deps)),
      options_(options),
      exit_watcher_([this](const std::string& id) { OnPlainExit(id); }),
      monitor_(
          deps_.hypervisor, deps_.clock, options_.monitor, [this](const std::string& d) { OnDomainEvent(d); },
          [this] { Sweep(); }) {}

PodLifecycle::~PodLifecycle() { StopBackground(); }

void PodLifecycle::StopBackground() { monitor_.Stop(); }

void PodLifecycle::RecordTimings(const std::string& id, std::string json) {
  absl::MutexLock l(&timings_mu_);
  timings_[id] = std::move(json);
}

void PodLifecycle::ForgetTimings(const std::string& id) {
  absl::MutexLock l(&timings_mu_);
  timings_.erase(id);
}

std::string PodLifecycle::Timings(std::string_view id) const {
  absl::MutexLock l(&timings_mu_);
  auto it = timings_.find(id);
  return it == timings_.end() ? "" : it->second;
}

std::shared_ptr<absl::Notification> PodLifecycle::WatchExit(const std::string& id) {
  absl::MutexLock l(&exits_mu_);
  std::shared_ptr<absl::Notification>& n = exits_[id];
  if (n == nullptr) n = std::make_shared<absl::Notification>();
  return n;
}

void PodLifecycle::NotifyExit(const std::string& id) {
  std::shared_ptr<absl::Notification> n;
  {
    absl::MutexLock l(&exits_mu_);
    auto it = exits_.find(id);
    if (it == exits_.end()) return;
    n = std::move(it->second);
    exits_.erase(it);
  }
  n->Notify();
}

void PodLifecycle::OnDomainEvent(const std::string& domain) {
  if (domain.rfind(kDomainPrefix, 0) != 0) return;  // not one of ours
  const std::string id = domain.substr(kDomainPrefix.size());
  if (absl::StatusOr<sandbox::SandboxRecord> sb = deps_.store->GetSandbox(id);
      sb.ok() && sb->pod_vm.domain_name == domain) {
    // The Pod micro-VM: its plain containers end with it.
    for (const sandbox::ContainerRecord& c : deps_.store->ListContainers([&](const sandbox::ContainerRecord& r) {
           return r.sandbox_id == id && r.state == sandbox::ContainerState::kRunning;
         })) {
      absl::StatusOr<sandbox::ContainerRecord> r = Refresh(c);
      if (!r.ok()) base::LogWarn("monitor: refresh", {{"id", c.id}, {"error", std::string(r.status().message())}});
    }
    return;
  }
  absl::StatusOr<sandbox::ContainerRecord> c = deps_.store->GetContainer(id);
  if (!c.ok() || c->domain_name != domain || c->state != sandbox::ContainerState::kRunning) return;
  absl::StatusOr<sandbox::ContainerRecord> r = Refresh(*c);
  if (!r.ok()) base::LogWarn("monitor: refresh", {{"id", c->id}, {"error", std::string(r.status().message())}});
}

bool PodLifecycle::RetryDue(const std::string& id) {
  absl::MutexLock l(&retry_mu_);
  const absl::Time now = deps_.clock->Now();
  auto [it, fresh] = retry_.try_emplace(id, Backoff{now + kFirstRetry, kFirstRetry * 2});
  if (fresh) return true;
  if (now < it->second.next) return false;
  it->second.next = now + it->second.delay;
  it->second.delay = std::min(kMaxRetry, it->second.delay * 2);
  return true;
}

void PodLifecycle::Sweep() {
  // 1. RUNNING records whose VM is down (an event missed or not delivered).
  std::vector<sandbox::ContainerRecord> running = deps_.store->ListContainers(
      [](const sandbox::ContainerRecord& r) { return r.state == sandbox::ContainerState::kRunning; });
  if (!running.empty()) {
    absl::StatusOr<std::vector<runtime::VmListing>> domains = deps_.hypervisor->List();
    if (domains.ok()) {
      std::set<std::string> up, io_paused;
      for (const runtime::VmListing& vm : *domains) {
        if (IsUp(vm.phase)) up.insert(vm.name);
        if (vm.phase == runtime::VmPhase::kPaused && vm.reason == runtime::kIoErrorReason) io_paused.insert(vm.name);
      }
      for (const sandbox::ContainerRecord& c : running) {
        // Paused by a host I/O error, or noted so and running again: resume,
        // fail after the bound, or clear the note.
        if (io_paused.count(c.domain_name) || c.io_error_since != 0) {
          if (io_paused.count(c.domain_name)) {
            RetryIoErrorPause(c);
          } else {
            absl::StatusOr<sandbox::ContainerRecord> r = Refresh(c);
            if (!r.ok()) base::LogWarn("sweep: refresh", {{"id", c.id}, {"error", std::string(r.status().message())}});
          }
          continue;
        }
        if (up.count(c.domain_name)) continue;
        absl::StatusOr<sandbox::ContainerRecord> r = Refresh(c);
        if (!r.ok()) base::LogWarn("sweep: refresh", {{"id", c.id}, {"error", std::string(r.status().message())}});
      }
    } else {
      base::LogWarn("sweep: list domains", {{"error", std::string(domains.status().message())}});
    }
  }
  // 2. Teardowns that failed (a rollback or removal whose CNI DEL, netns or
  //    domain removal errored): retried with backoff until they succeed.
  std::set<std::string> pending;
  for (const sandbox::SandboxRecord& sb : deps_.store->ListSandboxes([](const sandbox::SandboxRecord& r) {
         return r.phase == sandbox::Phase::kRemoving && r.load_error.empty();
       })) {
    pending.insert(sb.id);
    if (!BusyWith(sb.id).empty() || !RetryDue(sb.id)) continue;
    absl::Status s = RemoveSandbox(sb.id);
    base::LogInfo("sweep: retried sandbox teardown", {{"id", sb.id}, {"ok", s.ok() ? "true" : "false"},
                                                      {"error", std::string(s.message())}});
  }
  for (const sandbox::ContainerRecord& c : deps_.store->ListContainers([](const sandbox::ContainerRecord& r) {
         return r.phase == sandbox::Phase::kRemoving && r.load_error.empty();
       })) {
    pending.insert(c.id);
    if (!BusyWith(c.id).empty() || !RetryDue(c.id)) continue;
    absl::Status s = RemoveContainer(c.id);
    base::LogInfo("sweep: retried container teardown", {{"id", c.id}, {"ok", s.ok() ? "true" : "false"},
                                                        {"error", std::string(s.message())}});
  }
  absl::MutexLock l(&retry_mu_);
  for (auto it = retry_.begin(); it != retry_.end();) {
    if (pending.count(it->first) == 0) {
      retry_.erase(it++);
    } else {
      ++it;
    }
  }
}

absl::Status PodLifecycle::Recover(const sandbox::LoadReport& report) {
  // Events first: an exit while we reconcile queues up instead of being lost.
  monitor_.Subscribe();
  size_t fixed = 0;
  // 1. Operations a crash cut short: a creation is undone, a removal finished.
  for (const std::string& id : report.unfinished_containers) {
    absl::StatusOr<sandbox::ContainerRecord> c = deps_.store->GetContainer(id);
    if (!c.ok()) continue;
    if (c->phase == sandbox::Phase::kCreating || c->phase == sandbox::Phase::kRemoving) {
      absl::Status s = DeleteContainerArtifacts(*c);
      if (s.ok()) s = deps_.store->RemoveContainer(id);
      base::LogIfError(s, "recovery: unfinished container not cleaned (the sweep retries)");
      base::LogInfo("recovery: rolled back unfinished container",
                    {{"id", id}, {"phase", std::string(sandbox::PhaseName(c->phase))}});
      ++fixed;
    }
  }
  for (const std::string& id : report.unfinished_sandboxes) {
    absl::StatusOr<sandbox::SandboxRecord> sb = deps_.store->GetSandbox(id);
    if (!sb.ok()) continue;
    base::LogInfo("recovery: finishing interrupted sandbox operation",
                  {{"id", id}, {"phase", std::string(sandbox::PhaseName(sb->phase))}});
    base::LogIfError(RemoveSandbox(id), "recovery: unfinished sandbox not cleaned (the sweep retries)");
    ++fixed;
  }
  base::LogIfError(deps_.store->CleanUp(report), "recovery: store clean-up");

  // 2. Domains: ours without a record are leftovers of a crash; a record in
  //    CREATED whose domain is up was started just before a crash. A domain
  //    is removed only when we know positively that it is an orphan: the
  //    store read every directory, and no record (not even the placeholder
  //    of an unreadable one) has its container ID or the ID its name gives
  //    ("kvcri-<id>"). A record we cannot read (corrupt, or written by a
  //    newer version) keeps its VM running untouched, reported
  //    NOTREADY/UNKNOWN.
  ASSIGN_OR_RETURN(std::vector<runtime::VmListing> domains, deps_.hypervisor->List());
  for (const runtime::VmListing& vm : domains) {
    absl::StatusOr<sandbox::ContainerRecord> c = deps_.store->GetContainer(vm.container_id);
    if (absl::IsNotFound(c.status())) {
      // A Pod micro-VM is its sandbox's (docs/microvm.md).
      absl::StatusOr<sandbox::SandboxRecord> sb = deps_.store->GetSandbox(vm.container_id);
      if (sb.ok() && !sb->load_error.empty()) {
        base::LogWarn("recovery: keeping the micro-VM of an unreadable sandbox record", {{"domain", vm.name}});
        continue;
      }
      if (sb.ok() && sb->pod_vm.domain_name == vm.name) {
        if (vm.phase == runtime::VmPhase::kPaused && sb->pod_vm.started_at != 0 && vm.reason != runtime::kIoErrorReason) {
          base::LogInfo("recovery: resuming a micro-VM a crash left paused", {{"domain", vm.name}});
          base::LogIfError(deps_.hypervisor->Resume(vm.name), "recovery: resume");
          ++fixed;
        }
        continue;  // a boot cut short (started_at 0) is redone by the next CreateContainer
      }
    }
    if (c.ok() && !c->load_error.empty()) {
      base::LogWarn("recovery: keeping the domain of an unreadable container record",
                    {{"domain", vm.name}, {"container", vm.container_id}, {"error", c->load_error}});
      continue;
    }
    if (!c.ok() || c->domain_name != vm.name) {
      const bool prefixed = vm.name.rfind(kDomainPrefix, 0) == 0;
      absl::Status by_name =
          prefixed ? deps_.store->GetContainer(vm.name.substr(kDomainPrefix.size())).status() : absl::NotFoundError("");
      if (!report.complete || !absl::IsNotFound(by_name) || (!c.ok() && !absl::IsNotFound(c.status()))) {
        base::LogWarn("recovery: domain without a matching record kept (not known to be an orphan)",
                      {{"domain", vm.name},
                       {"container", vm.container_id},
                       {"store_complete", report.complete ? "true" : "false"}});
        continue;
      }
      base::LogInfo("recovery: removing orphan domain", {{"domain", vm.name}, {"container", vm.container_id}});
      base::LogIfError(deps_.hypervisor->Remove(vm.name), "recovery: orphan domain");
      ++fixed;
      continue;
    }
    if (c->state == sandbox::ContainerState::kCreated && IsUp(vm.phase)) {
      base::LogIfError(deps_.store
                           ->UpdateContainer(c->id,
                                             [](sandbox::ContainerRecord& r) {
                                               r.state = sandbox::ContainerState::kRunning;
                                               r.started_at = r.created_at;
                                               return absl::OkStatus();
                                             })
                           .status(),
                       "recovery: completing start");
      Emit(ContainerEventType::kStarted, c->id, c->sandbox_id);
      ++fixed;
    } else if (c->state == sandbox::ContainerState::kCreated) {
      base::LogIfError(deps_.hypervisor->Remove(vm.name), "recovery: half-started domain");
      ++fixed;
    }
    if (vm.phase == runtime::VmPhase::kPaused && vm.reason == runtime::kIoErrorReason) {
      // QEMU's pause on a full disk: the sweep resumes it or fails it.
      base::LogWarn("recovery: VM is paused by a host I/O error", {{"domain", vm.name}});
    } else if (vm.phase == runtime::VmPhase::kPaused) {
      // We pause only between Create and Resume: a crash came in between.
      base::LogInfo("recovery: resuming a VM a crash left paused", {{"domain", vm.name}});
      base::LogIfError(deps_.hypervisor->Resume(vm.name), "recovery: resume");
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
    absl::StatusOr<sandbox::ContainerRecord> now = Refresh(c);
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
    if (exists.ok() && *exists && !sb.network.nics.empty()) {
      // The DHCP responder lived in our process: serve the guest again (its
      // lease renewals) on every NIC, and re-assert the tap wiring.
      absl::StatusOr<cni::AttachSpec> attach = AttachSpecFor(sb);
      network_ok = attach.status();
      std::vector<std::string> ifnames;
      for (const sandbox::GuestNic& g : sb.network.nics) ifnames.push_back(g.cni_ifname);
      if (attach.ok()) network_ok = deps_.network->Restore(*attach, GuestDhcpFor(sb), ifnames).status();
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

  // 5. Container directories (overlays, consoles) without a record; none
  //    while some records may be missing from memory.
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(deps_.config->root / "containers", ec)) {
    if (!report.complete) break;
    std::string id = e.path().filename();
    if (deps_.store->GetContainer(id).ok()) continue;
    base::LogInfo("recovery: removing orphan container dir", {{"path", e.path().string()}});
    base::LogIfError(base::RemoveAll(e.path()), "recovery: orphan container dir");
    ++fixed;
  }

  // 5b. VM socket dirs (<state_dir>/vm/<id16>) no record names.
  if (report.complete) {
    std::set<std::string> named;
    for (const sandbox::ContainerRecord& c : deps_.store->ListContainers()) {
      if (!c.console_socket.empty()) named.insert(std::filesystem::path(c.console_socket).parent_path().string());
    }
    for (const sandbox::SandboxRecord& sb : deps_.store->ListSandboxes()) {
      // Unreadable ones too: their micro-VM's sockets are where our rule puts them.
      named.insert(std::filesystem::path(PlanPodVm(sb).agent_socket).parent_path().string());
    }
    for (const auto& e : std::filesystem::directory_iterator(deps_.config->state_dir / "vm", ec)) {
      if (named.count(e.path().string())) continue;
      base::LogInfo("recovery: removing orphan VM socket dir", {{"path", e.path().string()}});
      base::LogIfError(base::RemoveAll(e.path()), "recovery: orphan VM socket dir");
      ++fixed;
    }
  }

  // 5c. Pod micro-VM directories (a share mount point and the roots below
  //     it) without a sandbox record.
  for (const auto& e : std::filesystem::directory_iterator(deps_.config->root / "pods", ec)) {
    if (!report.complete) break;
    if (deps_.store->GetSandbox(e.path().filename().string()).ok()) continue;
    sandbox::SandboxRecord gone;
    gone.id = e.path().filename().string();
    gone.load_error = "no record";  // TearDownPodVm: nothing to update
    gone.pod_vm = PlanPodVm(gone);
    base::LogInfo("recovery: removing an orphan Pod micro-VM dir", {{"path", e.path().string()}});
    base::LogIfError(TearDownPodVm(gone), "recovery: orphan Pod micro-VM dir");
    ++fixed;
  }

  // 6. libvirt's per-domain QEMU logs of containers without a record (left
  //    by versions that did not remove them with the domain).
  if (std::filesystem::path probe = deps_.hypervisor->DomainLogPath("kvcri-probe"); !probe.empty()) {
    for (const auto& e : std::filesystem::directory_iterator(probe.parent_path(), ec)) {
      std::string name = e.path().filename();
      if (name.rfind("kvcri-", 0) != 0 || name.size() <= 10 || name.substr(name.size() - 4) != ".log") continue;
      // "kvcri-<id>.log", or a virtiofsd's "kvcri-<id>-fs<N>-virtiofsd.log".
      std::string id = name.substr(6, name.size() - 10);
      if (id.size() > sandbox::kIdLength && id[sandbox::kIdLength] == '-') id.resize(sandbox::kIdLength);
      if (deps_.store->GetContainer(id).ok() || deps_.store->GetSandbox(id).ok()) continue;
      // A domain still defined (its record unreadable) keeps its log.
      absl::StatusOr<runtime::VmStatus> vm = deps_.hypervisor->Status(StrCat(kDomainPrefix, id));
      if (!vm.ok() || vm->phase != runtime::VmPhase::kMissing) continue;
      base::LogInfo("recovery: removing orphan QEMU log", {{"path", e.path().string()}});
      base::LogIfError(base::RemoveFile(e.path()), "recovery: orphan QEMU log");
      ++fixed;
    }
  }

  base::LogInfo("recovery done", {{"sandboxes", StrCat(deps_.store->SandboxCount())},
                                  {"running_vms", StrCat(running)},
                                  {"corrupt_records", StrCat(report.corrupt.size())},
                                  {"repaired", StrCat(fixed)},
                                  {"lifecycle_events", monitor_.events_active() ? "true" : "false"}});
  monitor_.Run();
  return absl::OkStatus();
}

}  // namespace kvcri::cri
