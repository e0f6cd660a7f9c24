// MakeCgroupPlacer: [runtime] cgroup settings to a cgroupfs or systemd placer (placer_for_config.h).
#include "runtime/cgroup/placer_for_config.h"

#include "config/base/str.h"
#include "runtime/cgroup/systemd_placer.h"

namespace kvcri::runtime::cgroup {

absl::StatusOr<std::unique_ptr<CgroupPlacer>> MakeCgroupPlacer(const config::RuntimeConfig& rt) {
  absl::StatusOr<CgroupLayout> layout = CgroupLayout::Detect();
  if (!layout.ok()) {
    return absl::FailedPreconditionError(base::StrCat(
        "VM Pods run in their Pod's cgroup, but the host's cgroup tree is unusable: ", layout.status().message()));
  }
  if (rt.cgroup_driver == "systemd") {
    // "kubevirt-cri.slice" would nest in "kubevirt.slice" (a dash is a level).
    std::string slice = rt.default_cgroup_parent.empty() ? "kubevirt_cri.slice" : rt.default_cgroup_parent;
    absl::StatusOr<std::unique_ptr<SystemdPlacer>> placer = SystemdPlacer::Connect(*std::move(layout), slice);
    if (absl::IsInvalidArgument(placer.status())) {
      return absl::InvalidArgumentError(base::StrCat("runtime.default_cgroup_parent: ", placer.status().message()));
    }
    if (!placer.ok()) return placer.status();
    return std::unique_ptr<CgroupPlacer>(*std::move(placer));
  }
  std::string parent = rt.default_cgroup_parent.empty() ? "/kubevirt-cri" : rt.default_cgroup_parent;
  absl::StatusOr<std::string> clean = CleanCgroupPath(parent);
  if (!clean.ok()) {
    return absl::InvalidArgumentError(base::StrCat("runtime.default_cgroup_parent: ", clean.status().message()));
  }
  return std::make_unique<CgroupfsPlacer>(*std::move(layout), *clean);
}

}  // namespace kvcri::runtime::cgroup
