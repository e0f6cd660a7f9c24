// In-memory Hypervisor for cri/ unit tests: every call can fail or block, and lifecycle events fire like libvirt's.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "config/base/str.h"
#include "runtime/hypervisor.h"
#include "test/fakes/gate.h"

namespace kvcri::testing {

// Records what it was asked ("Create kvcri-<id>", ...). Each method returns
// its `*_error` when set; `create_gate` (when closed) holds Create until the
// test opens it, like a slow libvirt. Power-offs fire a VmEvent to the
// subscriber unless `events_enabled` is false, and the guest powers off on
// the power button unless `ignore_power_button` is set.
class FakeHypervisor : public runtime::Hypervisor {
 public:
  absl::Status Ready() override { return ready; }
  absl::Status Create(const runtime::VmSpec& spec) override {
    Record("Create " + spec.name);
    create_gate.Pass();
    absl::MutexLock l(&mu);
    if (!create_error.ok()) return create_error;
    vms[spec.name] = {spec, runtime::VmStatus{spec.start_paused ? runtime::VmPhase::kPaused : runtime::VmPhase::kRunning,
                                              0, ""}};
    return absl::OkStatus();
  }
  absl::Status Resume(std::string_view name) override {
    Record("Resume " + std::string(name));
    absl::MutexLock l(&mu);
    if (!resume_error.ok()) return resume_error;
    auto it = vms.find(std::string(name));
    if (it == vms.end()) return absl::NotFoundError("no domain");
    // A VM paused on a host I/O error that has no space yet pauses again at once.
    const bool still_full = it->second.status.reason == runtime::kIoErrorReason && io_error_persists;
    if (it->second.status.phase == runtime::VmPhase::kPaused && !still_full) {
      it->second.status = {runtime::VmPhase::kRunning, 0, "", ""};
    }
    return absl::OkStatus();
  }
  absl::Status PowerButton(std::string_view name) override {
    Record("PowerButton " + std::string(name));
    {
      absl::MutexLock l(&mu);
      if (!power_button_error.ok()) return power_button_error;
      auto it = vms.find(std::string(name));
      if (it == vms.end()) return absl::NotFoundError("no domain");
      if (ignore_power_button || it->second.status.phase != runtime::VmPhase::kRunning) return absl::OkStatus();
      it->second.status = {runtime::VmPhase::kShutoff, 0, "Completed"};
    }
    Fire(name, "stopped/shutdown");
    return absl::OkStatus();
  }
  absl::Status Destroy(std::string_view name) override {
    Record("Destroy " + std::string(name));
    bool stopped = false;
    {
      absl::MutexLock l(&mu);
      if (!destroy_error.ok()) return destroy_error;
      auto it = vms.find(std::string(name));
      if (it != vms.end() && (it->second.status.phase == runtime::VmPhase::kRunning ||
                              it->second.status.phase == runtime::VmPhase::kPaused)) {
        it->second.status = {runtime::VmPhase::kShutoff, 137, "Killed"};
        stopped = true;
      }
    }
    if (stopped) Fire(name, "stopped/destroyed");
    return absl::OkStatus();
  }
  absl::Status Remove(std::string_view name) override {
    Record("Remove " + std::string(name));
    absl::MutexLock l(&mu);
    if (!remove_error.ok()) return remove_error;
    vms.erase(std::string(name));
    return absl::OkStatus();
  }
  absl::StatusOr<runtime::VmStatus> Status(std::string_view name) override {
    absl::MutexLock l(&mu);
    ++status_calls;
    if (!status_error.ok()) return status_error;
    auto it = vms.find(std::string(name));
    if (it == vms.end()) return runtime::VmStatus{runtime::VmPhase::kMissing, 0, ""};
    return it->second.status;
  }
  absl::StatusOr<std::vector<runtime::VmListing>> List() override {
    absl::MutexLock l(&mu);
    ++list_calls;
    if (!list_error.ok()) return list_error;
    std::vector<runtime::VmListing> out;
    for (const auto& [name, vm] : vms) {
      out.push_back({name, vm.spec.pod_id, vm.spec.container_id, vm.status.phase, vm.status.reason});
    }
    return out;
  }
  // What vm_stats holds for the domain; Unimplemented for one it lacks.
  absl::StatusOr<runtime::VmStats> Stats(std::string_view name) override {
    absl::MutexLock l(&mu);
    ++stats_calls;
    auto it = vm_stats.find(std::string(name));
    if (it == vm_stats.end()) return absl::UnimplementedError("fake has no stats");
    return it->second;
  }
  // Live sizes as libvirt would keep them: bounded by the spec's max_vcpus
  // and boot memory, idempotent, refused when the VM is not up; vCPUs are
  // only ever plugged, like LibvirtHypervisor's.
  absl::Status PlugVcpus(std::string_view name, int n) override {
    Record(base::StrCat("PlugVcpus ", name, " ", n));
    absl::MutexLock l(&mu);
    if (!plug_vcpus_error.ok()) return plug_vcpus_error;
    auto it = vms.find(std::string(name));
    if (it == vms.end()) return absl::NotFoundError("no domain");
    if (!Up(it->second)) return absl::FailedPreconditionError("domain is not running");
    const int max = std::max(it->second.spec.max_vcpus, it->second.spec.vcpus);
    if (n < 1 || n > max) return absl::InvalidArgumentError(base::StrCat("domain has ", max, " vCPU slots"));
    it->second.live_vcpus = std::max({it->second.live_vcpus, it->second.spec.vcpus, n});  // never unplugs
    return absl::OkStatus();
  }
  absl::Status SetMemory(std::string_view name, int64_t mib) override {
    Record(base::StrCat("SetMemory ", name, " ", mib));
    absl::MutexLock l(&mu);
    if (!set_memory_error.ok()) return set_memory_error;
    auto it = vms.find(std::string(name));
    if (it == vms.end()) return absl::NotFoundError("no domain");
    if (!Up(it->second)) return absl::FailedPreconditionError("domain is not running");
    if (mib < 1 || mib > it->second.spec.memory_mib) return absl::InvalidArgumentError("above the boot memory");
    it->second.live_memory_mib = mib;
    return absl::OkStatus();
  }
  // The live size (the spec's until a Set call changed it).
  int LiveVcpus(const std::string& name) {
    absl::MutexLock l(&mu);
    auto it = vms.find(name);
    if (it == vms.end()) return 0;
    return it->second.live_vcpus > 0 ? it->second.live_vcpus : it->second.spec.vcpus;
  }
  int64_t LiveMemoryMib(const std::string& name) {
    absl::MutexLock l(&mu);
    auto it = vms.find(name);
    if (it == vms.end()) return 0;
    return it->second.live_memory_mib > 0 ? it->second.live_memory_mib : it->second.spec.memory_mib;
  }
  absl::Status Subscribe(std::function<void(const runtime::VmEvent&)> on_event) override {
    absl::MutexLock l(&mu);
    if (!subscribe_error.ok()) return subscribe_error;
    subscriber = std::move(on_event);
    return absl::OkStatus();
  }
  // Each command is appended to agent_commands and answered by `agent_reply`
  // (Unimplemented when unset), called without the lock held.
  absl::StatusOr<std::string> GuestAgentCommand(std::string_view name, std::string_view command_json,
                                                absl::Duration timeout) override {
    std::function<absl::StatusOr<std::string>(std::string_view, std::string_view, absl::Duration)> fn;
    {
      absl::MutexLock l(&mu);
      agent_commands.emplace_back(command_json);
      fn = agent_reply;
    }
    if (!fn) return runtime::Hypervisor::GuestAgentCommand(name, command_json, timeout);
    return fn(name, command_json, timeout);
  }
  // connected_channels holds "<domain> <channel>" of open channels.
  absl::StatusOr<bool> GuestChannelConnected(std::string_view name, std::string_view channel) override {
    absl::MutexLock l(&mu);
    if (!channel_error.ok()) return channel_error;
    return connected_channels.count(std::string(name) + " " + std::string(channel)) > 0;
  }
  std::vector<std::string> AgentCommands() {
    absl::MutexLock l(&mu);
    return agent_commands;
  }
  std::function<absl::StatusOr<std::string>(std::string_view name, std::string_view command_json,
                                            absl::Duration timeout)>
      agent_reply ABSL_GUARDED_BY(mu);
  std::vector<std::string> agent_commands ABSL_GUARDED_BY(mu);
  std::set<std::string> connected_channels ABSL_GUARDED_BY(mu);
  absl::Status channel_error ABSL_GUARDED_BY(mu);

  // <log_dir>/<name>.log when a test sets log_dir (set before use; not locked).
  std::filesystem::path DomainLogPath(std::string_view name) const override {
    return log_dir.empty() ? std::filesystem::path() : log_dir / (std::string(name) + ".log");
  }
  std::filesystem::path log_dir;

  // Test controls.
  // The guest changes state on its own (powers off, crashes): fires an event.
  void SetStatus(const std::string& name, runtime::VmStatus s) {
    {
      absl::MutexLock l(&mu);
      vms[name].status = s;
    }
    Fire(name, "stopped/guest");
  }
  absl::StatusOr<std::vector<int>> Processes(std::string_view name) override {
    Record("Processes " + std::string(name));
    absl::MutexLock l(&mu);
    if (!processes_error.ok()) return processes_error;
    auto it = vms.find(std::string(name));
    if (it == vms.end()) return absl::NotFoundError("no domain");
    // A QEMU and one helper, numbered per VM like real pids.
    int base = 1000 + 10 * static_cast<int>(std::distance(vms.begin(), it));
    return std::vector<int>{base, base + 1};
  }
  void AddForeignVm(const runtime::VmSpec& spec) {
    absl::MutexLock l(&mu);
    vms[spec.name] = {spec, runtime::VmStatus{runtime::VmPhase::kRunning, 0, ""}};
  }
  bool Has(const std::string& name) {
    absl::MutexLock l(&mu);
    return vms.count(name) > 0;
  }
  runtime::VmPhase PhaseOf(const std::string& name) {
    absl::MutexLock l(&mu);
    auto it = vms.find(name);
    return it == vms.end() ? runtime::VmPhase::kMissing : it->second.status.phase;
  }
  runtime::VmSpec SpecOf(const std::string& name) {
    absl::MutexLock l(&mu);
    return vms[name].spec;
  }
  std::vector<std::string> Calls() {
    absl::MutexLock l(&mu);
    return calls;
  }

  struct Vm {
    runtime::VmSpec spec;
    runtime::VmStatus status;
    int live_vcpus = 0;  // 0: spec.vcpus
    int64_t live_memory_mib = 0;  // 0: spec.memory_mib
  };
  absl::Status ready;
  Gate create_gate;
  absl::Mutex mu;
  absl::Status create_error ABSL_GUARDED_BY(mu);
  absl::Status resume_error ABSL_GUARDED_BY(mu);
  absl::Status power_button_error ABSL_GUARDED_BY(mu);
  absl::Status destroy_error ABSL_GUARDED_BY(mu);
  absl::Status remove_error ABSL_GUARDED_BY(mu);
  absl::Status status_error ABSL_GUARDED_BY(mu);
  absl::Status list_error ABSL_GUARDED_BY(mu);
  absl::Status subscribe_error ABSL_GUARDED_BY(mu);
  absl::Status processes_error ABSL_GUARDED_BY(mu);
  absl::Status plug_vcpus_error ABSL_GUARDED_BY(mu);
  absl::Status set_memory_error ABSL_GUARDED_BY(mu);
  bool ignore_power_button ABSL_GUARDED_BY(mu) = false;
  // Resume of a VM paused with reason kIoErrorReason leaves it paused.
  bool io_error_persists ABSL_GUARDED_BY(mu) = false;
  bool events_enabled ABSL_GUARDED_BY(mu) = true;
  int status_calls ABSL_GUARDED_BY(mu) = 0;
  int stats_calls ABSL_GUARDED_BY(mu) = 0;
  std::map<std::string, runtime::VmStats> vm_stats ABSL_GUARDED_BY(mu);
  int list_calls ABSL_GUARDED_BY(mu) = 0;
  std::map<std::string, Vm> vms ABSL_GUARDED_BY(mu);
  std::vector<std::string> calls ABSL_GUARDED_BY(mu);

 private:
  static bool Up(const Vm& vm) {
    return vm.status.phase == runtime::VmPhase::kRunning || vm.status.phase == runtime::VmPhase::kPaused;
  }
  void Record(std::string call) {
    absl::MutexLock l(&mu);
    calls.push_back(std::move(call));
  }
  void Fire(std::string_view name, std::string detail) {
    std::function<void(const runtime::VmEvent&)> fn;
    {
      absl::MutexLock l(&mu);
      if (!events_enabled) return;
      fn = subscriber;
    }
    if (fn) fn(runtime::VmEvent{std::string(name), std::move(detail)});
  }
  std::function<void(const runtime::VmEvent&)> subscriber ABSL_GUARDED_BY(mu);
};

}  // namespace kvcri::testing
