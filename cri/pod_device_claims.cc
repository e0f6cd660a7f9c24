// PodLifecycle: a block device is in one VM of the node at a time when any open writes (by st_rdev, from the records).
#include <sys/sysmacros.h>

#include "config/base/str.h"
#include "cri/pod_lifecycle.h"
#include "cri/volumes.h"
#include "sandbox/sandbox_store.h"

namespace kvcri::cri {

using base::StrCat;

namespace {

std::string DeviceNumberText(uint64_t rdev) {
  const dev_t d = static_cast<dev_t>(rdev);
  return StrCat(major(d), ":", minor(d));
}

const char* AccessText(std::string_view permissions) {
  return permissions.empty() || permissions.find('w') != std::string_view::npos ? "read-write" : "read-only";
}

}  // namespace

absl::Status PodLifecycle::ClaimDevices(const std::string& container_id,
                                        const std::vector<sandbox::DeviceSpec>& devices) {
  if (devices.empty()) return absl::OkStatus();
  // Held across the scan and the reservation only: both read memory (the
  // store's records are in memory), so two CreateContainers with the same
  // device cannot both pass.
  absl::MutexLock l(&devices_mu_);
  const std::vector<sandbox::ContainerRecord> records =
      deps_.store->ListContainers([&](const sandbox::ContainerRecord& r) {
        // An EXITED container's QEMU is gone, and it is never started again: a
        // restart of the VM (same Pod, new container) must not wait for the old
        // record's removal. An unreadable record names no devices.
        return r.id != container_id && r.load_error.empty() && r.state != sandbox::ContainerState::kExited &&
               !r.devices.empty();
      });
  for (size_t i = 0; i < devices.size(); ++i) {
    const sandbox::DeviceSpec& want = devices[i];
    const uint64_t rdev = want.host_rdev;
    if (rdev == 0) continue;  // ValidateVolumes always sets it
    const std::string field = StrCat("config.devices[", i, "].host_path \"", want.host_path, "\" (block device ",
                                     DeviceNumberText(rdev), ", ", AccessText(want.permissions), ")");
    for (const sandbox::ContainerRecord& r : records) {
      for (const sandbox::DeviceSpec& held : r.devices) {
        if (DeviceNumberOf(held) != rdev || !DeviceOpensConflict(want.permissions, held.permissions)) continue;
        std::string pod = StrCat("sandbox \"", r.sandbox_id, "\"");
        if (absl::StatusOr<sandbox::SandboxRecord> sb = deps_.store->GetSandbox(r.sandbox_id);
            sb.ok() && sb->load_error.empty()) {
          pod =
              StrCat("Pod \"", sb->metadata.namespace_, "/", sb->metadata.name, "\" (sandbox \"", r.sandbox_id, "\")");
        }
        return absl::FailedPreconditionError(
            StrCat(field, " is held ", AccessText(held.permissions), " as \"", held.container_path,
                   "\" by container \"", r.id, "\" (", sandbox::ContainerStateName(r.state), ") of ", pod,
                   "; a block device is given to one VM of the node at a time when either writes it: remove that "
                   "container or Pod first"));
      }
    }
    for (const DeviceClaim& claim : pending_devices_) {
      if (claim.rdev != rdev || claim.container_id == container_id ||
          !DeviceOpensConflict(want.permissions, claim.permissions)) {
        continue;
      }
      return absl::FailedPreconditionError(
          StrCat(field, " is being given ", AccessText(claim.permissions), " to container \"", claim.container_id,
                 "\" by a CreateContainer in flight; a block device is given to one VM of the node at a time when "
                 "either writes it"));
    }
  }
  for (const sandbox::DeviceSpec& d : devices) {
    if (d.host_rdev != 0) pending_devices_.push_back({container_id, d.host_rdev, d.permissions});
  }
  return absl::OkStatus();
}

void PodLifecycle::ReleaseDeviceClaims(const std::string& container_id) {
  absl::MutexLock l(&devices_mu_);
  std::erase_if(pending_devices_, [&](const DeviceClaim& c) { return c.container_id == container_id; });
}

}  // namespace kvcri::cri
