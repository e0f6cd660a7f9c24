// Token issue and single-use consumption for the streaming server, with expiry and a bound.
#include "cri/streaming/request_cache.h"

#include <sys/random.h>

#include <cerrno>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace kvcri::streaming {
namespace {

absl::StatusOr<std::string> RandomToken() {
  char raw[kTokenBytes];
  size_t got = 0;
  while (got < sizeof(raw)) {
    ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, "getrandom for a streaming token");
    }
    got += static_cast<size_t>(n);
  }
  // WebSafeBase64Escape leaves out the padding: the token sits in a URL path.
  return absl::WebSafeBase64Escape(absl::string_view(raw, sizeof(raw)));
}

}  // namespace

RequestCache::RequestCache(absl::Duration ttl, size_t max_pending, base::Clock* clock)
    : ttl_(ttl), max_pending_(max_pending), clock_(clock) {}

void RequestCache::SweepExpired(absl::Time now) {
  while (!entries_.empty() && entries_.front().expires <= now) {
    index_.erase(entries_.front().token);
    entries_.pop_front();
  }
}

absl::StatusOr<std::string> RequestCache::Insert(StreamRequest request) {
  absl::StatusOr<std::string> token = RandomToken();
  if (!token.ok()) return token.status();
  absl::MutexLock l(&mu_);
  const absl::Time now = clock_->Now();
  if (entries_.size() >= max_pending_) SweepExpired(now);
  if (entries_.size() >= max_pending_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("streaming: the maximum number of pending requests (", max_pending_, ") is reached"));
  }
  // 192 random bits do not collide in practice; a duplicate would be a broken
  // random source, and refusing is safer than handing out a shared token.
  if (index_.contains(*token)) return absl::InternalError("streaming: token collision");
  entries_.push_back(Entry{*token, std::move(request), now + ttl_});
  index_.emplace(*token, std::prev(entries_.end()));
  return token;
}

std::optional<StreamRequest> RequestCache::Consume(std::string_view token) {
  absl::MutexLock l(&mu_);
  auto it = index_.find(std::string(token));
  if (it == index_.end()) return std::nullopt;
  std::list<Entry>::iterator entry = it->second;
  index_.erase(it);
  const bool expired = entry->expires <= clock_->Now();
  std::optional<StreamRequest> out;
  if (!expired) out = std::move(entry->request);
  entries_.erase(entry);
  return out;
}

size_t RequestCache::PendingForTest() {
  absl::MutexLock l(&mu_);
  return entries_.size();
}

}  // namespace kvcri::streaming
