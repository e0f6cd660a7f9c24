// OpTracker: per-ID shared/exclusive marks with bounded waits.
#include "cri/op_tracker.h"

#include "config/base/str.h"

namespace kvcri::cri {

using base::StrCat;

OpTracker::Hold& OpTracker::Hold::operator=(Hold&& o) noexcept {
  if (this != &o) {
    Release();
    tracker_ = o.tracker_;
    id_ = std::move(o.id_);
    mode_ = o.mode_;
    o.tracker_ = nullptr;
  }
  return *this;
}

void OpTracker::Hold::Release() {
  if (tracker_ == nullptr) return;
  tracker_->Release(id_, mode_);
  tracker_ = nullptr;
}

absl::StatusOr<OpTracker::Hold> OpTracker::Acquire(std::string_view id_view, Mode mode, std::string_view op,
                                                   absl::Duration wait) {
  std::string id(id_view);
  absl::MutexLock l(&mu_);
  auto free = [this, &id, mode]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = marks_.find(id);
    if (it == marks_.end()) return true;
    if (it->second.exclusive) return false;
    return mode == Mode::kShared || it->second.shared == 0;
  };
  // Await releases mu_ while it waits: other IDs are never held up.
  if (!mu_.AwaitWithTimeout(absl::Condition(&free), wait)) {
    const Marks& m = marks_[id];
    return absl::FailedPreconditionError(StrCat("\"", id, "\" is busy: ", m.exclusive ? m.exclusive_op : m.shared_op,
                                                " is in progress; ", op, " gave up after ",
                                                absl::FormatDuration(wait), " (retry)"));
  }
  Marks& m = marks_[id];
  if (mode == Mode::kExclusive) {
    m.exclusive = true;
    m.exclusive_op = std::string(op);
  } else {
    ++m.shared;
    m.shared_op = std::string(op);
  }
  return Hold(this, std::move(id), mode);
}

void OpTracker::Release(const std::string& id, Mode mode) {
  absl::MutexLock l(&mu_);
  auto it = marks_.find(id);
  if (it == marks_.end()) return;
  if (mode == Mode::kExclusive) {
    it->second.exclusive = false;
  } else {
    --it->second.shared;
  }
  if (!it->second.exclusive && it->second.shared == 0) marks_.erase(it);
}

std::string OpTracker::Busy(std::string_view id) const {
  absl::MutexLock l(&mu_);
  auto it = marks_.find(std::string(id));
  if (it == marks_.end()) return "";
  if (it->second.exclusive) return it->second.exclusive_op;
  return it->second.shared_op;
}

}  // namespace kvcri::cri
