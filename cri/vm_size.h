// SizeVm: a VM's vCPUs and memory from a container's CRI resources, the one rule for create and resize.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "config/base/str.h"
#include "config/config.h"
#include "cri/pod_drafts.h"

namespace kvcri::cri {

struct VmSize {
  int vcpus;
  int64_t memory_mib;
};

// vCPUs: ceil(cpu_quota / cpu_period), default_vcpus without a quota;
// memory: the limit rounded up to MiB, default_memory_mib without one.
// `field_prefix` names the request's resources in errors
// ("config.linux.resources." at create, "linux." at update).
inline absl::StatusOr<VmSize> SizeVm(const config::VmConfig& cfg, const ContainerResources& r,
                                     std::string_view field_prefix) {
  VmSize size{cfg.default_vcpus, cfg.default_memory_mib};
  if (r.cpu_quota > 0 && r.cpu_period > 0) {
    // A fraction of a CPU still needs a whole vCPU.
    size.vcpus = static_cast<int>(std::max<int64_t>(1, (r.cpu_quota + r.cpu_period - 1) / r.cpu_period));
  }
  if (r.memory_limit_bytes > 0) {
    int64_t mib = (r.memory_limit_bytes + (1 << 20) - 1) >> 20;
    if (mib < cfg.min_memory_mib) {
      return absl::InvalidArgumentError(base::StrCat(field_prefix, "memory_limit_in_bytes ", r.memory_limit_bytes,
                                                     " is below the VM minimum of ", cfg.min_memory_mib,
                                                     " MiB (vm.min_memory_mib)"));
    }
    size.memory_mib = mib;
  }
  return size;
}

}  // namespace kvcri::cri
