// Copies each VM's serial console (a file QEMU appends to) into the CRI log file kubelet reads.
#pragma once

// One background thread serves all VMs. The map of followed consoles has its
// own lock, held only to look entries up; each entry's copy runs under that
// entry's lock, so a VM whose CRI log blocks delays nobody else's Add, Remove
// or Reopen.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "config/base/clock.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime {

struct ConsoleLogOptions {
  absl::Duration poll_interval = absl::Milliseconds(100);
  // A line without its newline for this long is written with tag P; the
  // rest follows as P/F lines.
  absl::Duration partial_timeout = absl::Seconds(1);
  // Longer lines are split into P chunks of this size.
  size_t max_line_bytes = 16 * 1024;
  // Bytes read per VM per pass, so one chatty guest cannot stall the others.
  size_t max_read_per_poll = 256 * 1024;
  // Stamps the CRI log lines and times partial lines; null: a RealClock the
  // copier owns. Not owned; must outlive the copier.
  base::Clock* clock = nullptr;
  // False in tests, which call PollOnce() themselves.
  bool start_thread = true;
};

// Formats one CRI log line: "<RFC3339Nano UTC> stdout <F|P> <text>\n".
std::string FormatCriLogLine(absl::Time t, bool partial, std::string_view text);

// The state file next to a console file: <console>.offset.
std::filesystem::path ConsoleOffsetPath(const std::filesystem::path& console);

// Each line of the console becomes a CRI log line stamped with the time it
// was copied (the console has no timestamps); \r is stripped. The consumed
// offset is kept in <console>.offset (rename-atomic after every write to the
// CRI log), so after a daemon restart Add() resumes where the last copy
// stopped, even if the guest wrote more meanwhile. Thread-safe.
class ConsoleLogCopier {
 public:
  explicit ConsoleLogCopier(ConsoleLogOptions options = {});
  ~ConsoleLogCopier();  // stops the thread; saves offsets, keeps partial lines for the next Add()
  ConsoleLogCopier(const ConsoleLogCopier&) = delete;
  ConsoleLogCopier& operator=(const ConsoleLogCopier&) = delete;

  // Starts following `console` into `cri_log` for container `id`, from the
  // saved offset if any. Adding the same paths again is OK.
  absl::Status Add(std::string_view id, const std::filesystem::path& console, const std::filesystem::path& cri_log);
  // Copies what is left (a trailing partial line as F) and stops following.
  // OK when `id` is not followed. Waits for a copy of `id` in progress, not
  // for other VMs'.
  absl::Status Remove(std::string_view id);
  // Reopens the CRI log by path (kubelet renamed it for rotation).
  absl::Status Reopen(std::string_view id);
  // One pass over every followed console; the thread calls this.
  void PollOnce();

 private:
  // One followed console. Shared by the map and whoever is copying it, so
  // the map lock is not needed while its files are read and written.
  struct Entry {
    Entry(std::filesystem::path console, std::filesystem::path cri_log)
        : console(std::move(console)), cri_log(std::move(cri_log)) {}

    const std::filesystem::path console;
    const std::filesystem::path cri_log;
    absl::Mutex mu;  // held across this entry's file I/O; never taken before the map lock
    base::UniqueFd in ABSL_GUARDED_BY(mu);
    base::UniqueFd out ABSL_GUARDED_BY(mu);
    uint64_t offset ABSL_GUARDED_BY(mu) = 0;  // console bytes already in the CRI log
    std::string pending ABSL_GUARDED_BY(mu);  // read beyond `offset`, not yet written
    absl::Time pending_since ABSL_GUARDED_BY(mu) = absl::InfinitePast();
    bool write_error_logged ABSL_GUARDED_BY(mu) = false;
    bool removed ABSL_GUARDED_BY(mu) = false;  // flushed by Remove; copy no more
  };

  std::shared_ptr<Entry> Find(std::string_view id) ABSL_LOCKS_EXCLUDED(mu_);
  static absl::Status OpenLog(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  // Reads new console bytes and writes complete lines (all of them if
  // `final`). Returns the first error; the offset only moves on success.
  absl::Status Copy(std::string_view id, Entry& e, bool final) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  static absl::Status SaveOffset(const Entry& e) ABSL_SHARED_LOCKS_REQUIRED(e.mu);
  void Run();

  const ConsoleLogOptions options_;
  const std::unique_ptr<base::Clock> own_clock_;  // when options_.clock is null
  base::Clock* const clock_;
  absl::Mutex mu_;  // the map only: never held across file I/O
  absl::flat_hash_map<std::string, std::shared_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace kvcri::runtime
