// IDs of VM sandboxes and containers the router removed, remembered for a while so kubelet's follow-up calls stay ours.
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/base/clock.h"

namespace kvcri::cri {

// Once our store forgets a removed sandbox or container, its ID would belong
// to the upstream (SideResolver: "not ours" means "theirs"). kubelet keeps
// asking about a removed Pod for a while (Stop/Remove again, Status, List by
// ID); with the upstream down those calls would fail UNAVAILABLE instead of
// getting the answer CRI gives for an unknown ID. A tombstone keeps the ID
// ours for `ttl` after its removal.
//
// Memory only: after a restart of the daemon the removed IDs belong to the
// upstream again. Bounded: beyond `max_entries` the oldest tombstone goes
// first. Exact IDs only; prefixes resolve against live records alone.
class Tombstones {
 public:
  static constexpr absl::Duration kDefaultTtl = absl::Minutes(10);
  static constexpr size_t kDefaultMaxEntries = 4096;

  explicit Tombstones(base::Clock* clock, absl::Duration ttl = kDefaultTtl, size_t max_entries = kDefaultMaxEntries);
  Tombstones(const Tombstones&) = delete;
  Tombstones& operator=(const Tombstones&) = delete;

  // Remembers `id` as removed now; an ID already remembered starts a new TTL.
  void Add(std::string_view id);
  // Whether `id` (a full ID) was removed less than `ttl` ago.
  bool Contains(std::string_view id) const;
  // Tombstones not yet expired.
  size_t size() const;

 private:
  struct Entry {
    std::string id;
    absl::Time removed_at;
  };
  // Drops expired entries and, beyond max_entries_, the oldest ones.
  void Trim(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  base::Clock* const clock_;
  const absl::Duration ttl_;
  const size_t max_entries_;
  mutable absl::Mutex mu_;
  // Oldest first: Add appends, so expiry and eviction pop from the front.
  std::list<Entry> order_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::list<Entry>::iterator, std::less<>> by_id_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::cri
