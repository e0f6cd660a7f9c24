#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "runtime/hypervisor.h"

namespace kvcri::testing {

// An in-memory Hypervisor whose calls can be made to fail, and which records
// what it was asked.
class FakeHypervisor : public runtime::Hypervisor {
 public:
  absl::Status Ready() override { return ready; }
  absl::Status Create(const runtime::VmSpec& spec) override {
    absl::MutexLock l(&mu);
    calls.push_back("Create " + spec.name);
    if (!create_error.ok()) return create_error;
    vms[spec.name] = {spec, runtime::VmStatus{runtime::VmPhase::kRunning, 0, ""}};
    return absl::OkStatus();
  }
  absl::Status Resume(std::string_view name) override { return absl::OkStatus(); }
  absl::Status Shutdown(std::string_view name, absl::Duration) override {
    absl::MutexLock l(&mu);
    calls.push_back("Shutdown " + std::string(name));
    auto it = vms.find(std::string(name));
    if (it == vms.end()) return absl::NotFoundError("no domain");
    it->second.status = {runtime::VmPhase::kShutoff, 0, "Completed"};
    return absl::OkStatus();
  }
  absl::Status Destroy(std::string_view name) override {
    absl::MutexLock l(&mu);
    calls.push_back("Destroy " + std::string(name));
    auto it = vms.find(std::string(name));
    if (it != vms.end() && it->second.status.phase == runtime::VmPhase::kRunning) {
      it->second.status = {runtime::VmPhase::kShutoff, 137, "Killed"};
    }
    return absl::OkStatus();
  }
  absl::Status Remove(std::string_view name) override {
    absl::MutexLock l(&mu);
    calls.push_back("Remove " + std::string(name));
    vms.erase(std::string(name));
    return absl::OkStatus();
  }
  absl::StatusOr<runtime::VmStatus> Status(std::string_view name) override {
    absl::MutexLock l(&mu);
    auto it = vms.find(std::string(name));
    if (it == vms.end()) return runtime::VmStatus{runtime::VmPhase::kMissing, 0, ""};
    return it->second.status;
  }
  absl::StatusOr<std::vector<runtime::VmListing>> List() override {
    absl::MutexLock l(&mu);
    std::vector<runtime::VmListing> out;
    for (const auto& [name, vm] : vms) out.push_back({name, vm.spec.pod_id, vm.spec.container_id, vm.status.phase});
    return out;
  }
  absl::StatusOr<runtime::VmStats> Stats(std::string_view) override {
    return absl::UnimplementedError("fake has no stats");
  }

  // Test controls.
  void SetStatus(const std::string& name, runtime::VmStatus s) {
    absl::MutexLock l(&mu);
    vms[name].status = s;
  }
  void AddForeignVm(const runtime::VmSpec& spec) {
    absl::MutexLock l(&mu);
    vms[spec.name] = {spec, runtime::VmStatus{runtime::VmPhase::kRunning, 0, ""}};
  }
  bool Has(const std::string& name) {
    absl::MutexLock l(&mu);
    return vms.count(name) > 0;
  }

  struct Vm {
    runtime::VmSpec spec;
    runtime::VmStatus status;
  };
  absl::Status ready;
  absl::Status create_error;
  absl::Mutex mu;
  std::map<std::string, Vm> vms ABSL_GUARDED_BY(mu);
  std::vector<std::string> calls ABSL_GUARDED_BY(mu);
};

}  // namespace kvcri::testing
