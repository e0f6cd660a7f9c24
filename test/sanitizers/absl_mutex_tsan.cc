// TSan build only: tells ThreadSanitizer about Debian's absl::Mutex, CondVar and Notification, built without it.
//
// libabsl_synchronization.so is compiled without -fsanitize=thread, so TSan
// sees none of the ordering its locks give and reports every guarded member
// as a race. This file, linked into the TSan test binary, defines the lock
// entry points our code calls: each calls the library's own (found with
// dlsym(RTLD_NEXT)) and adds the happens-before edge TSan would otherwise
// miss (release before unlocking or waiting, acquire after locking or
// waking). Races between threads that do not synchronize are still found;
// lock-order (deadlock) reports are not, since TSan sees no lock.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

#include <string_view>

#define KVCRI_STR2(x) #x
#define KVCRI_STR(x) KVCRI_STR2(x)
// The names below are mangled for this inline namespace (Debian 12's absl 20220623).
static_assert(std::string_view(KVCRI_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME)) == "debian3",
              "absl's inline namespace changed: update the mangled names in absl_mutex_tsan.cc");

namespace {

template <typename Fn>
Fn Real(const char* mangled) {
  void* f = dlsym(RTLD_NEXT, mangled);
  if (f == nullptr) {
    std::fprintf(stderr, "absl_mutex_tsan: %s is not in libabsl_synchronization: %s\n", mangled, dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(f);
}

// A condition may be evaluated inside the library by a thread that is not
// yet known (to TSan) to hold the lock; every release also goes to this
// token and every evaluation acquires it. Over-synchronizes condition
// functions only.
char condition_token;

void Release(const void* mu) {
  __tsan_release(const_cast<void*>(mu));
  __tsan_release(&condition_token);
}
// Also acquires what a condition evaluated by absl (on whichever thread held
// the lock then) read, so those reads happen before this holder's writes.
void Acquire(const void* mu) {
  __tsan_acquire(const_cast<void*>(mu));
  __tsan_acquire(&condition_token);
}

// absl's deadlock detector keeps one global lock graph under a spin lock of
// its own inside the uninstrumented library, so TSan sees two threads that
// lock different mutexes write that graph unsynchronised (a false report,
// seen in ImageStoreTest.ConcurrentImportsFromTwoInstancesLoseNothing). TSan
// finds lock-order inversions itself: the detector is off in this build.
const bool kAbslDeadlockDetectionOff = [] {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return true;
}();

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static auto real = Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex4LockEv");
  real(this);
  Acquire(this);
}
void Mutex::Unlock() {
  static auto real = Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex6UnlockEv");
  Release(this);
  real(this);
}
bool Mutex::TryLock() {
  static auto real = Real<bool (*)(Mutex*)>("_ZN4absl7debian35Mutex7TryLockEv");
  bool locked = real(this);
  if (locked) Acquire(this);
  return locked;
}
void Mutex::ReaderLock() {
  static auto real = Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex10ReaderLockEv");
  real(this);
  Acquire(this);
}
void Mutex::ReaderUnlock() {
  static auto real = Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex12ReaderUnlockEv");
  Release(this);
  real(this);
}
void Mutex::LockWhen(const Condition& c) {
  static auto real = Real<void (*)(Mutex*, const Condition&)>("_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  real(this, c);
  Acquire(this);
}
bool Mutex::LockWhenWithTimeout(const Condition& c, absl::Duration d) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  bool met = real(this, c, d);
  Acquire(this);
  return met;
}
// Await releases the lock while it waits and holds it again on return.
void Mutex::Await(const Condition& c) {
  static auto real = Real<void (*)(Mutex*, const Condition&)>("_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  Release(this);
  real(this, c);
  Acquire(this);
}
bool Mutex::AwaitWithTimeout(const Condition& c, absl::Duration d) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Release(this);
  bool met = real(this, c, d);
  Acquire(this);
  return met;
}
bool Mutex::AwaitWithDeadline(const Condition& c, absl::Time t) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Release(this);
  bool met = real(this, c, t);
  Acquire(this);
  return met;
}
bool Condition::Eval() const {
  static auto real = Real<bool (*)(const Condition*)>("_ZNK4absl7debian39Condition4EvalEv");
  __tsan_acquire(&condition_token);
  bool met = real(this);
  __tsan_release(&condition_token);  // the next lock holder's writes come after these reads
  return met;
}

void CondVar::Wait(Mutex* mu) {
  static auto real = Real<void (*)(CondVar*, Mutex*)>("_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  Release(mu);
  real(this, mu);
  Acquire(mu);
}
bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration d) {
  static auto real = Real<bool (*)(CondVar*, Mutex*, absl::Duration)>(
      "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Release(mu);
  bool timed_out = real(this, mu, d);
  Acquire(mu);
  return timed_out;
}
bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time t) {
  static auto real = Real<bool (*)(CondVar*, Mutex*, absl::Time)>(
      "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  Release(mu);
  bool timed_out = real(this, mu, t);
  Acquire(mu);
  return timed_out;
}

// Notify() stores notified_yet_ inside the library; HasBeenNotified() loads
// it in our (instrumented) code, so the release also goes to that atomic's
// address, which follows the Mutex member.
void Notification::Notify() {
  static auto real = Real<void (*)(Notification*)>("_ZN4absl7debian312Notification6NotifyEv");
  static_assert(sizeof(Notification) == 2 * sizeof(Mutex), "layout: Mutex mutex_, std::atomic<bool> notified_yet_");
  Release(this);
  __tsan_release(reinterpret_cast<char*>(this) + sizeof(Mutex));
  real(this);
}
void Notification::WaitForNotification() const {
  static auto real = Real<void (*)(const Notification*)>("_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(this);
  Acquire(this);
}
bool Notification::WaitForNotificationWithTimeout(absl::Duration d) const {
  static auto real = Real<bool (*)(const Notification*, absl::Duration)>(
      "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  bool notified = real(this, d);
  if (notified) Acquire(this);
  return notified;
}
bool Notification::WaitForNotificationWithDeadline(absl::Time t) const {
  static auto real = Real<bool (*)(const Notification*, absl::Time)>(
      "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  bool notified = real(this, t);
  if (notified) Acquire(this);
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
