#pragma once

// Copies each VM's serial console (a file QEMU appends to) into the CRI log
// file kubelet reads, one background thread for all VMs.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
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
  std::function<absl::Time()> now = [] { return absl::Now(); };
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
  // OK when `id` is not followed.
  absl::Status Remove(std::string_view id);
  // Reopens the CRI log by path (kubelet renamed it for rotation).
  absl::Status Reopen(std::string_view id);
  // One pass over every followed console; the thread calls this.
  void PollOnce();

 private:
  struct Entry {
    std::filesystem::path console;
    std::filesystem::path cri_log;
    base::UniqueFd in;
    base::UniqueFd out;
    uint64_t offset = 0;   // console bytes already in the CRI log
    std::string pending;   // read beyond `offset`, not yet written
    absl::Time pending_since = absl::InfinitePast();
    bool write_error_logged = false;
  };

  absl::Status OpenLog(Entry& e);
  // Reads new console bytes and writes complete lines (all of them if
  // `final`). Returns the first error; the offset only moves on success.
  absl::Status Copy(std::string_view id, Entry& e, bool final);
  absl::Status SaveOffset(const Entry& e);
  void Run();

  const ConsoleLogOptions options_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace kvcri::runtime
