// FakeSystemd: a systemd Manager on peer-to-peer sd-bus connections, recording what SystemdPlacer sends.
#pragma once

// No systemd runs on our machines, so the systemd cgroup driver talks to
// this instead: every connection Factory() hands out is one end of a
// socketpair whose other end a server thread serves with sd-bus
// (sd_bus_set_server + sd_bus_add_object_vtable), implementing the Manager
// methods the driver calls and emitting JobRemoved as systemd does. The
// units are a name -> state map; knobs make jobs fail or never end.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "runtime/cgroup/systemd_placer.h"

namespace kvcri::testing {

class FakeSystemd {
 public:
  // One (sv) of an a(sv) as it arrived: `signature` is the variant's type.
  struct Property {
    std::string name;
    std::string signature;
    std::string s;
    bool b = false;
    uint64_t t = 0;
    std::vector<uint32_t> au;
    std::vector<uint8_t> ay;
  };
  struct Call {
    std::string method;    // "StartTransientUnit", "StopUnit", ... (and "AddMatch" on a system bus)
    std::string unit;      // AddMatch: the match rule
    std::string mode;      // StartTransientUnit, StopUnit
    bool runtime = false;  // SetUnitProperties
    std::vector<Property> properties;
    size_t aux_units = 0;        // StartTransientUnit's a(sa(sv))
    std::vector<uint32_t> pids;  // AttachProcessesToUnit
    std::string subcgroup;       // AttachProcessesToUnit
    // The Property named `name`, or nullptr.
    const Property* Find(const std::string& name) const;
  };

  FakeSystemd();
  ~FakeSystemd();  // stops and joins every server thread
  FakeSystemd(const FakeSystemd&) = delete;
  FakeSystemd& operator=(const FakeSystemd&) = delete;

  // Hands out a new connection per call, as the real factory does.
  runtime::cgroup::SdBusFactory Factory();
  // Also serves a unix socket at `path` as if it were the system bus: a
  // client connecting with sd_bus_open_system (DBUS_SYSTEM_BUS_ADDRESS)
  // gets Hello and AddMatch answered as dbus-daemon does, then the Manager.
  absl::Status ListenAsSystemBus(const std::string& path);

  // Knobs (any time, from the test thread).
  void SetVersion(std::string v);
  void SetStartResult(std::string result);  // JobRemoved result of starts: "done" (default), "failed", ...
  void SetStopResult(std::string result);
  void SetJobsNeverEnd(bool never);                   // no JobRemoved at all
  void HangJobsOf(std::string unit);                  // no JobRemoved for this unit's jobs
  void AddUnit(std::string unit, std::string state);  // "active" or "failed"
  // Called (on the server thread) when a unit starts with its PIDs, before
  // the reply: a test makes the scope's cgroup directories here, as systemd would.
  void OnStart(std::function<void(const std::string& unit)> fn);
  // Called (on the server thread) when a unit is stopped: systemd removes
  // the scope's cgroup then.
  void OnStop(std::function<void(const std::string& unit)> fn);

  std::vector<Call> calls() const;
  std::vector<std::string> methods() const;  // calls()' method names in order
  std::map<std::string, std::string> units() const;
  int connections() const;

 private:
  void Serve(int fd, bool as_bus_daemon);
  void Accept(int listen_fd);

  mutable absl::Mutex mu_;
  std::string version_ ABSL_GUARDED_BY(mu_) = "252.39-1~deb12u2";
  std::string start_result_ ABSL_GUARDED_BY(mu_) = "done";
  std::string stop_result_ ABSL_GUARDED_BY(mu_) = "done";
  bool never_end_ ABSL_GUARDED_BY(mu_) = false;
  std::set<std::string> hang_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> units_ ABSL_GUARDED_BY(mu_);
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  std::function<void(const std::string&)> on_start_ ABSL_GUARDED_BY(mu_);
  std::function<void(const std::string&)> on_stop_ ABSL_GUARDED_BY(mu_);
  uint32_t next_job_ ABSL_GUARDED_BY(mu_) = 1;
  int connections_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::thread acceptor_;
  int listen_fd_ = -1;  // ListenAsSystemBus; closed by the destructor
  uint32_t next_unique_ ABSL_GUARDED_BY(mu_) = 1;
  std::atomic<bool> stop_{false};

  friend struct FakeSystemdHandlers;
};

}  // namespace kvcri::testing
