// Removed-ID memory of the router: TTL expiry and a size bound, oldest first.
#include "cri/tombstones.h"

#include <algorithm>

namespace kvcri::cri {

Tombstones::Tombstones(base::Clock* clock, absl::Duration ttl, size_t max_entries)
    : clock_(clock), ttl_(ttl), max_entries_(std::max<size_t>(max_entries, 1)) {}

void Tombstones::Add(std::string_view id) {
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  if (auto it = by_id_.find(id); it != by_id_.end()) {
    order_.erase(it->second);
    by_id_.erase(it);
  }
  order_.push_back(Entry{std::string(id), now});
  by_id_.emplace(order_.back().id, std::prev(order_.end()));
  Trim(now);
}

bool Tombstones::Contains(std::string_view id) const {
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  auto it = by_id_.find(id);
  return it != by_id_.end() && now - it->second->removed_at < ttl_;
}

size_t Tombstones::size() const {
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  return std::count_if(order_.begin(), order_.end(), [&](const Entry& e) { return now - e.removed_at < ttl_; });
}

void Tombstones::Trim(absl::Time now) {
  while (!order_.empty() && (order_.size() > max_entries_ || now - order_.front().removed_at >= ttl_)) {
    by_id_.erase(order_.front().id);
    order_.pop_front();
  }
}

}  // namespace kvcri::cri
