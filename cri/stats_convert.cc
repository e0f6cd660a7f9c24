// Usage structs to CRI stats messages and to cAdvisor-named metrics for kubelet's /metrics/cadvisor.
#include "cri/stats_convert.h"

#include <string>
#include <vector>

namespace kvcri::cri {
namespace {

int64_t Ns(absl::Time t) { return absl::ToUnixNanos(t); }

void FillCpu(const CpuUsage& c, pb::CpuUsage* out) {
  out->set_timestamp(Ns(c.timestamp));
  out->mutable_usage_core_nano_seconds()->set_value(c.usage_core_ns);
  if (c.usage_nano_cores) out->mutable_usage_nano_cores()->set_value(*c.usage_nano_cores);
}

void FillMemory(const MemoryUsage& m, pb::MemoryUsage* out) {
  out->set_timestamp(Ns(m.timestamp));
  out->mutable_working_set_bytes()->set_value(m.working_set_bytes);
  out->mutable_usage_bytes()->set_value(m.usage_bytes);
  out->mutable_rss_bytes()->set_value(m.rss_bytes);
  out->mutable_page_faults()->set_value(m.page_faults);
  out->mutable_major_page_faults()->set_value(m.major_page_faults);
  // containerd answers 0 without a limit; so do we.
  out->mutable_available_bytes()->set_value(m.available_bytes.value_or(0));
}

void FillInterface(const cni::InterfaceCounters& i, pb::NetworkInterfaceUsage* out) {
  out->set_name(i.name);
  out->mutable_rx_bytes()->set_value(i.rx_bytes);
  out->mutable_rx_errors()->set_value(i.rx_errors);
  out->mutable_tx_bytes()->set_value(i.tx_bytes);
  out->mutable_tx_errors()->set_value(i.tx_errors);
}

// The label keys of every series, and the values of a container's and of a
// Pod's own series (container "POD", as cAdvisor and CRI-O name the sandbox).
constexpr const char* kBaseKeys[] = {"id", "image", "namespace", "pod", "container"};
std::vector<std::string> ContainerLabels(const sandbox::SandboxRecord& sb, const sandbox::ContainerRecord& c) {
  return {c.id, c.image, sb.metadata.namespace_, sb.metadata.name, c.metadata.name};
}
std::vector<std::string> PodLabels(const sandbox::SandboxRecord& sb) {
  return {sb.id, "", sb.metadata.namespace_, sb.metadata.name, "POD"};
}

struct Desc {
  const char* name;
  const char* help;
  const char* extra_key;  // nullptr: the base keys only
};

constexpr Desc kDescs[] = {
    {"container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds (the VM's cgroup).", "cpu"},
    {"container_memory_working_set_bytes", "Current working set in bytes (the VM's cgroup).", nullptr},
    {"container_memory_usage_bytes",
     "Current memory usage in bytes, including all memory regardless of when it was accessed (the VM's cgroup).",
     nullptr},
    {"container_memory_rss", "Size of RSS in bytes (the VM's cgroup).", nullptr},
    {"container_spec_memory_limit_bytes", "Memory limit for the container in bytes.", nullptr},
    {"container_oom_events_total", "Count of out of memory events observed for the container.", nullptr},
    {"container_fs_usage_bytes", "Bytes the container's files use on the node (overlay, seed, console log).", nullptr},
    {"container_network_receive_bytes_total", "Cumulative count of bytes received.", "interface"},
    {"container_network_receive_packets_total", "Cumulative count of packets received.", "interface"},
    {"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.",
     "interface"},
    {"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", "interface"},
    {"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", "interface"},
    {"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", "interface"},
    {"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.",
     "interface"},
    {"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.",
     "interface"},
    {"kvcri_guest_memory_actual_bytes", "Memory the guest has (virtio-balloon size), as the guest reports it.",
     nullptr},
    {"kvcri_guest_memory_unused_bytes", "Memory the guest reports free (virtio-balloon statistics).", nullptr},
};

void Add(std::vector<pb::Metric>* out, const char* name, pb::MetricType type, absl::Time t,
         std::vector<std::string> labels, uint64_t value) {
  pb::Metric& m = out->emplace_back();
  m.set_name(name);
  m.set_timestamp(Ns(t));
  m.set_metric_type(type);
  for (std::string& l : labels) m.add_label_values(std::move(l));
  m.mutable_value()->set_value(value);
}

std::vector<std::string> With(std::vector<std::string> labels, std::string extra) {
  labels.push_back(std::move(extra));
  return labels;
}

}  // namespace

void ToPb(const ContainerUsage& u, pb::ContainerStats* out) {
  pb::ContainerAttributes* a = out->mutable_attributes();
  a->set_id(u.record.id);
  a->mutable_metadata()->set_name(u.record.metadata.name);
  a->mutable_metadata()->set_attempt(u.record.metadata.attempt);
  for (const auto& [k, v] : u.record.labels) (*a->mutable_labels())[k] = v;
  for (const auto& [k, v] : u.record.annotations) (*a->mutable_annotations())[k] = v;
  if (u.cpu) FillCpu(*u.cpu, out->mutable_cpu());
  if (u.memory) FillMemory(*u.memory, out->mutable_memory());
  if (u.writable_layer) {
    pb::FilesystemUsage* w = out->mutable_writable_layer();
    w->set_timestamp(Ns(u.writable_layer->timestamp));
    w->mutable_fs_id()->set_mountpoint(u.writable_layer->mountpoint);
    w->mutable_used_bytes()->set_value(u.writable_layer->used_bytes);
    w->mutable_inodes_used()->set_value(u.writable_layer->inodes_used);
  }
}

void ToPb(const PodUsage& u, pb::PodSandboxStats* out) {
  pb::PodSandboxAttributes* a = out->mutable_attributes();
  a->set_id(u.record.id);
  pb::PodSandboxMetadata* md = a->mutable_metadata();
  md->set_name(u.record.metadata.name);
  md->set_namespace_(u.record.metadata.namespace_);
  md->set_uid(u.record.metadata.uid);
  md->set_attempt(u.record.metadata.attempt);
  for (const auto& [k, v] : u.record.labels) (*a->mutable_labels())[k] = v;
  for (const auto& [k, v] : u.record.annotations) (*a->mutable_annotations())[k] = v;
  pb::LinuxPodSandboxStats* l = out->mutable_linux();
  if (u.cpu) FillCpu(*u.cpu, l->mutable_cpu());
  if (u.memory) FillMemory(*u.memory, l->mutable_memory());
  if (u.network) {
    pb::NetworkUsage* n = l->mutable_network();
    n->set_timestamp(Ns(u.network->timestamp));
    for (const cni::InterfaceCounters& i : u.network->interfaces) FillInterface(i, n->add_interfaces());
    if (u.network->default_index >= 0) {
      FillInterface(u.network->interfaces[u.network->default_index], n->mutable_default_interface());
    }
  }
  l->mutable_process()->set_timestamp(Ns(u.timestamp));
  l->mutable_process()->mutable_process_count()->set_value(u.processes);
  for (const ContainerUsage& c : u.containers) ToPb(c, l->add_containers());
}

void AddMetricDescriptors(pb::ListMetricDescriptorsResponse* out) {
  for (const Desc& d : kDescs) {
    pb::MetricDescriptor* m = out->add_descriptors();
    m->set_name(d.name);
    m->set_help(d.help);
    for (const char* k : kBaseKeys) m->add_label_keys(k);
    if (d.extra_key != nullptr) m->add_label_keys(d.extra_key);
  }
}

void ToPbMetrics(const PodUsage& u, pb::PodSandboxMetrics* out) {
  out->set_pod_sandbox_id(u.record.id);
  constexpr pb::MetricType kCounter = pb::COUNTER, kGauge = pb::GAUGE;
  std::vector<pb::Metric> pod;
  if (u.network) {
    const absl::Time t = u.network->timestamp;
    for (const cni::InterfaceCounters& i : u.network->interfaces) {
      const std::vector<std::string> l = With(PodLabels(u.record), i.name);
      Add(&pod, "container_network_receive_bytes_total", kCounter, t, l, i.rx_bytes);
      Add(&pod, "container_network_receive_packets_total", kCounter, t, l, i.rx_packets);
      Add(&pod, "container_network_receive_packets_dropped_total", kCounter, t, l, i.rx_dropped);
      Add(&pod, "container_network_receive_errors_total", kCounter, t, l, i.rx_errors);
      Add(&pod, "container_network_transmit_bytes_total", kCounter, t, l, i.tx_bytes);
      Add(&pod, "container_network_transmit_packets_total", kCounter, t, l, i.tx_packets);
      Add(&pod, "container_network_transmit_packets_dropped_total", kCounter, t, l, i.tx_dropped);
      Add(&pod, "container_network_transmit_errors_total", kCounter, t, l, i.tx_errors);
    }
  }
  for (pb::Metric& m : pod) *out->add_metrics() = std::move(m);
  for (const ContainerUsage& c : u.containers) {
    std::vector<pb::Metric> ms;
    const std::vector<std::string> l = ContainerLabels(u.record, c.record);
    if (c.cpu) {
      Add(&ms, "container_cpu_usage_seconds_total", kCounter, c.cpu->timestamp, With(l, "total"),
          c.cpu->usage_core_ns / 1000000000);
    }
    if (c.memory) {
      const absl::Time t = c.memory->timestamp;
      Add(&ms, "container_memory_working_set_bytes", kGauge, t, l, c.memory->working_set_bytes);
      Add(&ms, "container_memory_usage_bytes", kGauge, t, l, c.memory->usage_bytes);
      Add(&ms, "container_memory_rss", kGauge, t, l, c.memory->rss_bytes);
      if (c.source == UsageSource::kCgroup) {
        Add(&ms, "container_spec_memory_limit_bytes", kGauge, t, l, c.memory->limit_bytes);
        Add(&ms, "container_oom_events_total", kCounter, t, l, c.memory->oom_kills);
      }
    }
    if (c.writable_layer) {
      Add(&ms, "container_fs_usage_bytes", kGauge, c.writable_layer->timestamp, l, c.writable_layer->used_bytes);
    }
    if (c.guest) {
      Add(&ms, "kvcri_guest_memory_actual_bytes", kGauge, c.guest->timestamp, l, c.guest->actual_bytes);
      if (c.guest->unused_bytes > 0) {
        Add(&ms, "kvcri_guest_memory_unused_bytes", kGauge, c.guest->timestamp, l, c.guest->unused_bytes);
      }
    }
    if (ms.empty()) continue;
    pb::ContainerMetrics* cm = out->add_container_metrics();
    cm->set_container_id(c.record.id);
    for (pb::Metric& m : ms) *cm->add_metrics() = std::move(m);
  }
}

}  // namespace kvcri::cri
