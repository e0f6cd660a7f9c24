// MetricsFromUsage: ContainerUsage to containerd's cgroups v1/v2 Metrics (task_metrics.h).
#include "shim/containerd/task_metrics.h"

#include "shim/containerd/names.h"
#include "shim/containerd/proto/cgroups_v1.pb.h"
#include "shim/containerd/proto/cgroups_v2.pb.h"

namespace kvcri::shim::containerd {

google::protobuf::Any MetricsFromUsage(const cri::ContainerUsage& u, MetricsVersion version) {
  google::protobuf::Any any;
  // containerd subtracts inactive file pages from usage for the working
  // set; this is the difference that yields ours.
  const uint64_t inactive =
      u.memory.has_value() && u.memory->usage_bytes > u.memory->working_set_bytes
          ? u.memory->usage_bytes - u.memory->working_set_bytes
          : 0;
  if (version == MetricsVersion::kCgroupsV1) {
    pb::cgroups::v1::Metrics m;
    if (u.cpu.has_value()) m.mutable_cpu()->mutable_usage()->set_total(u.cpu->usage_core_ns);
    if (u.memory.has_value()) {
      pb::cgroups::v1::MemoryStat* mem = m.mutable_memory();
      // A memory.usage of the working set itself when the cgroup reported
      // none (the hypervisor fallback): containerd needs usage to be set.
      mem->mutable_usage()->set_usage(u.memory->usage_bytes != 0 ? u.memory->usage_bytes : u.memory->working_set_bytes);
      mem->mutable_usage()->set_limit(u.memory->limit_bytes);
      mem->set_total_inactive_file(inactive);
      mem->set_total_rss(u.memory->rss_bytes);
      mem->set_total_pg_fault(u.memory->page_faults);
      mem->set_total_pg_maj_fault(u.memory->major_page_faults);
    }
    if (u.processes.has_value()) m.mutable_pids()->set_current(*u.processes);
    any.set_type_url(std::string(kCgroupsV1MetricsTypeUrl));
    any.set_value(m.SerializeAsString());
    return any;
  }
  pb::cgroups::v2::Metrics m;
  if (u.cpu.has_value()) m.mutable_cpu()->set_usage_usec(u.cpu->usage_core_ns / 1000);
  if (u.memory.has_value()) {
    pb::cgroups::v2::MemoryStat* mem = m.mutable_memory();
    mem->set_usage(u.memory->usage_bytes != 0 ? u.memory->usage_bytes : u.memory->working_set_bytes);
    mem->set_usage_limit(u.memory->limit_bytes);
    mem->set_inactive_file(inactive);
    mem->set_anon(u.memory->rss_bytes);
    mem->set_pgfault(u.memory->page_faults);
    mem->set_pgmajfault(u.memory->major_page_faults);
  }
  if (u.processes.has_value()) m.mutable_pids()->set_current(*u.processes);
  any.set_type_url(std::string(kCgroupsV2MetricsTypeUrl));
  any.set_value(m.SerializeAsString());
  return any;
}

}  // namespace kvcri::shim::containerd
