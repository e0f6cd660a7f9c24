// In-memory CgroupPlacer for cri/ unit tests: records placements, limits and removals, serves set samples.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "config/base/str.h"
#include "runtime/cgroup/cgroup_placer.h"

namespace kvcri::testing {

// Plans like the cgroupfs driver ("<parent or /kubevirt-cri>/kvcri-<id>").
// `place_error` / `remove_error` fail those calls; `busy_removals` makes
// that many Remove calls answer FailedPrecondition first (a helper still
// exiting). Samples come from `samples` by path.
class FakeCgroupPlacer : public runtime::cgroup::CgroupPlacer {
 public:
  FakeCgroupPlacer() : CgroupPlacer(runtime::cgroup::CgroupLayout()) {}

  std::string_view driver() const override { return "cgroupfs"; }
  absl::StatusOr<runtime::cgroup::CgroupTarget> Plan(std::string_view parent, std::string_view id) const override {
    absl::StatusOr<std::string> clean = runtime::cgroup::CleanCgroupPath(parent.empty() ? "/kubevirt-cri" : parent);
    if (!clean.ok()) return absl::InvalidArgumentError(base::StrCat("linux.cgroup_parent: ", clean.status().message()));
    runtime::cgroup::CgroupTarget t;
    t.path = base::StrCat(*clean, "/", runtime::cgroup::ContainerCgroupName(id));
    return t;
  }
  absl::Status Place(const runtime::cgroup::CgroupTarget& t, const std::vector<pid_t>& pids) override {
    absl::MutexLock l(&mu);
    std::string call = "Place " + t.path;
    for (pid_t p : pids) call += base::StrCat(" ", p);
    calls.push_back(call);
    if (!place_error.ok()) return place_error;
    placed[t.path] = pids;
    return absl::OkStatus();
  }
  absl::Status Remove(const runtime::cgroup::CgroupTarget& t) override {
    absl::MutexLock l(&mu);
    calls.push_back("Remove " + t.path);
    if (!remove_error.ok()) return remove_error;
    if (busy_removals > 0) {
      --busy_removals;
      return absl::FailedPreconditionError("cgroup still has processes");
    }
    placed.erase(t.path);
    return absl::OkStatus();
  }
  absl::Status SetLimits(const runtime::cgroup::CgroupTarget& t, const runtime::cgroup::CgroupLimits& l) override {
    absl::MutexLock l2(&mu);
    calls.push_back(base::StrCat("SetLimits ", t.path, " quota=", l.cpu_quota_us, " period=", l.cpu_period_us,
                                 " shares=", l.cpu_shares, " cpus=", l.cpuset_cpus, " mems=", l.cpuset_mems,
                                 " memory=", l.memory_limit_bytes));
    if (!limits_error.ok()) return limits_error;
    limits[t.path] = l;
    return absl::OkStatus();
  }
  absl::StatusOr<runtime::cgroup::CgroupSample> Sample(const runtime::cgroup::CgroupTarget& t) const override {
    absl::MutexLock l(&mu);
    auto it = samples.find(t.path);
    if (it == samples.end()) return absl::NotFoundError("no such cgroup");
    return it->second;
  }

  std::vector<std::string> Calls() const {
    absl::MutexLock l(&mu);
    return calls;
  }
  bool Placed(const std::string& path) const {
    absl::MutexLock l(&mu);
    return placed.count(path) > 0;
  }

  mutable absl::Mutex mu;
  absl::Status place_error ABSL_GUARDED_BY(mu);
  absl::Status remove_error ABSL_GUARDED_BY(mu);
  absl::Status limits_error ABSL_GUARDED_BY(mu);
  std::map<std::string, runtime::cgroup::CgroupLimits> limits ABSL_GUARDED_BY(mu);
  int busy_removals ABSL_GUARDED_BY(mu) = 0;
  std::map<std::string, std::vector<pid_t>> placed ABSL_GUARDED_BY(mu);
  std::map<std::string, runtime::cgroup::CgroupSample> samples ABSL_GUARDED_BY(mu);
  std::vector<std::string> calls ABSL_GUARDED_BY(mu);
};

}  // namespace kvcri::testing
