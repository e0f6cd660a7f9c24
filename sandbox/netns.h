// Pod network namespaces: the NetnsManager seam (the real one is PinnedNetnsManager, sandbox/pinned_netns.h).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvcri::sandbox {

// A file in the netns directory, as found by ListPinned().
struct PinnedNetns {
  std::string id;
  std::filesystem::path path;
  // False for an empty file left by a crash between its creation and the
  // bind mount; Remove() deletes either kind.
  bool mounted = false;
};

// True when `path` is a network namespace (a file on nsfs: a pinned bind
// mount or /proc/<pid>/ns/net); false when it is missing or anything else.
absl::StatusOr<bool> IsNetworkNamespace(const std::filesystem::path& path);

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

}  // namespace kvcri::sandbox
