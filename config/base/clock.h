// Time source seam: real time in the daemon, a controllable clock in tests.
#pragma once

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kvcri::base {

// What code that stamps records, waits for deadlines or paces a loop asks
// instead of calling absl::Now() itself, so tests can move time.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
  // Blocks the calling thread for `d` of this clock's time.
  virtual void SleepFor(absl::Duration d) = 0;
  // Waits up to `timeout` of this clock's time for `n`; true when notified.
  virtual bool WaitFor(absl::Notification& n, absl::Duration timeout) = 0;
};

// Wall-clock time.
class RealClock final : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }
  bool WaitFor(absl::Notification& n, absl::Duration timeout) override {
    return n.WaitForNotificationWithTimeout(timeout);
  }
};

// A clock only tests move. SleepFor advances it (so loops with deadlines end
// at once); Advance moves it from another thread.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(absl::Time start = absl::FromUnixSeconds(1700000000)) : now_(start) {}
  absl::Time Now() override {
    absl::MutexLock l(&mu_);
    return now_;
  }
  void SleepFor(absl::Duration d) override { Advance(d); }
  // A timeout passes at once: the clock jumps by it.
  bool WaitFor(absl::Notification& n, absl::Duration timeout) override {
    if (n.HasBeenNotified()) return true;
    Advance(timeout);
    return n.HasBeenNotified();
  }
  void Advance(absl::Duration d) {
    absl::MutexLock l(&mu_);
    now_ += d;
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::base
