// PinnedNetnsManager: the real NetnsManager, which pins each Pod's network namespace by a bind mount in a file.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "sandbox/netns.h"

namespace kvcri::sandbox {

struct PinnedNetnsOptions {
  // Make the netns directory a shared mount (bind-mounting it onto itself
  // first when it is not a mount point), as `ip netns add` does for
  // /run/netns. Then an unmount here also reaches copies of the pin in other
  // mount namespaces (e.g. a process that unshared its mounts after the pin
  // was made), so Remove() really frees the namespace. Tests on temp dirs
  // may turn it off to avoid leaving a mount behind.
  bool make_dir_shared = true;
};

// The real NetnsManager: namespaces pinned at <state_dir>/netns/<id>.
// Needs CAP_SYS_ADMIN.
class PinnedNetnsManager final : public NetnsManager {
 public:
  explicit PinnedNetnsManager(const std::filesystem::path& state_dir, PinnedNetnsOptions options = {});

  absl::StatusOr<std::filesystem::path> Create(std::string_view id) override;
  absl::Status Remove(std::string_view id) override;
  absl::StatusOr<bool> Exists(std::string_view id) const override;
  absl::StatusOr<std::vector<PinnedNetns>> ListPinned() const override;
  std::filesystem::path Path(std::string_view id) const override;

  const std::filesystem::path& dir() const { return dir_; }

 private:
  // Creates the directory and, once, makes it a shared mount.
  absl::Status PrepareDir();

  const std::filesystem::path dir_;
  const PinnedNetnsOptions options_;
  absl::Mutex mu_;
  bool dir_ready_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace kvcri::sandbox
