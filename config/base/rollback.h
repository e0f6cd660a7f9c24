#pragma once

#include <functional>
#include <utility>
#include <vector>

namespace kvcri::base {

// Runs registered undo steps in reverse order on destruction unless
// Dismiss() was called. Undos must not throw; they log their own failures.
class Rollback {
 public:
  Rollback() = default;
  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;
  ~Rollback() {
    if (dismissed_) return;
    for (auto it = undos_.rbegin(); it != undos_.rend(); ++it) (*it)();
  }

  void Add(std::function<void()> undo) { undos_.push_back(std::move(undo)); }
  void Dismiss() { dismissed_ = true; }

 private:
  std::vector<std::function<void()>> undos_;
  bool dismissed_ = false;
};

}  // namespace kvcri::base
