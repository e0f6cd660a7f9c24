// ValidateVolumes: CreateContainer's devices and mounts checked and resolved into a VolumePlan.
#pragma once

#include "absl/status/statusor.h"
#include "cri/proto/api.pb.h"
#include "cri/volumes.h"

namespace kvcri::cri {

namespace pb = ::runtime::v1;

// Checks config.devices and config.mounts and resolves their host paths.
// InvalidArgument (a relative or non-canonical path, a symlinked mount, a
// device that is not a block device, propagation other than PRIVATE, ...) or
// NotFound (a missing host path), each naming the field, e.g.
// "config.mounts[1].host_path".
absl::StatusOr<VolumePlan> ValidateVolumes(const pb::ContainerConfig& config);

}  // namespace kvcri::cri
