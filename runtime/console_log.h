// Copies each VM's serial console (a file QEMU appends to) into the CRI log file kubelet reads, in bounded memory.
#pragma once

// One background thread serves all VMs. The map of followed consoles has its
// own lock, held only to look entries up; each entry's copy runs under that
// entry's lock, so a VM whose CRI log blocks delays nobody else's Add, Remove
// or Reopen.
//
// Bounds (ConsoleLogOptions): per VM and pass, at most max_read_per_poll
// console bytes are read and max_write_per_poll CRI log bytes written, through
// fixed buffers; the unfinished line held in memory is at most max_line_bytes.
// Console bytes waiting to be copied beyond max_backlog_bytes (a guest that
// writes faster than we copy, or a backlog from while the daemon was down) are
// dropped, oldest first, counted, and marked by one line in the CRI log. What
// has been copied or dropped is deallocated from the console file (hole punch),
// so its disk use stays near max_backlog_bytes while the daemon runs.

#include <atomic>
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
#include "absl/status/statusor.h"
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
  // Console bytes read per VM per pass, so one chatty guest cannot stall the others.
  size_t max_read_per_poll = 256 * 1024;
  // CRI log bytes written per VM per pass: a newline is one console byte but
  // a ~40-byte CRI log line, so input alone does not bound the work.
  size_t max_write_per_poll = 1024 * 1024;
  // Console bytes allowed to wait for the copy; older ones are dropped.
  uint64_t max_backlog_bytes = 4 * 1024 * 1024;
  // libvirt's per-domain QEMU log (QEMU's stdout/stderr) is emptied when it
  // grows past this; 0: never.
  uint64_t max_qemu_log_bytes = 1024 * 1024;
  // At most one "dropped" warning per VM per this interval in the daemon log.
  absl::Duration drop_log_interval = absl::Minutes(1);
  // Stamps the CRI log lines and times partial lines; null: a RealClock the
  // copier owns. Not owned; must outlive the copier.
  base::Clock* clock = nullptr;
  // False in tests, which call PollOnce() themselves.
  bool start_thread = true;
  // Bytes go to the target as the guest wrote them: no CRI log lines, no
  // timestamps, no line splitting, \r kept. For containerd-shim mode, where
  // the target is the task's stdout FIFO and containerd's CRI writes the log
  // format itself. The bounds (backlog, per-pass budgets) still hold; a drop
  // is marked by one plain text line.
  bool raw = false;
};

// Formats one CRI log line: "<RFC3339Nano UTC> <stream> <F|P> <text>\n".
std::string FormatCriLogLine(absl::Time t, bool partial, std::string_view text, std::string_view stream = "stdout");

// Console bytes to CRI log lines, one chunk at a time, holding at most
// max_line_bytes of an unfinished line. Pure (no I/O, no clock, no
// allocation beyond the held line and `out`), so it is tested and fuzzed
// alone. A line ends at \n (tag F, trailing \r stripped); a line longer than
// max_line_bytes goes out in P chunks of exactly that size.
class ConsoleLineSplitter {
 public:
  // `raw`: Feed passes bytes through unchanged and holds none (ConsoleLogOptions::raw).
  // `stream`: the CRI log's stream tag ("stdout", or "stderr" for a micro-VM
  // container's error output).
  explicit ConsoleLineSplitter(size_t max_line_bytes, bool raw = false, std::string_view stream = "stdout");

  // Consumes a prefix of `data` and appends the lines it completes, stamped
  // `t`, to `*out`, stopping before `*out` would grow past `out_limit` (one
  // line always fits when `*out` is empty). Returns the bytes consumed; the
  // bytes of an unfinished line count as consumed and are held.
  size_t Feed(std::string_view data, absl::Time t, std::string* out, size_t out_limit);
  // Writes the held line out: `final` as F (the console ended), otherwise as
  // P with a trailing \r kept back (its \n probably follows). Nothing when
  // there is nothing printable to write.
  void FlushHeld(absl::Time t, bool final, std::string* out);
  size_t held() const { return held_.size(); }
  void Reset() { held_.clear(); }

 private:
  void Emit(absl::Time t, bool partial, std::string_view text, std::string* out);

  const size_t max_line_bytes_;
  const bool raw_;
  const std::string stream_;
  std::string held_;
  absl::Time prefix_time_ = absl::InfinitePast();  // FormatTime once per time, not per line
  std::string prefix_;
};

// The state file next to a console file: <console>.offset.
std::filesystem::path ConsoleOffsetPath(const std::filesystem::path& console);

// Opens (creating) the CRI log `rel` below the Pod's log directory `log_dir`
// for appending, without following symlinks: `log_dir` is kubelet's and
// trusted (created if missing); every component of `rel` is opened with O_NOFOLLOW (missing
// directories are created 0755), and `rel` must be relative without "..".
// The file must be a regular file (or a FIFO); InvalidArgument/
// FailedPrecondition naming the path otherwise.
absl::StatusOr<base::UniqueFd> OpenCriLog(const std::filesystem::path& log_dir, const std::filesystem::path& rel);

// What one followed console is copied to.
struct ConsoleTarget {
  std::filesystem::path console;  // the file QEMU appends ttyS0 to
  std::filesystem::path log_dir;  // the Pod's log directory
  std::filesystem::path log_rel;  // the CRI log, relative to log_dir (OpenCriLog)
  // libvirt's per-domain QEMU log to keep under max_qemu_log_bytes; empty: none.
  std::filesystem::path qemu_log;
  // The CRI log's stream tag: a VM's console is stdout; a micro-VM
  // container's stderr file is followed as a second target with "stderr",
  // into the same CRI log.
  std::string stream = "stdout";
  // Where the consumed offset is kept; empty: <console>.offset.
  std::filesystem::path offset_file;
  // The console is a file the guest wrote through a share (a micro-VM
  // container's output): opened without following any symlink on its path,
  // and only if it is a regular file. Its offset_file must be outside the share.
  bool guest_written = false;
};

// Counters for the metrics endpoint; they only grow.
struct ConsoleCounters {
  uint64_t copied_bytes = 0;   // console bytes written to CRI logs
  uint64_t dropped_bytes = 0;  // console bytes dropped over the backlog bound
  uint64_t log_bytes = 0;      // CRI log bytes written
  uint64_t qemu_log_truncated_bytes = 0;
};

// Each line of the console becomes a CRI log line stamped with the time it
// was copied (the console has no timestamps); \r is stripped. The consumed
// offset is kept in <console>.offset (rename-atomic after each pass that wrote
// to the CRI log), so after a daemon restart Add() resumes where the last copy
// stopped; a kill -9 between a write and the save repeats at most one pass of
// lines. Thread-safe.
class ConsoleLogCopier {
 public:
  explicit ConsoleLogCopier(ConsoleLogOptions options = {});
  ~ConsoleLogCopier();  // stops the thread; saves offsets, keeps partial lines for the next Add()
  ConsoleLogCopier(const ConsoleLogCopier&) = delete;
  ConsoleLogCopier& operator=(const ConsoleLogCopier&) = delete;

  // Starts following `target.console` for container `id`, from the saved
  // offset if any. Reads nothing of the console: the backlog is copied by
  // the thread, within the bounds. Adding the same paths again is OK.
  absl::Status Add(std::string_view id, const ConsoleTarget& target);
  // The same with the CRI log given as one path (its directory is trusted).
  absl::Status Add(std::string_view id, const std::filesystem::path& console, const std::filesystem::path& cri_log);
  // Copies what is left, within the bounds (a trailing partial line as F),
  // and stops following. OK when `id` is not followed. Waits for a copy of
  // `id` in progress, not for other VMs'.
  absl::Status Remove(std::string_view id);
  // Reopens the CRI log by path (kubelet renamed it for rotation).
  absl::Status Reopen(std::string_view id);
  // One pass over every followed console; the thread calls this.
  void PollOnce();

  // Totals over every console followed since construction.
  ConsoleCounters Counters() const;
  // Console bytes of `id` dropped since it was added; NotFound when not followed.
  absl::StatusOr<uint64_t> DroppedBytes(std::string_view id);

 private:
  // One followed console. Shared by the map and whoever is copying it, so
  // the map lock is not needed while its files are read and written.
  struct Entry {
    Entry(ConsoleTarget target, size_t max_line_bytes, bool raw)
        : target(std::move(target)), splitter(max_line_bytes, raw, this->target.stream) {}

    const ConsoleTarget target;
    absl::Mutex mu;  // held across this entry's file I/O; never taken before the map lock
    base::UniqueFd in ABSL_GUARDED_BY(mu);
    bool in_writable ABSL_GUARDED_BY(mu) = false;  // opened O_RDWR: copied ranges can be punched out
    base::UniqueFd out ABSL_GUARDED_BY(mu);
    base::UniqueFd qemu_log ABSL_GUARDED_BY(mu);
    uint64_t offset ABSL_GUARDED_BY(mu) = 0;  // console bytes already in the CRI log or dropped
    uint64_t saved_offset ABSL_GUARDED_BY(mu) = 0;
    uint64_t punched ABSL_GUARDED_BY(mu) = 0;  // console bytes below this are deallocated
    // The unfinished line: console bytes [offset, offset + held()).
    ConsoleLineSplitter splitter ABSL_GUARDED_BY(mu);
    absl::Time held_since ABSL_GUARDED_BY(mu) = absl::InfinitePast();
    // After a drop: the rest of the line cut there is dropped too (at most
    // max_line_bytes of it), so the CRI log resumes at a line start.
    uint64_t resync_left ABSL_GUARDED_BY(mu) = 0;
    uint64_t dropped ABSL_GUARDED_BY(mu) = 0;
    uint64_t dropped_unlogged ABSL_GUARDED_BY(mu) = 0;
    absl::Time drop_logged_at ABSL_GUARDED_BY(mu) = absl::InfinitePast();
    bool write_error_logged ABSL_GUARDED_BY(mu) = false;
    bool removed ABSL_GUARDED_BY(mu) = false;  // flushed by Remove; copy no more
  };

  std::shared_ptr<Entry> Find(std::string_view id) ABSL_LOCKS_EXCLUDED(mu_);
  static absl::Status OpenLog(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  // Reads new console bytes and writes complete lines (and the tail if
  // `final`), within the bounds. Returns the first error; the offset only
  // moves past what was written (or dropped).
  absl::Status Copy(std::string_view id, Entry& e, bool final) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  // Drops console bytes [e.offset, to): counts them and writes the marker line.
  absl::Status Drop(std::string_view id, Entry& e, uint64_t to, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  absl::Status WriteLog(Entry& e, std::string_view data) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  void Punch(std::string_view id, Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  void BoundQemuLog(std::string_view id, Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  static absl::Status SaveOffset(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  void Run();

  const ConsoleLogOptions options_;
  const std::unique_ptr<base::Clock> own_clock_;  // when options_.clock is null
  base::Clock* const clock_;
  absl::Mutex mu_;  // the map only: never held across file I/O
  absl::flat_hash_map<std::string, std::shared_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> copied_bytes_{0};
  std::atomic<uint64_t> dropped_bytes_{0};
  std::atomic<uint64_t> log_bytes_{0};
  std::atomic<uint64_t> qemu_log_truncated_bytes_{0};
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace kvcri::runtime
