// Fakes of the Pod network seams (CNI runner, tap wiring, DHCP) that log calls, fail and block on demand.
#pragma once

// Fakes for the Pod network seams (cni::CniRunner, cni::TapWiring,
// cni::DhcpService) that record calls in order and fail on demand.

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
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

// ADD hands out 10.0.0.<n>/24 per container; DEL releases it. With
// `extra_ifnames`, the result also places those interfaces in the netns
// (after eth0, Multus-style) and is cached until DEL.
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
    if (!extra_ifnames.empty()) {
      r.interfaces.push_back({spec.ifname, "", std::nullopt, spec.netns});
      for (const std::string& name : extra_ifnames) r.interfaces.push_back({name, "", std::nullopt, spec.netns});
      cached[spec.container_id] = r;
    }
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
    cached.erase(spec.container_id);
    return absl::OkStatus();
  }
  absl::StatusOr<cni::CniResult> GetCachedResult(std::string_view id, std::string_view) override {
    absl::MutexLock l(&mu);
    auto it = cached.find(std::string(id));
    if (it == cached.end()) return absl::NotFoundError("no cached result");
    return it->second;
  }

  // Holds ADD (closed) like a slow plugin; only for Pod `gate_pod` when set.
  Gate add_gate;
  std::string gate_pod;
  absl::Status add_error;
  absl::Status check_error;
  absl::Status del_error;
  std::vector<std::string> extra_ifnames;  // set before ADD
  absl::Mutex mu;
  std::map<std::string, std::string> allocated ABSL_GUARDED_BY(mu);
  std::map<std::string, cni::CniResult> cached ABSL_GUARDED_BY(mu);
  cni::AttachSpec last_add ABSL_GUARDED_BY(mu);

 private:
  NetworkCallLog* log_;
  int next_ ABSL_GUARDED_BY(mu) = 1;
};

// Wire returns `nic` for eth0 and `others[ifname]` for other interfaces
// (tap name filled in); the set holds what is wired: the netns path for
// eth0/tap0, "<netns> <ifname> <tap>" otherwise, as in the call log.
class FakeTapWiring : public cni::TapWiring {
 public:
  explicit FakeTapWiring(NetworkCallLog* log) : log_(log) {}

  static std::string What(const std::filesystem::path& netns, std::string_view ifname, std::string_view tap) {
    if (ifname == "eth0" && tap == "tap0") return netns.string();
    return netns.string() + " " + std::string(ifname) + " " + std::string(tap);
  }

  absl::StatusOr<cni::WiredNic> Wire(const std::filesystem::path& netns, std::string_view ifname,
                                     std::string_view tap) override {
    log_->Add("wire " + What(netns, ifname, tap));
    if (!wire_error.ok() && (wire_error_ifname.empty() || wire_error_ifname == ifname)) return wire_error;
    absl::MutexLock l(&mu);
    cni::WiredNic out = nic;
    if (ifname != "eth0") {
      auto it = others.find(std::string(ifname));
      if (it == others.end()) return absl::NotFoundError("fake: no interface \"" + std::string(ifname) + "\"");
      out = it->second;
    }
    out.cni_ifname = std::string(ifname);
    out.tap_name = std::string(tap);
    wired.insert(What(netns, ifname, tap));
    return out;
  }
  absl::Status Unwire(const std::filesystem::path& netns, std::string_view ifname, std::string_view tap) override {
    log_->Add("unwire " + What(netns, ifname, tap));
    if (!unwire_error.ok()) return unwire_error;
    absl::MutexLock l(&mu);
    wired.erase(What(netns, ifname, tap));
    return absl::OkStatus();
  }

  cni::WiredNic nic{"eth0", "tap0", "0a:58:0a:00:00:02", 1450, {{"10.0.0.2", 24}}, "10.0.0.1", "",
                    {{"0.0.0.0/0", "10.0.0.1"}}};
  std::map<std::string, cni::WiredNic> others;
  std::string wire_error_ifname;  // wire_error only for this interface; empty: for all
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

  // Leases are keyed "<pod>" for tap0 and "<pod> <tap>" for other taps, as
  // in the call log.
  static std::string Key(std::string_view pod_id, std::string_view tap) {
    return tap == "tap0" ? std::string(pod_id) : std::string(pod_id) + " " + std::string(tap);
  }

  absl::Status Add(std::string_view pod_id, const std::filesystem::path&, const cni::Lease& lease,
                   std::string_view tap) override {
    log_->Add("dhcp add " + Key(pod_id, tap));
    if (!add_error.ok()) return add_error;
    absl::MutexLock l(&mu);
    leases[Key(pod_id, tap)] = lease;
    return absl::OkStatus();
  }
  absl::Status Remove(std::string_view pod_id) override {
    log_->Add("dhcp remove " + std::string(pod_id));
    if (!remove_error.ok()) return remove_error;
    absl::MutexLock l(&mu);
    for (auto it = leases.begin(); it != leases.end();) {
      if (it->first == pod_id || it->first.starts_with(std::string(pod_id) + " ")) {
        it = leases.erase(it);
      } else {
        ++it;
      }
    }
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
