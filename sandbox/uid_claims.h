// UidClaims: node-wide claims on VM uids, for several processes that each allocate from one range (containerd-shim mode).
#pragma once

// The daemon allocates each VM's uid from [security] vm_uid_range against
// its own records. In containerd-shim mode every Pod has its own shim and
// record store, so each allocation also takes a claim file <dir>/<uid>,
// created exclusively, naming the owner: the container's directory. A
// claim whose owner directory is gone (its container removed, or a crash
// between the claim and the directory) is stale once older than
// kStaleAfter and is taken over; so a kill -9 at any moment leaks no uid for
// longer than that. Claims are serialized node-wide by a flock on
// <dir>/.lock (held for a few file operations, never across a slow call).

#include <cstdint>
#include <filesystem>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "config/base/unique_fd.h"

namespace kvcri::sandbox {

class UidClaims {
 public:
  // Long enough for CreateContainer to make the container dir after the claim.
  static constexpr absl::Duration kStaleAfter = absl::Minutes(2);

  // `dir` is created 0700 on the first claim.
  explicit UidClaims(std::filesystem::path dir) : dir_(std::move(dir)) {}

  // True when `uid` is now claimed for `owner_dir` (also when it already
  // was); false when a live owner holds it.
  absl::StatusOr<bool> TryClaim(uint32_t uid, const std::filesystem::path& owner_dir, absl::Time now = absl::Now());
  // Drops the claim when `owner_dir` holds it; OK otherwise.
  absl::Status Release(uint32_t uid, const std::filesystem::path& owner_dir);

  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path ClaimPath(uint32_t uid) const;
  // The node-wide flock on <dir>/.lock, held while the returned fd lives.
  absl::StatusOr<base::UniqueFd> Lock() const;
  const std::filesystem::path dir_;
};

}  // namespace kvcri::sandbox
