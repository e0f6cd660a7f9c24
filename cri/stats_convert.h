// The stats and metrics messages of runtime.v1 from the collector's proto-free usage structs.
#pragma once

#include "cri/proto/api.pb.h"
#include "cri/stats_collector.h"

namespace kvcri::cri {

namespace pb = ::runtime::v1;

void ToPb(const ContainerUsage& u, pb::ContainerStats* out);
void ToPb(const PodUsage& u, pb::PodSandboxStats* out);

// ListMetricDescriptors: the cAdvisor metrics we can fill, with cAdvisor's
// names and the label keys CRI-O uses for them (id, image, namespace, pod,
// container; "cpu" on CPU usage, "interface" on network), plus our
// kvcri_guest_memory_* from the guest's balloon.
void AddMetricDescriptors(pb::ListMetricDescriptorsResponse* out);
// ListPodSandboxMetrics: one Pod's series. Values are the CRI's uint64, so
// container_cpu_usage_seconds_total counts whole seconds, as CRI-O's does.
void ToPbMetrics(const PodUsage& u, pb::PodSandboxMetrics* out);

}  // namespace kvcri::cri
