// A VM container's usage (cri::StatsCollector) as the cgroups Metrics containerd's CRI decodes from Task Stats.
#pragma once

// containerd's CRI turns StatsResponse.stats into ContainerStats itself: CPU
// from cpu.usage.total (v1) or cpu.usage_usec (v2), the working set as
// memory usage minus (total_)inactive_file, RSS from total_rss / anon, page
// faults, the limit from the usage entry (docs/containerd-shim.md section
// 3). The numbers are the daemon's own (the VM's cgroup, else libvirt),
// encoded so that containerd derives the same working set the daemon
// reports on its own socket.

#include "google/protobuf/any.pb.h"
#include "cri/stats_collector.h"

namespace kvcri::shim::containerd {

enum class MetricsVersion { kCgroupsV1, kCgroupsV2 };

// `usage` as io.containerd.cgroups.v1|v2.Metrics in an Any (bare type_url,
// as containerd's typeurl registry names them). Unread parts stay zero.
google::protobuf::Any MetricsFromUsage(const cri::ContainerUsage& usage, MetricsVersion version);

}  // namespace kvcri::shim::containerd
