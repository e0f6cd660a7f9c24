// The CgroupPlacer that [runtime] cgroup_driver and default_cgroup_parent ask for, shared by both front doors.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "runtime/cgroup/cgroup_placer.h"

namespace kvcri::runtime::cgroup {

// The placer for `rt.cgroup_driver` on this host's hierarchy (systemd: a
// D-Bus connection to the manager). FailedPrecondition when the host's
// cgroup tree is unusable, InvalidArgument naming
// runtime.default_cgroup_parent when the driver cannot use it: start-up
// fails rather than the first Pod.
absl::StatusOr<std::unique_ptr<CgroupPlacer>> MakeCgroupPlacer(const config::RuntimeConfig& rt);

}  // namespace kvcri::runtime::cgroup
