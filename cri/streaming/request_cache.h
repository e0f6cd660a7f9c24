// Single-use, expiring tokens for streaming requests (the URL path part of /exec/<token> and friends).
#pragma once

// Mirrors kubelet's requestCache: a token is random (getrandom), URL-safe
// base64, used once and valid for a fixed TTL. At most max_pending tokens are
// held; a full cache first drops expired ones (oldest first), and when that
// frees nothing an insert fails with ResourceExhausted.

#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/base/clock.h"
#include "cri/streaming/stream_io.h"

namespace kvcri::streaming {

using StreamRequest = std::variant<ExecSpec, AttachSpec, PortForwardSpec>;

// Random bytes per token (kubelet uses 8; 24 gives 192 bits, 32 characters).
inline constexpr size_t kTokenBytes = 24;

class RequestCache {
 public:
  // `clock` is not owned and must outlive the cache.
  RequestCache(absl::Duration ttl, size_t max_pending, base::Clock* clock);

  // A new token for `request`; ResourceExhausted when max_pending unexpired
  // tokens are held, Internal when the kernel gives no random bytes.
  absl::StatusOr<std::string> Insert(StreamRequest request);
  // The request `token` stands for, removing it; nullopt when the token is
  // unknown, already used or expired.
  std::optional<StreamRequest> Consume(std::string_view token);
  size_t PendingForTest();

 private:
  struct Entry {
    std::string token;
    StreamRequest request;
    absl::Time expires;
  };
  void SweepExpired(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration ttl_;
  const size_t max_pending_;
  base::Clock* const clock_;
  absl::Mutex mu_;
  // Oldest first; with one TTL for all, also the order of expiry.
  std::list<Entry> entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::list<Entry>::iterator> index_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::streaming
