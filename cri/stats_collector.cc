// StatsCollector: per-container cgroup samples summed per Pod, with netns counters and disk usage.
#include "cri/stats_collector.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "config/base/clock.h"
#include "cri/pod_lifecycle.h"
#include "runtime/cgroup/cgroup_placer.h"
#include "runtime/hypervisor.h"

namespace kvcri::cri {

StatsCollector::StatsCollector(const RuntimeDeps& deps) : deps_(deps), netdev_(deps.netdev) {
  if (netdev_ == nullptr) {
    own_netdev_ = std::make_unique<cni::ProcNetdevReader>();
    netdev_ = own_netdev_.get();
  }
}

absl::Time StatsCollector::Now() const { return deps_.clock != nullptr ? deps_.clock->Now() : absl::Now(); }

std::optional<uint64_t> StatsCollector::Rate(const std::string& id, uint64_t cpu_ns, absl::Time t) {
  absl::MutexLock l(&mu_);
  auto it = last_.find(id);
  if (it == last_.end()) {
    if (last_.size() >= kMaxSamples) {
      // Only single-ID callers get here (lists prune): drop the older half.
      std::vector<absl::Time> times;
      times.reserve(last_.size());
      for (const auto& [k, v] : last_) times.push_back(v.t);
      std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
      const absl::Time cut = times[times.size() / 2];
      absl::erase_if(last_, [cut](const auto& kv) { return kv.second.t < cut; });
    }
    last_[id] = Last{cpu_ns, t, std::nullopt};
    return std::nullopt;
  }
  Last& prev = it->second;
  const absl::Duration dt = t - prev.t;
  if (dt < kMinRateWindow) return prev.rate;
  if (cpu_ns < prev.cpu_ns) {
    // The counter went back (a Pod lost a container, a VM restarted in a
    // new cgroup): start again from here.
    prev = Last{cpu_ns, t, std::nullopt};
    return std::nullopt;
  }
  const double cores = static_cast<double>(cpu_ns - prev.cpu_ns) / absl::ToDoubleNanoseconds(dt);
  const uint64_t nano_cores = static_cast<uint64_t>(cores * 1e9);
  prev = Last{cpu_ns, t, nano_cores};
  return nano_cores;
}

void StatsCollector::Forget(const std::string& id) {
  absl::MutexLock l(&mu_);
  last_.erase(id);
}

void StatsCollector::ForgetAllBut(const absl::flat_hash_set<std::string>& live) {
  absl::MutexLock l(&mu_);
  absl::erase_if(last_, [&live](const auto& kv) { return !live.contains(kv.first); });
}

size_t StatsCollector::cached_samples() const {
  absl::MutexLock l(&mu_);
  return last_.size();
}

ContainerUsage StatsCollector::Container(const sandbox::ContainerRecord& c, Guest guest) {
  ContainerUsage u;
  u.record = c;
  if (deps_.config != nullptr) {
    absl::StatusOr<runtime::DiskUsage> disk = runtime::DirDiskUsage(deps_.config->root / "containers" / c.id);
    if (disk.ok()) {
      disk->timestamp = Now();
      u.writable_layer = std::move(*disk);
    }
  }
  if (c.state != sandbox::ContainerState::kRunning) {
    Forget(c.id);  // a restarted VM starts a new series
    return u;
  }
  const absl::Time now = Now();
  if (deps_.cgroups != nullptr && !c.cgroup_path.empty()) {
    absl::StatusOr<runtime::cgroup::CgroupSample> s =
        deps_.cgroups->Sample(CgroupOf(c));
    if (s.ok()) {
      u.source = UsageSource::kCgroup;
      u.cpu = CpuUsage{now, s->cpu_usage_ns, std::nullopt};
      MemoryUsage m;
      m.timestamp = now;
      m.working_set_bytes = s->memory_working_set_bytes;
      m.usage_bytes = s->memory_usage_bytes;
      m.rss_bytes = s->memory_rss_bytes;
      m.page_faults = s->page_faults;
      m.major_page_faults = s->major_page_faults;
      m.limit_bytes = s->memory_limit_bytes;
      m.oom_kills = s->oom_kills;
      if (m.limit_bytes > 0) {
        m.available_bytes = m.limit_bytes > m.working_set_bytes ? m.limit_bytes - m.working_set_bytes : 0;
      }
      u.memory = m;
      u.processes = s->pids;
    }
  }
  if (u.source == UsageSource::kNone || guest == Guest::kRead) {
    if (deps_.hypervisor != nullptr) {
      absl::StatusOr<runtime::VmStats> vm = deps_.hypervisor->Stats(DomainOf(c));
      if (vm.ok()) {
        if (vm->memory_actual_bytes > 0) u.guest = GuestMemory{now, vm->memory_actual_bytes, vm->memory_unused_bytes};
        if (u.source == UsageSource::kNone) {
          // No cgroup of its own: the guest's vCPU time and QEMU's resident
          // set are the closest host-side numbers.
          u.source = UsageSource::kHypervisor;
          u.cpu = CpuUsage{now, vm->cpu_ns, std::nullopt};
          MemoryUsage m;
          m.timestamp = now;
          m.working_set_bytes = vm->memory_rss_bytes;
          m.usage_bytes = vm->memory_rss_bytes;
          m.rss_bytes = vm->memory_rss_bytes;
          u.memory = m;
        }
      }
    }
  }
  if (u.cpu) u.cpu->usage_nano_cores = Rate(c.id, u.cpu->usage_core_ns, u.cpu->timestamp);
  return u;
}

PodUsage StatsCollector::Pod(const sandbox::SandboxRecord& sb, const std::vector<sandbox::ContainerRecord>& containers,
                             Guest guest) {
  PodUsage p;
  p.record = sb;
  p.timestamp = Now();
  CpuUsage cpu{p.timestamp, 0, std::nullopt};
  MemoryUsage mem;
  mem.timestamp = p.timestamp;
  bool have_cpu = false, have_mem = false, have_available = false;
  uint64_t available = 0;
  for (const sandbox::ContainerRecord& c : containers) {
    ContainerUsage u = Container(c, guest);
    if (u.cpu) {
      have_cpu = true;
      cpu.usage_core_ns += u.cpu->usage_core_ns;
    }
    if (u.memory) {
      have_mem = true;
      mem.working_set_bytes += u.memory->working_set_bytes;
      mem.usage_bytes += u.memory->usage_bytes;
      mem.rss_bytes += u.memory->rss_bytes;
      mem.page_faults += u.memory->page_faults;
      mem.major_page_faults += u.memory->major_page_faults;
      mem.limit_bytes += u.memory->limit_bytes;
      mem.oom_kills += u.memory->oom_kills;
      if (u.memory->available_bytes) {
        have_available = true;
        available += *u.memory->available_bytes;
      }
    }
    if (u.processes) p.processes += *u.processes;
    p.containers.push_back(std::move(u));
  }
  // The Pod micro-VM (plain-image containers): its QEMU and virtiofsd are
  // the Pod's, in a cgroup of their own; its containers have none on the
  // host, so nothing is counted twice.
  if (deps_.cgroups != nullptr && !sb.pod_vm.cgroup_path.empty()) {
    runtime::cgroup::CgroupTarget t;
    t.path = sb.pod_vm.cgroup_path;
    t.unit = sb.pod_vm.cgroup_unit;
    if (absl::StatusOr<runtime::cgroup::CgroupSample> s = deps_.cgroups->Sample(t); s.ok()) {
      have_cpu = have_mem = true;
      cpu.usage_core_ns += s->cpu_usage_ns;
      mem.working_set_bytes += s->memory_working_set_bytes;
      mem.usage_bytes += s->memory_usage_bytes;
      mem.rss_bytes += s->memory_rss_bytes;
      mem.page_faults += s->page_faults;
      mem.major_page_faults += s->major_page_faults;
      mem.limit_bytes += s->memory_limit_bytes;
      mem.oom_kills += s->oom_kills;
      p.processes += s->pids;
    }
  }
  if (have_cpu) {
    cpu.usage_nano_cores = Rate(sb.id, cpu.usage_core_ns, cpu.timestamp);
    p.cpu = cpu;
  } else {
    Forget(sb.id);
  }
  if (have_available) mem.available_bytes = available;
  if (have_mem) p.memory = mem;

  if (!sb.host_network && !sb.netns_path.empty()) {
    absl::StatusOr<std::vector<cni::InterfaceCounters>> ifs = netdev_->Read(sb.netns_path);
    if (ifs.ok()) {
      NetworkUsage n;
      n.timestamp = Now();
      // The CNI interfaces (eth0, net1, ...) are the Pod's; the taps behind
      // them carry the same frames again.
      auto is_tap = [&](const std::string& name) {
        for (const sandbox::GuestNic& g : sb.network.nics) {
          if (!g.tap_name.empty() && g.tap_name == name) return true;
        }
        return false;
      };
      for (cni::InterfaceCounters& i : *ifs) {
        if (i.name == "lo" || is_tap(i.name)) continue;
        n.interfaces.push_back(std::move(i));
      }
      const std::string want = sb.network.nics.empty() || sb.network.nics.front().cni_ifname.empty()
                                   ? "eth0"
                                   : sb.network.nics.front().cni_ifname;
      for (size_t k = 0; k < n.interfaces.size(); ++k) {
        if (n.interfaces[k].name == want) n.default_index = static_cast<int>(k);
      }
      if (n.default_index < 0 && !n.interfaces.empty()) n.default_index = 0;
      p.network = std::move(n);
    }
  }
  return p;
}

}  // namespace kvcri::cri
