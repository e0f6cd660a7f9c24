// PodLifecycle, sandboxes: RunSandbox (record, netns, Pod network), StopSandbox, RemoveSandbox.
#include "cni/pod_network.h"
#include "config/base/clock.h"
#include "config/base/log.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/pod_lifecycle.h"
#include "cri/pod_network_spec.h"
#include "runtime/cgroup/cgroup_placer.h"
#include "runtime/hypervisor.h"
#include "sandbox/netns.h"
#include "sandbox/sandbox_store.h"

namespace kvcri::cri {

using base::KeepFirstError;
using base::StrCat;
using Mode = OpTracker::Mode;

namespace {

// The same Pod asked for again: what kubelet sends when it retries.
bool SameRequest(const sandbox::SandboxRecord& existing, const SandboxDraft& d) {
  const sandbox::SandboxRecord& r = d.record;
  return existing.metadata == r.metadata && existing.runtime_handler == d.runtime_handler &&
         existing.labels == r.labels && existing.annotations == r.annotations &&
         existing.log_directory == r.log_directory && existing.hostname == r.hostname;
}

}  // namespace

absl::StatusOr<std::string> PodLifecycle::RunSandbox(const SandboxDraft& draft) {
  const std::string name = sandbox::SandboxName(draft.record.metadata);
  std::shared_ptr<Flight> flight;
  bool first = false;
  {
    absl::MutexLock l(&runs_mu_);
    auto [it, inserted] = runs_.try_emplace(name, nullptr);
    if (inserted) it->second = std::make_shared<Flight>();
    flight = it->second;
    first = inserted;
  }
  if (!first) {
    // kubelet gave up on the first call (its deadline, crictl's 2 s) and
    // retried: answer with the first call's result rather than a second Pod.
    base::LogInfo("RunPodSandbox retry joins the call in flight", {{"name", name}});
    flight->done.WaitForNotification();
    return flight->result;
  }
  flight->result = DoRunSandbox(draft);
  {
    absl::MutexLock l(&runs_mu_);
    runs_.erase(name);
  }
  flight->done.Notify();
  return flight->result;
}

absl::StatusOr<std::string> PodLifecycle::DoRunSandbox(const SandboxDraft& draft) {
  for (const sandbox::SandboxRecord& existing : deps_.store->ListSandboxes([&](const sandbox::SandboxRecord& r) {
         return r.metadata == draft.record.metadata;
       })) {
    if (existing.state == sandbox::SandboxState::kReady && existing.phase == sandbox::Phase::kReady &&
        SameRequest(existing, draft)) {
      base::LogInfo("RunPodSandbox retry answered with the existing sandbox",
                    {{"name", sandbox::SandboxName(existing.metadata)}, {"id", existing.id}});
      return existing.id;
    }
  }
  // Refuses bad bandwidth annotations before anything exists.
  RETURN_IF_ERROR(AttachSpecFor(draft.record).status());
  // And a cgroup parent the driver cannot use (a slice given to cgroupfs,
  // "..", control characters): the Pod's VM could never start.
  if (deps_.cgroups != nullptr) {
    RETURN_IF_ERROR(deps_.cgroups->Plan(draft.record.cgroup_parent, std::string(sandbox::kIdLength, '0')).status());
  }
  const absl::Time start = deps_.clock->Now();
  sandbox::SandboxRecord record = draft.record;
  ASSIGN_OR_RETURN(record.id, IdFor(draft.id));
  record.runtime_handler = draft.runtime_handler;
  record.state = sandbox::SandboxState::kNotReady;
  record.phase = sandbox::Phase::kCreating;
  record.created_at = absl::ToUnixNanos(start);
  const std::string id = record.id;
  ASSIGN_OR_RETURN(OpTracker::Hold hold, ops_.Acquire(id, Mode::kExclusive, "RunPodSandbox", options_.op_wait));

  base::Rollback undo;  // declared first, destroyed last
  // The record goes to disk first (phase creating): after a crash, recovery
  // finds it and undoes whatever else exists.
  RETURN_IF_ERROR(deps_.store->PutSandbox(record));
  undo.Add("remove sandbox record", [this, id, &undo]() -> absl::Status {
    if (!undo.failed()) return deps_.store->RemoveSandbox(id);
    // A later step could not be undone (an IP may still be allocated): keep
    // the record, phase removing, so RemovePodSandbox, the sweep or the next
    // start-up finishes the teardown.
    return deps_.store
        ->UpdateSandbox(id,
                        [](sandbox::SandboxRecord& r) {
                          r.phase = sandbox::Phase::kRemoving;
                          r.state = sandbox::SandboxState::kNotReady;
                          return absl::OkStatus();
                        })
        .status();
  });

  undo.Add("remove netns", [this, id, &undo]() -> absl::Status {
    if (undo.failed()) return absl::OkStatus();  // CNI DEL failed: its retry may need the netns
    return deps_.netns->Remove(id);
  });
  ASSIGN_OR_RETURN(std::filesystem::path netns, deps_.netns->Create(id));
  // The netns path is on disk before CNI ADD: recovery can DEL what a crash
  // during ADD left allocated.
  ASSIGN_OR_RETURN(record, deps_.store->UpdateSandbox(id, [&](sandbox::SandboxRecord& r) {
    r.netns_path = netns.string();
    return absl::OkStatus();
  }));

  ASSIGN_OR_RETURN(cni::AttachSpec attach, AttachSpecFor(record));
  // Registered before ADD: a failed ADD can leave an IP allocated.
  undo.Add("detach pod network", [this, attach] { return deps_.network->Detach(attach); });
  cni::AttachTimings net_took;
  ASSIGN_OR_RETURN(std::vector<cni::WiredNic> nics, deps_.network->Attach(attach, GuestDhcpFor(record), &net_took));
  const sandbox::NetworkStatus network = NetworkStatusFrom(nics, attach.ifname);

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
  // The sandbox's own events carry its ID as container_id, as containerd's.
  Emit(ContainerEventType::kCreated, id, id);
  Emit(ContainerEventType::kStarted, id, id);
  const absl::Duration took = deps_.clock->Now() - start;
  RecordTimings(id, StrCat("{\"cniPluginsMs\":", absl::ToDoubleMilliseconds(net_took.cni_plugins),
                          ",\"wiringMs\":", absl::ToDoubleMilliseconds(net_took.wiring),
                          ",\"runPodSandboxMs\":", absl::ToDoubleMilliseconds(took), "}"));
  base::LogInfo("sandbox ready", {{"pod", StrCat(record.metadata.namespace_, "/", record.metadata.name)},
                                  {"id", id},
                                  {"ip", network.ip},
                                  {"nics", StrCat(network.nics.size())},
                                  {"cni_ms", StrCat(absl::ToInt64Milliseconds(net_took.cni_plugins))},
                                  {"wiring_ms", StrCat(absl::ToInt64Milliseconds(net_took.wiring))},
                                  {"took_ms", StrCat(absl::ToInt64Milliseconds(took))}});
  return id;
}

absl::Status PodLifecycle::ReleaseSandboxResources(const sandbox::SandboxRecord& sb) {
  absl::Status first;
  std::filesystem::path netns_path = sb.netns_path;
  if (netns_path.empty() && !sb.load_error.empty()) {
    // An unreadable record does not say whether it had a network: its pinned
    // netns does. The CNI DEL needs only the ids (and the cached ADD result),
    // so the plugin still releases the Pod's IP.
    absl::StatusOr<bool> exists = deps_.netns->Exists(sb.id);
    if (exists.ok() && *exists) netns_path = deps_.netns->Path(sb.id);
  }
  if (!netns_path.empty()) {
    absl::StatusOr<cni::AttachSpec> attach =
        sb.load_error.empty() ? AttachSpecFor(sb) : absl::StatusOr<cni::AttachSpec>(absl::UnknownError(""));
    if (!attach.ok()) {
      // Annotations were valid at RunPodSandbox; DEL only needs the ids.
      attach = cni::AttachSpec{};
      attach->container_id = sb.id;
      attach->netns = netns_path;
    }
    // DHCP off, tap gone, CNI DEL (IP released) before the netns goes away.
    KeepFirstError(&first, deps_.network->Detach(*attach));
  }
  // A netns whose CNI DEL failed stays: the plugin may need it to retry.
  if (first.ok()) KeepFirstError(&first, deps_.netns->Remove(sb.id));
  return first;
}

absl::Status PodLifecycle::StopSandbox(std::string_view id_arg) {
  absl::StatusOr<std::string> id = deps_.store->ResolveSandboxId(id_arg);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();  // CRI: stopping an unknown sandbox succeeds
  RETURN_IF_ERROR(id.status());
  ASSIGN_OR_RETURN(OpTracker::Hold hold, ops_.Acquire(*id, Mode::kExclusive, "StopPodSandbox", options_.op_wait));
  ASSIGN_OR_RETURN(sandbox::SandboxRecord sb, deps_.store->GetSandbox(*id));
  absl::Status first;
  // The micro-VM and with it every plain container still running (kubelet
  // stopped them gracefully first); they are settled below.
  KeepFirstError(&first, StopPodVm(sb));
  for (const sandbox::ContainerRecord& c :
       deps_.store->ListContainers([&](const sandbox::ContainerRecord& r) { return r.sandbox_id == *id; })) {
    if (IsPlainContainer(c)) {
      if (c.state == sandbox::ContainerState::kRunning) KeepFirstError(&first, Refresh(c).status());
      continue;
    }
    // An unreadable record's VM may be running: forced off too.
    if (c.state != sandbox::ContainerState::kRunning && c.load_error.empty()) continue;
    // kubelet stops containers gracefully first; what is still running is forced off.
    KeepFirstError(&first, deps_.hypervisor->Destroy(DomainOf(c)));
    KeepFirstError(&first, Refresh(c).status());
  }
  KeepFirstError(&first, ReleaseSandboxResources(sb));
  if (!sb.load_error.empty()) return first;  // a corrupt placeholder cannot be updated
  KeepFirstError(&first, deps_.store
                             ->UpdateSandbox(*id,
                                             [&](sandbox::SandboxRecord& r) {
                                               r.state = sandbox::SandboxState::kNotReady;
                                               if (first.ok()) r.network = {};  // the IP is released
                                               return absl::OkStatus();
                                             })
                             .status());
  if (sb.state == sandbox::SandboxState::kReady) Emit(ContainerEventType::kStopped, *id, *id);  // once, not per retry
  if (first.ok()) base::LogInfo("sandbox stopped", {{"id", *id}});
  return first;
}

absl::Status PodLifecycle::RemoveSandbox(std::string_view id_arg) {
  absl::StatusOr<std::string> id = deps_.store->ResolveSandboxId(id_arg);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();
  RETURN_IF_ERROR(id.status());
  ASSIGN_OR_RETURN(OpTracker::Hold hold, ops_.Acquire(*id, Mode::kExclusive, "RemovePodSandbox", options_.op_wait));
  absl::StatusOr<sandbox::SandboxRecord> sb = deps_.store->GetSandbox(*id);
  if (absl::IsNotFound(sb.status())) return absl::OkStatus();  // removed while we waited
  RETURN_IF_ERROR(sb.status());
  if (sb->load_error.empty()) {
    // Recovery finishes a removal a crash interrupted.
    RETURN_IF_ERROR(deps_.store
                        ->UpdateSandbox(*id,
                                        [](sandbox::SandboxRecord& r) {
                                          r.phase = sandbox::Phase::kRemoving;
                                          r.state = sandbox::SandboxState::kNotReady;
                                          return absl::OkStatus();
                                        })
                        .status());
  }
  absl::Status first;
  for (const sandbox::ContainerRecord& c :
       deps_.store->ListContainers([&](const sandbox::ContainerRecord& r) { return r.sandbox_id == *id; })) {
    absl::Status gone = DeleteContainerArtifacts(c);
    // Each record goes before the sandbox's, as containerd's RemovePodSandbox
    // removes each container first: its DELETED still carries the Pod's status.
    // (An unreadable record's placeholder goes with the sandbox's directory.)
    if (gone.ok() && c.load_error.empty()) gone = deps_.store->RemoveContainer(c.id);
    if (gone.ok()) Emit(ContainerEventType::kDeleted, c.id, *id);
    KeepFirstError(&first, gone);
  }
  {
    // An unreadable record does not say whether the Pod had a micro-VM:
    // whatever our rule would have named is taken down.
    sandbox::SandboxRecord vm_of = *sb;
    if (!sb->load_error.empty()) vm_of.pod_vm = PlanPodVm(*sb);
    KeepFirstError(&first, TearDownPodVm(vm_of));
  }
  KeepFirstError(&first, ReleaseSandboxResources(*sb));
  if (!first.ok()) return first;  // keep the record: a retry, the sweep or recovery finishes
  RETURN_IF_ERROR(deps_.store->RemoveSandbox(*id));
  Emit(ContainerEventType::kDeleted, *id, *id);  // no sandbox status left to send, as with containerd
  ForgetTimings(*id);
  base::LogInfo("sandbox removed", {{"id", *id}});
  return absl::OkStatus();
}

}  // namespace kvcri::cri
