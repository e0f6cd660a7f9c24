// CgroupfsPlacer and the limits every placer writes: a VM container's cgroup as a directory below the Pod's.
#include "runtime/cgroup/cgroup_placer.h"

#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::runtime::cgroup {

using base::StrCat;

std::string ContainerCgroupName(std::string_view container_id) { return StrCat("kvcri-", container_id); }

namespace {

// runc's conversion of cgroup v1 cpu.shares [2, 262144] to v2 cpu.weight
// [1, 10000], which kubelet's own v2 code assumes.
uint64_t SharesToWeight(uint64_t shares) {
  if (shares < 2) shares = 2;
  if (shares > 262144) shares = 262144;
  return 1 + ((shares - 2) * 9999) / 262142;
}

}  // namespace

absl::Status CgroupPlacer::SetLimits(const CgroupTarget& t, const CgroupLimits& l) {
  const bool v1 = layout_.version() == CgroupVersion::kV1;
  if (l.cpu_period_us > 0 || l.cpu_quota_us != 0) {
    if (v1) {
      if (l.cpu_period_us > 0) RETURN_IF_ERROR(WriteCgroupFile(layout_, t.path, "cpu", "cpu.cfs_period_us", StrCat(l.cpu_period_us)));
      if (l.cpu_quota_us != 0) RETURN_IF_ERROR(WriteCgroupFile(layout_, t.path, "cpu", "cpu.cfs_quota_us", StrCat(l.cpu_quota_us)));
    } else {
      const std::string quota = l.cpu_quota_us > 0 ? StrCat(l.cpu_quota_us) : "max";
      const int64_t period = l.cpu_period_us > 0 ? l.cpu_period_us : 100000;
      RETURN_IF_ERROR(WriteCgroupFile(layout_, t.path, "cpu", "cpu.max", StrCat(quota, " ", period)));
    }
  }
  if (l.cpu_shares > 0) {
    if (v1) {
      RETURN_IF_ERROR(WriteCgroupFile(layout_, t.path, "cpu", "cpu.shares", StrCat(l.cpu_shares)));
    } else {
      RETURN_IF_ERROR(WriteCgroupFile(layout_, t.path, "cpu", "cpu.weight", StrCat(SharesToWeight(l.cpu_shares))));
    }
  }
  if (l.memory_limit_bytes > 0) {
    RETURN_IF_ERROR(WriteCgroupFile(layout_, t.path, "memory", v1 ? "memory.limit_in_bytes" : "memory.max",
                                    StrCat(l.memory_limit_bytes)));
  }
  if (!l.cpuset_cpus.empty()) RETURN_IF_ERROR(WriteCgroupFile(layout_, t.path, "cpuset", "cpuset.cpus", l.cpuset_cpus));
  if (!l.cpuset_mems.empty()) RETURN_IF_ERROR(WriteCgroupFile(layout_, t.path, "cpuset", "cpuset.mems", l.cpuset_mems));
  return absl::OkStatus();
}

CgroupfsPlacer::CgroupfsPlacer(CgroupLayout layout, std::string default_parent)
    : CgroupPlacer(std::move(layout)), default_parent_(std::move(default_parent)) {}

absl::StatusOr<CgroupTarget> CgroupfsPlacer::Plan(std::string_view cgroup_parent, std::string_view container_id) const {
  std::string_view parent = cgroup_parent.empty() ? std::string_view(default_parent_) : cgroup_parent;
  if (parent.size() > 6 && parent.substr(parent.size() - 6) == ".slice") {
    return absl::InvalidArgumentError(StrCat("linux.cgroup_parent \"", parent,
                                             "\" is a systemd slice, but the cgroup driver is cgroupfs (kubelet's "
                                             "cgroupDriver and kubevirt-cri's runtime.cgroup_driver must agree)"));
  }
  absl::StatusOr<std::string> clean = CleanCgroupPath(parent);
  if (!clean.ok()) return absl::InvalidArgumentError(StrCat("linux.cgroup_parent: ", clean.status().message()));
  CgroupTarget t;
  t.path = StrCat(*clean, "/", ContainerCgroupName(container_id));
  return t;
}

absl::Status CgroupfsPlacer::Place(const CgroupTarget& t, const std::vector<pid_t>& pids) {
  RETURN_IF_ERROR(CreateCgroup(layout(), t.path));
  auto undo = [&](absl::Status cause) {
    // Works while nothing has joined; otherwise the caller, which destroys
    // the VM on this error, removes the cgroup once QEMU is gone (the
    // target is in its record).
    RemoveCgroup(layout(), t.path).IgnoreError();
    return cause;
  };
  if (layout().version() == CgroupVersion::kV1) {
    // Charges go along with a task only if the destination asks for it
    // (bit 0 anonymous, bit 1 file pages); without it QEMU's memory so far
    // stays billed to the daemon's cgroup, as on v2, where charges never
    // move. Kernels from 6.x on refuse the setting (EINVAL, deprecated):
    // then so be it; QEMU is paused and has touched little.
    absl::Status s = WriteCgroupFile(layout(), t.path, "memory", "memory.move_charge_at_immigrate", "3");
    if (!s.ok() && !absl::IsNotFound(s) && !absl::IsInvalidArgument(s)) return undo(s);
  }
  for (pid_t pid : pids) {
    if (absl::Status s = JoinCgroup(layout(), t.path, pid); !s.ok()) return undo(s);
  }
  return absl::OkStatus();
}

absl::Status CgroupfsPlacer::Remove(const CgroupTarget& t) {
  if (t.path.empty()) return absl::OkStatus();
  return RemoveCgroup(layout(), t.path);
}

}  // namespace kvcri::runtime::cgroup
