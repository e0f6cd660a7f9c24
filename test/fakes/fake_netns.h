// Fake NetnsManager for cri/ unit tests: namespaces as names in a set, every call can fail.
#pragma once

#include <set>
#include <string>

#include "absl/synchronization/mutex.h"
#include "sandbox/netns.h"

namespace kvcri::testing {

// Network namespaces as names in a set; the path is /proc/self/ns/net so code
// that enters "the netns" stays in ours. Creation can be made to fail.
class FakeNetns : public sandbox::NetnsManager {
 public:
  absl::StatusOr<std::filesystem::path> Create(std::string_view id) override {
    absl::MutexLock l(&mu);
    if (!create_error.ok()) return create_error;
    pinned.insert(std::string(id));
    return Path(id);
  }
  absl::Status Remove(std::string_view id) override {
    absl::MutexLock l(&mu);
    if (!remove_error.ok()) return remove_error;
    pinned.erase(std::string(id));
    return absl::OkStatus();
  }
  absl::StatusOr<bool> Exists(std::string_view id) const override {
    absl::MutexLock l(&mu);
    if (!exists_error.ok()) return exists_error;
    return pinned.count(std::string(id)) > 0;
  }
  absl::StatusOr<std::vector<sandbox::PinnedNetns>> ListPinned() const override {
    absl::MutexLock l(&mu);
    if (!list_error.ok()) return list_error;
    std::vector<sandbox::PinnedNetns> out;
    for (const std::string& id : pinned) out.push_back({id, Path(id), true});
    return out;
  }
  std::filesystem::path Path(std::string_view) const override { return "/proc/self/ns/net"; }

  mutable absl::Mutex mu;
  absl::Status create_error ABSL_GUARDED_BY(mu);
  absl::Status remove_error ABSL_GUARDED_BY(mu);
  absl::Status exists_error ABSL_GUARDED_BY(mu);
  absl::Status list_error ABSL_GUARDED_BY(mu);
  std::set<std::string> pinned ABSL_GUARDED_BY(mu);
};

}  // namespace kvcri::testing
