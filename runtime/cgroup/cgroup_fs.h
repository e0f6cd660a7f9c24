// The host's cgroup hierarchies (v1 per-controller or v2 unified): where a cgroup lives, creating, joining, removing and reading one.
#pragma once

// kubelet names a Pod's cgroup by a path relative to the hierarchy root
// ("/kubepods/burstable/pod<uid>", cgroupfs driver) or by a systemd slice
// ("kubepods-burstable-pod<uid>.slice", systemd driver). Both end up as one
// relative path that exists once per hierarchy: under every controller
// directory on cgroup v1, once under the unified mount on v2. The root is a
// parameter so tests run the v1 and v2 code against scratch trees.

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvcri::runtime::cgroup {

enum class CgroupVersion { kV1, kV2 };

// The controllers a VM Pod's accounting and limits need.
inline constexpr std::string_view kV1Controllers[] = {"cpu", "cpuacct", "cpuset", "memory", "pids"};

class CgroupLayout {
 public:
  // v2 when `root` itself is a cgroup2 mount (it has cgroup.controllers);
  // v1 otherwise, with the kV1Controllers directories that exist under it
  // (at least memory and cpuacct, or the layout is refused: no accounting).
  static absl::StatusOr<CgroupLayout> Detect(const std::filesystem::path& root = "/sys/fs/cgroup");

  CgroupVersion version() const { return version_; }
  const std::filesystem::path& root() const { return root_; }
  // Every directory the cgroup `rel` is (or would be) on this host: one per
  // v1 controller hierarchy, one on v2.
  std::vector<std::filesystem::path> DirsOf(std::string_view rel) const;
  // The directory holding `controller`'s files of `rel` ("memory", "cpu",
  // "cpuacct", "pids", "cpuset"): its hierarchy on v1, the one dir on v2.
  std::filesystem::path ControllerDir(std::string_view rel, std::string_view controller) const;

 private:
  CgroupVersion version_ = CgroupVersion::kV1;
  std::filesystem::path root_;
  std::vector<std::string> v1_controllers_;  // present under root_, kV1Controllers order
};

// "kubepods-burstable-pod1.slice" -> "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice",
// systemd's own expansion of a slice name into its cgroup path
// (systemd.slice(5)). InvalidArgument for a name that is not a slice.
absl::StatusOr<std::string> ExpandSystemdSlice(std::string_view slice);

// A relative cgroup path kubelet may hand us: absolute-looking ("/a/b"),
// no "." or ".." component, no empty component, printable ASCII. Returns it
// normalised with a leading '/'.
absl::StatusOr<std::string> CleanCgroupPath(std::string_view rel);

// mkdir of `rel` in every hierarchy (parents included); OK if it exists.
// On v2 each level above `rel` gets the cpu, cpuset, memory and pids
// controllers in cgroup.subtree_control, so `rel` has their files.
absl::Status CreateCgroup(const CgroupLayout& layout, std::string_view rel);
// Moves process `pid` (all its threads) into `rel` in every hierarchy.
absl::Status JoinCgroup(const CgroupLayout& layout, std::string_view rel, pid_t pid);
// Writes `value` to `file` of `controller` in `rel` (e.g. "memory",
// "memory.max", "268435456").
absl::Status WriteCgroupFile(const CgroupLayout& layout, std::string_view rel, std::string_view controller,
                             std::string_view file, std::string_view value);
// rmdir of `rel` in every hierarchy; OK where it is already gone.
// FailedPrecondition while a process is still in it (EBUSY).
absl::Status RemoveCgroup(const CgroupLayout& layout, std::string_view rel);
// The PIDs in `rel` (its memory hierarchy on v1), sorted.
absl::StatusOr<std::vector<pid_t>> CgroupProcs(const CgroupLayout& layout, std::string_view rel);

// One reading of a cgroup's accounting, as kubelet's CRI stats provider and
// cAdvisor compute it from the kernel's files.
struct CgroupSample {
  absl::Time timestamp;
  uint64_t cpu_usage_ns = 0;  // cumulative CPU time of every task
  uint64_t memory_usage_bytes = 0;  // v1 memory.usage_in_bytes, v2 memory.current
  // usage minus inactive file pages (what the kernel can drop at once), as
  // cAdvisor's working set: the number kubelet evicts on.
  uint64_t memory_working_set_bytes = 0;
  uint64_t memory_rss_bytes = 0;  // anonymous memory: v1 total_rss, v2 anon
  uint64_t page_faults = 0;
  uint64_t major_page_faults = 0;
  // 0 when unlimited.
  uint64_t memory_limit_bytes = 0;
  uint64_t oom_kills = 0;  // v1 memory.oom_control oom_kill, v2 memory.events oom_kill
  uint64_t pids = 0;
};

// Every file is read with a small bound (cgroup files are short; a larger
// one is an error, not a buffer). NotFound when `rel` does not exist.
absl::StatusOr<CgroupSample> ReadCgroupSample(const CgroupLayout& layout, std::string_view rel);

}  // namespace kvcri::runtime::cgroup
