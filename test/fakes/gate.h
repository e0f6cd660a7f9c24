// Gate: a test control that holds a fake's call until the test opens it, to model a slow dependency.
#pragma once

#include "absl/synchronization/mutex.h"

namespace kvcri::testing {

// Open by default. Close() makes every Pass() block until Open(); Waiting()
// tells the test that a call has arrived and is held.
class Gate {
 public:
  void Close() {
    absl::MutexLock l(&mu_);
    open_ = false;
  }
  void Open() {
    absl::MutexLock l(&mu_);
    open_ = true;
  }
  void Pass() {
    absl::MutexLock l(&mu_);
    ++waiting_;
    mu_.Await(absl::Condition(&open_));
    --waiting_;
  }
  // Blocks until at least `n` calls are held.
  void AwaitWaiting(int n) {
    absl::MutexLock l(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return waiting_ >= n; };
    mu_.Await(absl::Condition(&enough));
  }

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kvcri::testing
