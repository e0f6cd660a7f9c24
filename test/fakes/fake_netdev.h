// Fake NetdevReader for cri/ unit tests: interface counters per netns path, set by the test.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cni/netdev_stats.h"

namespace kvcri::testing {

// Answers `counters[netns]`, NotFound for a path it lacks, `error` when set.
class FakeNetdev : public cni::NetdevReader {
 public:
  absl::StatusOr<std::vector<cni::InterfaceCounters>> Read(const std::filesystem::path& netns) override {
    absl::MutexLock l(&mu);
    ++reads;
    if (!error.ok()) return error;
    auto it = counters.find(netns.string());
    if (it == counters.end()) return absl::NotFoundError("no such netns \"" + netns.string() + "\"");
    return it->second;
  }

  absl::Mutex mu;
  absl::Status error ABSL_GUARDED_BY(mu);
  std::map<std::string, std::vector<cni::InterfaceCounters>> counters ABSL_GUARDED_BY(mu);
  int reads ABSL_GUARDED_BY(mu) = 0;
};

}  // namespace kvcri::testing
