// SystemdPlacer: the systemd cgroup driver, a transient scope per VM container in the Pod's slice (sd-bus).
#pragma once

// kubelet's systemd driver names a Pod's cgroup by a slice
// ("kubepods-burstable-pod<uid>.slice") and expects the runtime to ask
// systemd for the container cgroups inside it, as runc does: a transient
// scope per container, created with Manager.StartTransientUnit and the
// container's PIDs, Delegate=yes so the subtree is ours, limits set as unit
// properties so that a daemon-reload does not undo them. We do that for
// QEMU and its helpers: "kvcri-<id>.scope" in the Pod's slice.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/cgroup/cgroup_placer.h"

struct sd_bus;

namespace kvcri::runtime::cgroup {

// An open sd-bus connection; closes (after flushing) on destruction.
struct SdBusClose {
  void operator()(sd_bus* bus) const;
};
using SdBusPtr = std::unique_ptr<sd_bus, SdBusClose>;

// Opens a fresh, started connection to systemd's Manager. Called once per
// operation from any thread, so it must be thread-safe.
using SdBusFactory = std::function<absl::StatusOr<SdBusPtr>()>;

struct SystemdPlacerOptions {
  // How long a method call and the wait for its job may take. systemd
  // starts or stops an empty scope in milliseconds; a longer wait means a
  // systemd stuck in a reload, and the gRPC call must not hang behind it.
  absl::Duration call_timeout = absl::Seconds(10);
  absl::Duration job_timeout = absl::Seconds(10);
};

// Thread-safe: every operation opens its own bus connection (see
// systemd_placer.cc for why), so no state is shared between calls.
class SystemdPlacer : public CgroupPlacer {
 public:
  // The system bus (sd_bus_open_system, DBUS_SYSTEM_BUS_ADDRESS honoured).
  // FailedPrecondition when there is no bus or no systemd on it: the daemon
  // refuses to start with runtime.cgroup_driver = "systemd" then.
  // `default_slice`: a NAME.slice for Pods without a cgroup_parent.
  static absl::StatusOr<std::unique_ptr<SystemdPlacer>> Connect(CgroupLayout layout, std::string default_slice,
                                                                SystemdPlacerOptions options = {});
  // Any bus (tests: a peer-to-peer connection to a fake Manager). Asks the
  // Manager for its Version once, as Connect does, with the same errors.
  static absl::StatusOr<std::unique_ptr<SystemdPlacer>> Create(CgroupLayout layout, std::string default_slice,
                                                               SdBusFactory bus_factory,
                                                               SystemdPlacerOptions options = {});

  std::string_view driver() const override { return "systemd"; }
  // The systemd version the Manager reported (e.g. 252).
  int systemd_version() const { return systemd_version_; }

  absl::StatusOr<CgroupTarget> Plan(std::string_view cgroup_parent, std::string_view container_id) const override;
  // StartTransientUnit of target.unit with `pids`, then waits for its job.
  // A unit of that name left from an earlier attempt is reset (failed) or
  // given the PIDs (still running), so a retry after a crash succeeds.
  absl::Status Place(const CgroupTarget& target, const std::vector<pid_t>& pids) override;
  // StopUnit + ResetFailedUnit; OK when systemd has no such unit (a scope
  // whose last process exited is gone already).
  absl::Status Remove(const CgroupTarget& target) override;
  // SetUnitProperties(runtime) with runc's properties, then the files.
  absl::Status SetLimits(const CgroupTarget& target, const CgroupLimits& limits) override;

 private:
  SystemdPlacer(CgroupLayout layout, std::string default_slice, SdBusFactory bus_factory, SystemdPlacerOptions options,
                int systemd_version);

  const std::string default_slice_;
  const SdBusFactory bus_factory_;
  const SystemdPlacerOptions options_;
  const int systemd_version_;
};

// "0-3,6" -> the bitmask systemd's AllowedCPUs / AllowedMemoryNodes take
// ("ay": byte i holds CPUs 8i..8i+7, lowest bit first), as runc converts.
// InvalidArgument for an empty or malformed list.
absl::StatusOr<std::vector<uint8_t>> CpuListToMask(std::string_view list);

}  // namespace kvcri::runtime::cgroup
