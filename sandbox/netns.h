// Pod network namespaces: the NetnsManager seam and PinnedNetnsManager, which pins them in files.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace kvcri::sandbox {

// A file in the netns directory, as found by ListPinned().
struct PinnedNetns {
  std::string id;
  std::filesystem::path path;
  // False for an empty file left by a crash between its creation and the
  // bind mount; Remove() deletes either kind.
  bool mounted = false;
};

// Network namespaces of pod sandboxes, one per sandbox ID, pinned by a bind
// mount so they outlive every process inside them. cri/ tests use a fake.
class NetnsManager {
 public:
  virtual ~NetnsManager() = default;

  // Creates a fresh network namespace pinned at Path(id) and returns that
  // path. InvalidArgument for a malformed ID; AlreadyExists when a namespace
  // is already pinned there.
  virtual absl::StatusOr<std::filesystem::path> Create(std::string_view id) = 0;
  // Unpins and deletes Path(id). OK when nothing is there (idempotent).
  virtual absl::Status Remove(std::string_view id) = 0;
  // True when Path(id) holds a mounted network namespace.
  virtual absl::StatusOr<bool> Exists(std::string_view id) const = 0;
  // Every ID-named file in the directory, so start-up can remove namespaces
  // that no sandbox record references. Empty when the directory is missing.
  virtual absl::StatusOr<std::vector<PinnedNetns>> ListPinned() const = 0;
  virtual std::filesystem::path Path(std::string_view id) const = 0;
};

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
