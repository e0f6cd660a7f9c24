// CgroupPlacer: puts a VM container's processes into its own cgroup below the Pod's, with the cgroupfs or the systemd driver.
#pragma once

// kubelet makes one cgroup per Pod (the sandbox's linux.cgroup_parent) and
// expects the runtime to run the Pod's processes in children of it, as
// containerd does with runc: "<parent>/<id>" with the cgroupfs driver, a
// transient scope "<prefix>-<id>.scope" inside the Pod's slice with the
// systemd driver. We do the same for QEMU and its helpers (virtiofsd), so
// the Pod's memory limit bounds the VM and its accounting is the VM's.
// libvirt makes no cgroups of its own (qemu.conf cgroup_controllers = [],
// runtime/libvirt_connection.cc): one owner of the tree, kubelet's layout.

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/cgroup/cgroup_fs.h"

namespace kvcri::runtime::cgroup {

// Where one container's processes go.
struct CgroupTarget {
  // Below each hierarchy's root, as /proc/<pid>/cgroup shows it, e.g.
  // "/kubepods/burstable/pod1/kvcri-<id>" or
  // "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/kvcri-<id>.scope".
  std::string path;
  // systemd driver: the transient scope unit ("kvcri-<id>.scope") and the
  // slice it lives in; empty with cgroupfs.
  std::string unit;
  std::string slice;
};

// Limits written to a container's cgroup (UpdateContainerResources and
// creation). Zero or empty leaves a value as it is.
struct CgroupLimits {
  int64_t cpu_quota_us = 0;   // with cpu_period_us: v1 cpu.cfs_*, v2 cpu.max
  int64_t cpu_period_us = 0;
  uint64_t cpu_shares = 0;    // v1 cpu.shares; v2 cpu.weight from it, as runc converts
  uint64_t memory_limit_bytes = 0;
  std::string cpuset_cpus;    // "0-3,6"
  std::string cpuset_mems;
};

// Thread-safe.
class CgroupPlacer {
 public:
  virtual ~CgroupPlacer() = default;

  // "cgroupfs" or "systemd".
  virtual std::string_view driver() const = 0;
  const CgroupLayout& layout() const { return layout_; }

  // The cgroup container `container_id` gets below the Pod's
  // `cgroup_parent` as kubelet passed it (a path for cgroupfs, a slice name
  // for systemd; empty: this placer's default parent, for Pods made without
  // kubelet). InvalidArgument naming linux.cgroup_parent when it does not
  // fit the driver. Creates nothing: the caller records the target first.
  virtual absl::StatusOr<CgroupTarget> Plan(std::string_view cgroup_parent, std::string_view container_id) const = 0;
  // Creates the target's cgroup and moves `pids` (every thread of each)
  // into it. On failure what was created is removed again.
  virtual absl::Status Place(const CgroupTarget& target, const std::vector<pid_t>& pids) = 0;
  // Removes the target's cgroup; OK when it is gone. FailedPrecondition
  // while a process is still in it.
  virtual absl::Status Remove(const CgroupTarget& target) = 0;
  // Writes the limits that are set in `limits` to the target's cgroup.
  virtual absl::Status SetLimits(const CgroupTarget& target, const CgroupLimits& limits);

  // One accounting sample of the target (NotFound when it does not exist).
  virtual absl::StatusOr<CgroupSample> Sample(const CgroupTarget& target) const {
    return ReadCgroupSample(layout_, target.path);
  }

 protected:
  explicit CgroupPlacer(CgroupLayout layout) : layout_(std::move(layout)) {}

 private:
  const CgroupLayout layout_;
};

// The cgroupfs driver: mkdir "<parent>/kvcri-<id>" in every hierarchy,
// write the PIDs to cgroup.procs. On v1 the memory charges QEMU made before
// the move go with it (memory.move_charge_at_immigrate), so the Pod is
// billed for the whole VM.
class CgroupfsPlacer : public CgroupPlacer {
 public:
  // `default_parent`: a cgroup path, for Pods without a cgroup_parent.
  CgroupfsPlacer(CgroupLayout layout, std::string default_parent);

  std::string_view driver() const override { return "cgroupfs"; }
  absl::StatusOr<CgroupTarget> Plan(std::string_view cgroup_parent, std::string_view container_id) const override;
  absl::Status Place(const CgroupTarget& target, const std::vector<pid_t>& pids) override;
  absl::Status Remove(const CgroupTarget& target) override;

 private:
  const std::string default_parent_;
};

// The name of a container's own cgroup (cgroupfs) or scope (systemd, with
// ".scope" appended): "kvcri-<id>".
std::string ContainerCgroupName(std::string_view container_id);

}  // namespace kvcri::runtime::cgroup
