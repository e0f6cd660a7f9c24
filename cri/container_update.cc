// UpdateContainerResources: refuse what a VM cannot take live, convert, delegate to PodLifecycle::UpdateResources.
#include <string>

#include "config/base/str.h"
#include "cri/convert.h"
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"
#include "cri/validate.h"

namespace kvcri::cri {

namespace {

using base::StrCat;

// cgroup v1 takes a CFS period of 1 ms to 1 s.
constexpr int64_t kMinCpuPeriod = 1000;
constexpr int64_t kMaxCpuPeriod = 1000000;

}  // namespace

// What of LinuxContainerResources a running VM can take is vCPUs (from the
// quota), the balloon (from the memory limit) and the cgroup's CPU knobs.
// The rest is refused by name, and nothing is changed: the Pod keeps running.
absl::Status ValidateLinuxResources(const pb::LinuxContainerResources& r) {
  if (r.cpu_period() != 0 && (r.cpu_period() < kMinCpuPeriod || r.cpu_period() > kMaxCpuPeriod)) {
    return absl::InvalidArgumentError(StrCat("linux.cpu_period ", r.cpu_period(), " is outside [", kMinCpuPeriod, ", ",
                                             kMaxCpuPeriod, "] microseconds"));
  }
  // -1: no quota (the CFS meaning); kubelet sends 0 for none.
  if (r.cpu_quota() < -1) return absl::InvalidArgumentError(StrCat("linux.cpu_quota ", r.cpu_quota(), " is negative"));
  if (r.cpu_quota() > 0 && r.cpu_period() == 0) {
    return absl::InvalidArgumentError(StrCat("linux.cpu_quota ", r.cpu_quota(),
                                             " is set without linux.cpu_period; the vCPU count is quota / period"));
  }
  if (r.cpu_shares() < 0) return absl::InvalidArgumentError(StrCat("linux.cpu_shares ", r.cpu_shares(), " is negative"));
  if (r.memory_limit_in_bytes() < 0) {
    return absl::InvalidArgumentError(
        StrCat("linux.memory_limit_in_bytes ", r.memory_limit_in_bytes(), " is negative"));
  }
  for (const pb::HugepageLimit& h : r.hugepage_limits()) {
    // kubelet lists every page size the node has, with limit 0 when the Pod
    // asks for none.
    if (h.limit() != 0) {
      return absl::InvalidArgumentError(StrCat("linux.hugepage_limits[\"", h.page_size(), "\"] ", h.limit(),
                                               " cannot be applied: a VM's guest memory is not backed by hugepages"));
    }
  }
  // 0, or equal to the memory limit (kubelet's "no swap" on cgroup v1).
  if (r.memory_swap_limit_in_bytes() != 0 && r.memory_swap_limit_in_bytes() != r.memory_limit_in_bytes()) {
    return absl::InvalidArgumentError(StrCat("linux.memory_swap_limit_in_bytes ", r.memory_swap_limit_in_bytes(),
                                             " cannot be applied: a VM's guest memory gets no host swap (0, or equal "
                                             "to linux.memory_limit_in_bytes, is all a VM container takes)"));
  }
  for (const auto& [key, value] : r.unified()) {
    // kubelet's cgroup v2 keys that a VM already satisfies: no swap, and one
    // OOM group (the VM is one QEMU).
    if (key == "memory.swap.max" && value == "0") continue;
    if (key == "memory.oom.group") continue;
    return absl::InvalidArgumentError(StrCat("linux.unified[\"", key, "\"] = \"", value,
                                             "\" cannot be applied to a VM container (kubevirt-cri applies only "
                                             "memory.swap.max = \"0\" and memory.oom.group)"));
  }
  // oom_score_adj is kubelet's QoS ranking, fixed when QEMU started; a
  // resize does not change the Pod's QoS class, so it is not re-applied.
  return absl::OkStatus();
}

grpc::Status RuntimeService::UpdateContainerResources(grpc::ServerContext*,
                                                      const pb::UpdateContainerResourcesRequest* req,
                                                      pb::UpdateContainerResourcesResponse*) {
  if (absl::Status s = ValidateIdArgument("container_id", req->container_id()); !s.ok()) return ToGrpc(s);
  // No linux resources: nothing to change (windows ones mean nothing here).
  if (!req->has_linux()) return grpc::Status::OK;
  if (absl::Status s = ValidateLinuxResources(req->linux()); !s.ok()) return ToGrpc(s);
  return ToGrpc(pods_->UpdateResources(req->container_id(), ResourcesFromPb(req->linux())));
}

}  // namespace kvcri::cri
