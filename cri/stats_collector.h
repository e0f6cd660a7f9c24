// StatsCollector: proto-free usage of VM containers and Pods, and the CPU rate between samples.
#pragma once

// Where each number comes from (docs/operator-guide.md "Stats"):
//  - CPU and memory of a container: its own cgroup (QEMU, its threads and
//    virtiofsd), i.e. what the node pays for the VM, what the Pod's limit
//    bounds and what kubelet evicts on. A container without a cgroup (a
//    record from before placement, or no placer) falls back to the
//    hypervisor: the guest's vCPU time and QEMU's resident set.
//  - usage_nano_cores: the rate between this sample and the previous one of
//    the same container or Pod, as containerd computes it; unset on the
//    first sample.
//  - The guest's balloon (memory it has, memory it reports free): only in
//    ListPodSandboxMetrics, as kvcri_guest_memory_* (no CRI stats field
//    means "memory inside the VM").
//  - writable_layer: the container directory (qcow2 overlay, seed, console
//    log), allocated blocks and inodes.
//  - network: the Pod netns' interfaces but loopback and the guest's tap
//    (tc mirrors its traffic onto the CNI interface, which is the default).
//  - Pod CPU, memory and process count: the sum over its containers.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cni/netdev_stats.h"
#include "cri/runtime_deps.h"
#include "runtime/disk_usage.h"
#include "sandbox/records.h"

namespace kvcri::cri {

struct CpuUsage {
  absl::Time timestamp;
  uint64_t usage_core_ns = 0;                // cumulative
  std::optional<uint64_t> usage_nano_cores;  // unset on the first sample
};

struct MemoryUsage {
  absl::Time timestamp;
  uint64_t working_set_bytes = 0;
  uint64_t usage_bytes = 0;
  uint64_t rss_bytes = 0;
  uint64_t page_faults = 0;
  uint64_t major_page_faults = 0;
  // limit - working set; unset without a limit.
  std::optional<uint64_t> available_bytes;
  uint64_t limit_bytes = 0;  // 0: unlimited
  uint64_t oom_kills = 0;
};

// Which source the CPU and memory numbers came from.
enum class UsageSource { kNone, kCgroup, kHypervisor };

struct GuestMemory {
  absl::Time timestamp;
  uint64_t actual_bytes = 0;  // balloon size: memory the guest has
  uint64_t unused_bytes = 0;  // what the guest reports free; 0 when it does not
};

struct ContainerUsage {
  sandbox::ContainerRecord record;
  UsageSource source = UsageSource::kNone;
  std::optional<CpuUsage> cpu;
  std::optional<MemoryUsage> memory;
  std::optional<uint64_t> processes;  // tasks in the cgroup (pids.current)
  std::optional<runtime::DiskUsage> writable_layer;
  std::optional<GuestMemory> guest;  // only when asked for (WithGuest)
};

struct NetworkUsage {
  absl::Time timestamp;
  std::vector<cni::InterfaceCounters> interfaces;
  int default_index = -1;  // into interfaces; -1 when empty
};

struct PodUsage {
  sandbox::SandboxRecord record;
  absl::Time timestamp;
  std::optional<CpuUsage> cpu;
  std::optional<MemoryUsage> memory;
  std::optional<NetworkUsage> network;
  uint64_t processes = 0;
  std::vector<ContainerUsage> containers;
};

// Thread-safe. Reads happen with no lock held; only the last CPU sample per
// ID is kept, under a short lock.
class StatsCollector {
 public:
  // Uses deps.cgroups, hypervisor, netdev (null: /proc in the netns), clock
  // (timestamps; null: real time) and config (the container directories).
  explicit StatsCollector(const RuntimeDeps& deps);

  enum class Guest { kSkip, kRead };
  // Never fail: what cannot be read is left unset, without a log line
  // (kubelet polls every few seconds; a line per failed read would flood).
  ContainerUsage Container(const sandbox::ContainerRecord& c, Guest guest = Guest::kSkip);
  PodUsage Pod(const sandbox::SandboxRecord& sb, const std::vector<sandbox::ContainerRecord>& containers,
               Guest guest = Guest::kSkip);

  // Drops the CPU samples of IDs not in `live` (containers and sandboxes
  // gone). Called after every unfiltered list.
  void ForgetAllBut(const absl::flat_hash_set<std::string>& live);
  size_t cached_samples() const;

  // Samples kept at most; past it the oldest half is dropped (a bound for
  // callers that only ever ask for single IDs).
  static constexpr size_t kMaxSamples = 8192;
  // A sample younger than this after the previous one does not replace it:
  // two callers polling at once would otherwise see a rate over
  // microseconds. The previous rate is answered instead.
  static constexpr absl::Duration kMinRateWindow = absl::Seconds(1);

 private:
  absl::Time Now() const;
  std::optional<uint64_t> Rate(const std::string& id, uint64_t cpu_ns, absl::Time t);
  void Forget(const std::string& id);

  RuntimeDeps deps_;
  std::unique_ptr<cni::NetdevReader> own_netdev_;  // when deps_.netdev is null
  cni::NetdevReader* netdev_;

  struct Last {
    uint64_t cpu_ns = 0;
    absl::Time t;
    std::optional<uint64_t> rate;
  };
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Last> last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::cri
