// Fakes of the Pod network seams (CNI runner, tap wiring, DHCP) that log calls, fail and block on demand.
#pragma once

// Fakes for the Pod network seams (cni::CniRunner, cni::TapWiring,
// cni::DhcpService) that record calls in order and fail on demand.

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cni/cni_runner.h"
#include "cni/dhcp_server.h"
#include "cni/tap.h"
#include "test/fakes/gate.h"

namespace kvcri::testing {

// The calls of all three fakes, in order: "cni ADD <id>", "wire <netns>", ...
struct NetworkCallLog {
  absl::Mutex mu;
  std::vector<std::string> calls ABSL_GUARDED_BY(mu);

  void Add(std::string call) {
    absl::MutexLock l(&mu);
    calls.push_back(std::move(call));
  }
  std::vector<std::string> Take() {
    absl::MutexLock l(&mu);
    return std::exchange(calls, {});
  }
};

// ADD hands out 10.0.0.<n>/24 per container; DEL releases it.
class FakeCniRunner : public cni::CniRunner {
 public:
  explicit FakeCniRunner(NetworkCallLog* log) : log_(log) {}

  absl::StatusOr<cni::CniResult> Add(const cni::AttachSpec& spec) override {
    log_->Add("cni ADD " + spec.container_id);
    if (gate_pod.empty() || gate_pod == spec.pod_name) add_gate.Pass();
    if (!add_error.ok()) return add_error;
    absl::MutexLock l(&mu);
    cni::CniResult r;
    r.cni_version = "1.0.0";
    r.ips.push_back({"10.0.0." + std::to_string(++next_) + "/24", "10.0.0.1", 0});
    allocated[spec.container_id] = r.ips[0].address;
    last_add = spec;
    return r;
  }
  absl::Status Check(const cni::AttachSpec& spec) override {
    log_->Add("cni CHECK " + spec.container_id);
    return check_error;
  }
  absl::Status Del(const cni::AttachSpec& spec) override {
    log_->Add("cni DEL " + spec.container_id);
    if (!del_error.ok()) return del_error;
    absl::MutexLock l(&mu);
    allocated.erase(spec.container_id);
    return absl::OkStatus();
  }
  absl::StatusOr<cni::CniResult> GetCachedResult(std::string_view, std::string_view) override {
    return absl::NotFoundError("fake keeps no cache");
  }

  // Holds ADD (closed) like a slow plugin; only for Pod `gate_pod` when set.
  Gate add_gate;
  std::string gate_pod;
  absl::Status add_error;
  absl::Status check_error;
  absl::Status del_error;
  absl::Mutex mu;
  std::map<std::string, std::string> allocated ABSL_GUARDED_BY(mu);
  cni::AttachSpec last_add ABSL_GUARDED_BY(mu);

 private:
  NetworkCallLog* log_;
  int next_ ABSL_GUARDED_BY(mu) = 1;
};

// Wire returns a NIC with one IPv4 address; the set holds wired netns paths.
class FakeTapWiring : public cni::TapWiring {
 public:
  explicit FakeTapWiring(NetworkCallLog* log) : log_(log) {}

  absl::StatusOr<cni::WiredNic> Wire(const std::filesystem::path& netns) override {
    log_->Add("wire " + netns.string());
    if (!wire_error.ok()) return wire_error;
    absl::MutexLock l(&mu);
    wired.insert(netns.string());
    return nic;
  }
  absl::Status Unwire(const std::filesystem::path& netns) override {
    log_->Add("unwire " + netns.string());
    if (!unwire_error.ok()) return unwire_error;
    absl::MutexLock l(&mu);
    wired.erase(netns.string());
    return absl::OkStatus();
  }

  cni::WiredNic nic{"eth0", "tap0", "0a:58:0a:00:00:02", 1450, {{"10.0.0.2", 24}}, "10.0.0.1", "",
                    {{"0.0.0.0/0", "10.0.0.1"}}};
  absl::Status wire_error;
  absl::Status unwire_error;
  absl::Mutex mu;
  std::set<std::string> wired ABSL_GUARDED_BY(mu);

 private:
  NetworkCallLog* log_;
};

class FakeDhcp : public cni::DhcpService {
 public:
  explicit FakeDhcp(NetworkCallLog* log) : log_(log) {}

  absl::Status Add(std::string_view pod_id, const std::filesystem::path&, const cni::Lease& lease,
                   std::string_view) override {
    log_->Add("dhcp add " + std::string(pod_id));
    if (!add_error.ok()) return add_error;
    absl::MutexLock l(&mu);
    leases[std::string(pod_id)] = lease;
    return absl::OkStatus();
  }
  absl::Status Remove(std::string_view pod_id) override {
    log_->Add("dhcp remove " + std::string(pod_id));
    if (!remove_error.ok()) return remove_error;
    absl::MutexLock l(&mu);
    leases.erase(std::string(pod_id));
    return absl::OkStatus();
  }

  absl::Status add_error;
  absl::Status remove_error;
  absl::Mutex mu;
  std::map<std::string, cni::Lease> leases ABSL_GUARDED_BY(mu);

 private:
  NetworkCallLog* log_;
};

}  // namespace kvcri::testing
