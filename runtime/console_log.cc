// ConsoleLogCopier: console file to CRI log lines in fixed buffers, dropped-byte accounting, saved offsets, the thread.
#include "runtime/console_log.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>
#include <vector>

#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/str.h"

namespace kvcri::runtime {

using base::StrCat;

namespace {

constexpr std::string_view kOffsetVersion = "v1 ";
// Console bytes read per pread and CRI log bytes per write: the fixed buffers
// a copy works in, whatever the backlog.
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kOutBuffer = 64 * 1024;
// Copied console bytes are deallocated in steps of at least this much.
constexpr uint64_t kPunchStep = 64 * 1024;
constexpr uint64_t kPunchAlign = 4096;

std::string_view StripTrailingCr(std::string_view s) {
  while (!s.empty() && s.back() == '\r') s.remove_suffix(1);
  return s;
}

absl::Status WriteAll(int fd, std::string_view data, const std::filesystem::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, StrCat("write \"", path.string(), "\""));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Parses "v1 <offset>\n".
bool ParseOffset(std::string_view text, uint64_t* out) {
  if (text.substr(0, kOffsetVersion.size()) != kOffsetVersion) return false;
  text.remove_prefix(kOffsetVersion.size());
  while (!text.empty() && (text.back() == '\n')) text.remove_suffix(1);
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

}  // namespace

std::string FormatCriLogLine(absl::Time t, bool partial, std::string_view text, std::string_view stream) {
  return StrCat(base::Sv(absl::FormatTime("%Y-%m-%dT%H:%M:%E9SZ", t, absl::UTCTimeZone())), " ", stream, " ",
                partial ? "P " : "F ", text, "\n");
}

ConsoleLineSplitter::ConsoleLineSplitter(size_t max_line_bytes, bool raw, std::string_view stream)
    : max_line_bytes_(std::max<size_t>(1, max_line_bytes)), raw_(raw), stream_(stream) {
  if (!raw_) held_.reserve(max_line_bytes_);
}

void ConsoleLineSplitter::Emit(absl::Time t, bool partial, std::string_view text, std::string* out) {
  if (t != prefix_time_) {
    prefix_ = StrCat(base::Sv(absl::FormatTime("%Y-%m-%dT%H:%M:%E9SZ", t, absl::UTCTimeZone())), " ", stream_, " ");
    prefix_time_ = t;
  }
  out->append(prefix_);
  out->append(partial ? "P " : "F ");
  out->append(text);
  out->push_back('\n');
}

size_t ConsoleLineSplitter::Feed(std::string_view data, absl::Time t, std::string* out, size_t out_limit) {
  if (raw_) {
    // As many bytes as fit (at least one line's worth into an empty buffer).
    const size_t room = out->size() >= out_limit ? (out->empty() ? max_line_bytes_ : 0) : out_limit - out->size();
    const size_t n = std::min(data.size(), room);
    out->append(data.data(), n);
    return n;
  }
  // An upper bound of the line's size in *out; the first line always fits.
  auto fits = [&](size_t text_len) { return out->empty() || out->size() + 64 + text_len <= out_limit; };
  size_t i = 0;
  while (i < data.size()) {
    const size_t room = max_line_bytes_ - held_.size();
    if (room == 0) {
      // A full line: its newline ends it as F, anything else makes it a P chunk.
      if (!fits(held_.size())) break;
      bool newline = data[i] == '\n';
      Emit(t, !newline, newline ? StripTrailingCr(held_) : std::string_view(held_), out);
      held_.clear();
      if (newline) ++i;
      continue;
    }
    const size_t span = std::min(room, data.size() - i);
    const void* nl = std::memchr(data.data() + i, '\n', span);
    if (nl == nullptr) {
      held_.append(data.data() + i, span);
      i += span;
      continue;
    }
    const size_t j = static_cast<size_t>(static_cast<const char*>(nl) - data.data());
    if (!fits(held_.size() + (j - i))) break;
    if (held_.empty()) {
      Emit(t, false, StripTrailingCr(data.substr(i, j - i)), out);
    } else {
      held_.append(data.data() + i, j - i);
      Emit(t, false, StripTrailingCr(held_), out);
      held_.clear();
    }
    i = j + 1;
  }
  return i;
}

void ConsoleLineSplitter::FlushHeld(absl::Time t, bool final, std::string* out) {
  std::string_view text = StripTrailingCr(held_);
  if (!text.empty()) Emit(t, !final, text, out);
  if (final) {
    held_.clear();
  } else {
    held_.erase(0, text.size());  // a trailing \r stays: its \n probably follows
  }
}

std::filesystem::path ConsoleOffsetPath(const std::filesystem::path& console) {
  return std::filesystem::path(console.string() + ".offset");
}

namespace {

std::filesystem::path OffsetFileOf(const ConsoleTarget& t) {
  return t.offset_file.empty() ? ConsoleOffsetPath(t.console) : t.offset_file;
}

// open(2) of the console; a guest-written one through no symlink at all
// (the guest may have swapped any directory of the share for one).
int OpenConsole(const ConsoleTarget& t, int flags) {
  if (!t.guest_written) return ::open(t.console.c_str(), flags);
  open_how how{};
  how.flags = static_cast<uint64_t>(flags) | O_NONBLOCK;  // a FIFO planted there must not block
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, t.console.c_str(), &how, sizeof how));
  if (fd < 0) return fd;
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    errno = EINVAL;
    return -1;
  }
  return fd;
}

}  // namespace

absl::StatusOr<base::UniqueFd> OpenCriLog(const std::filesystem::path& log_dir, const std::filesystem::path& rel) {
  const std::filesystem::path full = log_dir / rel;
  if (log_dir.empty() || rel.empty() || rel.is_absolute()) {
    return absl::InvalidArgumentError(StrCat(
        "CRI log path \"", rel.string(), "\" must be relative to the Pod's log directory \"", log_dir.string(), "\""));
  }
  std::vector<std::string> parts;
  for (const std::filesystem::path& p : rel) {
    std::string part = p.string();
    if (part == "..") {
      return absl::InvalidArgumentError(StrCat("CRI log path \"", rel.string(), "\" leaves the Pod's log directory"));
    }
    if (part.empty() || part == ".") continue;
    parts.push_back(std::move(part));
  }
  if (parts.empty() || rel.filename().empty()) {
    return absl::InvalidArgumentError(StrCat("CRI log path \"", rel.string(), "\" names no file"));
  }
  // kubelet made the Pod's log directory; below it nothing is followed, so a
  // symlink planted there cannot point our root-owned appends elsewhere.
  base::UniqueFd dir(::open(log_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid() && errno == ENOENT) {
    // kubelet makes it; crictl does not (containerd makes it then, so do we).
    if (absl::Status s = base::MakeDirs(log_dir, 0755); !s.ok()) return s;
    dir.Reset(::open(log_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  if (!dir.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", log_dir.string(), "\""));
  std::filesystem::path at = log_dir;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    at /= parts[i];
    const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int fd = ::openat(dir.get(), parts[i].c_str(), flags);
    if (fd < 0 && errno == ENOENT) {
      if (::mkdirat(dir.get(), parts[i].c_str(), 0755) < 0 && errno != EEXIST) {
        return absl::ErrnoToStatus(errno, StrCat("mkdir \"", at.string(), "\""));
      }
      fd = ::openat(dir.get(), parts[i].c_str(), flags);
    }
    if (fd < 0) {
      if (errno == ELOOP || errno == ENOTDIR) {
        return absl::FailedPreconditionError(
            StrCat("CRI log directory \"", at.string(), "\" is a symlink or not a directory; refusing to follow it"));
      }
      return absl::ErrnoToStatus(errno, StrCat("open \"", at.string(), "\""));
    }
    dir.Reset(fd);
  }
  // O_NONBLOCK: opening a FIFO nobody reads must not hang the caller.
  base::UniqueFd fd(::openat(dir.get(), parts.back().c_str(),
                             O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK, 0640));
  if (!fd.valid()) {
    if (errno == ELOOP) {
      return absl::FailedPreconditionError(
          StrCat("CRI log \"", full.string(), "\" is a symlink; refusing to follow it"));
    }
    return absl::ErrnoToStatus(errno, StrCat("open \"", full.string(), "\""));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return absl::ErrnoToStatus(errno, StrCat("fstat \"", full.string(), "\""));
  if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) {
    return absl::FailedPreconditionError(StrCat("CRI log \"", full.string(), "\" is not a regular file"));
  }
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK) < 0) {
    return absl::ErrnoToStatus(errno, StrCat("fcntl \"", full.string(), "\""));
  }
  return fd;
}

ConsoleLogCopier::ConsoleLogCopier(ConsoleLogOptions options)
    : options_(std::move(options)),
      own_clock_(options_.clock == nullptr ? std::make_unique<base::RealClock>() : nullptr),
      clock_(options_.clock == nullptr ? own_clock_.get() : options_.clock) {
  if (options_.start_thread) thread_ = std::thread([this] { Run(); });
}

ConsoleLogCopier::~ConsoleLogCopier() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
  // Offsets are saved after every pass that wrote; held partial lines are
  // re-read by the next Add() of the same console.
}

void ConsoleLogCopier::Run() {
  while (!stop_.WaitForNotificationWithTimeout(options_.poll_interval)) PollOnce();
}

void ConsoleLogCopier::PollOnce() {
  // Snapshot under the map lock, copy without it: a slow CRI log (a full
  // pipe, a stalled disk) holds up its own entry only.
  std::vector<std::pair<std::string, std::shared_ptr<Entry>>> snapshot;
  {
    absl::MutexLock l(&mu_);
    snapshot.reserve(entries_.size());
    for (const auto& [id, e] : entries_) snapshot.emplace_back(id, e);
  }
  for (auto& [id, e] : snapshot) {
    absl::MutexLock l(&e->mu);
    if (e->removed) continue;
    absl::Status s = Copy(id, *e, /*final=*/false);
    if (!s.ok() && !e->write_error_logged) {
      base::LogWarn("console log copy failed", {{"id", id}, {"error", std::string(s.message())}});
      e->write_error_logged = true;  // once until it works again
    } else if (s.ok()) {
      e->write_error_logged = false;
    }
  }
}

std::shared_ptr<ConsoleLogCopier::Entry> ConsoleLogCopier::Find(std::string_view id) {
  absl::MutexLock l(&mu_);
  auto it = entries_.find(std::string(id));
  return it == entries_.end() ? nullptr : it->second;
}

absl::Status ConsoleLogCopier::OpenLog(Entry& e) {
  absl::StatusOr<base::UniqueFd> fd = OpenCriLog(e.target.log_dir, e.target.log_rel);
  if (!fd.ok()) return fd.status();
  e.out = *std::move(fd);
  return absl::OkStatus();
}

absl::Status ConsoleLogCopier::SaveOffset(Entry& e) {
  // Rename-atomic without fsync: a daemon crash leaves the old or the new
  // offset; only a host crash can lose the last second of progress, which
  // then shows as repeated console lines.
  std::filesystem::path path = OffsetFileOf(e.target);
  std::filesystem::path tmp = path.string() + ".tmp";
  base::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", tmp.string(), "\""));
  if (absl::Status s = WriteAll(fd.get(), StrCat(kOffsetVersion, e.offset, "\n"), tmp); !s.ok()) return s;
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) < 0) {
    return absl::ErrnoToStatus(errno, StrCat("rename \"", tmp.string(), "\" to \"", path.string(), "\""));
  }
  e.saved_offset = e.offset;
  return absl::OkStatus();
}

absl::Status ConsoleLogCopier::WriteLog(Entry& e, std::string_view data) {
  if (!e.out.valid()) {
    if (absl::Status s = OpenLog(e); !s.ok()) return s;
  }
  struct stat st;
  off_t before = ::fstat(e.out.get(), &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : -1;
  absl::Status s = WriteAll(e.out.get(), data, e.target.log_dir / e.target.log_rel);
  if (!s.ok()) {
    // No torn line: the same lines are written again from the console file
    // once writing works (disk space back).
    if (before >= 0 && ::ftruncate(e.out.get(), before) < 0) {
      base::LogWarn("CRI log: a torn line could not be cut off",
                    {{"log", (e.target.log_dir / e.target.log_rel).string()}, {"error", std::strerror(errno)}});
    }
    return s;
  }
  log_bytes_.fetch_add(data.size(), std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status ConsoleLogCopier::Drop(std::string_view id, Entry& e, uint64_t to, absl::Time now) {
  // Counted and committed whether or not the marker can be written: the
  // console file must not grow while the CRI log is unwritable.
  const uint64_t n = to - e.offset;
  e.splitter.Reset();
  e.offset = to;
  // A cut right after a newline is a line start already.
  char before = '\n';
  // Raw output has no lines to resynchronise on: the marker line is enough.
  e.resync_left = !options_.raw && e.in.valid() && to > 0 &&
                          ::pread(e.in.get(), &before, 1, static_cast<off_t>(to - 1)) == 1 && before != '\n'
                      ? options_.max_line_bytes
                      : 0;
  e.dropped += n;
  e.dropped_unlogged += n;
  dropped_bytes_.fetch_add(n, std::memory_order_relaxed);
  if (now - e.drop_logged_at >= options_.drop_log_interval) {
    base::LogWarn("console output dropped", {{"id", std::string(id)},
                                             {"bytes", StrCat(e.dropped_unlogged)},
                                             {"total_bytes", StrCat(e.dropped)},
                                             {"max_backlog_bytes", StrCat(options_.max_backlog_bytes)}});
    e.dropped_unlogged = 0;
    e.drop_logged_at = now;
  }
  const std::string marker = StrCat("kubevirt-cri: ", n, " bytes of console output dropped (more than ",
                                    options_.max_backlog_bytes, " bytes were waiting to be copied)");
  // Raw: on a line of its own, whatever the guest's last byte was.
  return WriteLog(e, options_.raw ? StrCat("\r\n", marker, "\r\n")
                                  : FormatCriLogLine(now, false, marker, e.target.stream));
}

void ConsoleLogCopier::Punch(std::string_view id, Entry& e) {
  if (!e.in_writable || !e.in.valid()) return;
  const uint64_t to = e.offset / kPunchAlign * kPunchAlign;
  if (to < e.punched + kPunchStep) return;
  // QEMU appends (O_APPEND) at the end of the file, which KEEP_SIZE leaves
  // where it is; offsets stay valid, only the copied blocks are freed.
  if (::fallocate(e.in.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(e.punched),
                  static_cast<off_t>(to - e.punched)) < 0) {
    base::LogWarn("console file: copied bytes cannot be deallocated; its disk use is not bounded",
                  {{"id", std::string(id)}, {"path", e.target.console.string()}, {"error", std::strerror(errno)}});
    e.in_writable = false;  // once
    return;
  }
  e.punched = to;
}

void ConsoleLogCopier::BoundQemuLog(std::string_view id, Entry& e) {
  if (options_.max_qemu_log_bytes == 0 || e.target.qemu_log.empty()) return;
  if (!e.qemu_log.valid()) {
    e.qemu_log.Reset(::open(e.target.qemu_log.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!e.qemu_log.valid()) return;  // not written yet, or gone with the domain
  }
  struct stat st;
  if (::fstat(e.qemu_log.get(), &st) < 0 || !S_ISREG(st.st_mode)) {
    e.qemu_log.Reset();
    return;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size <= options_.max_qemu_log_bytes) return;
  // libvirt and QEMU append (O_APPEND), so their next write lands at the new end.
  if (::ftruncate(e.qemu_log.get(), 0) < 0) {
    base::LogWarn("QEMU log could not be truncated",
                  {{"id", std::string(id)}, {"path", e.target.qemu_log.string()}, {"error", std::strerror(errno)}});
    return;
  }
  qemu_log_truncated_bytes_.fetch_add(size, std::memory_order_relaxed);
  WriteAll(e.qemu_log.get(),
           StrCat("kubevirt-cri: ", size, " bytes of QEMU output truncated at ",
                  base::Sv(absl::FormatTime(absl::RFC3339_full, clock_->Now(), absl::UTCTimeZone())), " (over ",
                  options_.max_qemu_log_bytes, " bytes)\n"),
           e.target.qemu_log)
      .IgnoreError();  // the note is a courtesy; the daemon log says it too
  base::LogWarn("QEMU log truncated", {{"id", std::string(id)},
                                       {"path", e.target.qemu_log.string()},
                                       {"bytes", StrCat(size)},
                                       {"max_bytes", StrCat(options_.max_qemu_log_bytes)}});
}

absl::Status ConsoleLogCopier::Copy(std::string_view id, Entry& e, bool final) {
  BoundQemuLog(id, e);
  if (!e.in.valid()) {
    // Read-write so that copied bytes can be punched out; read-only where
    // that is refused (the copy still works, the file is not bounded).
    int fd = OpenConsole(e.target, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    e.in_writable = fd >= 0;
    if (fd < 0 && (errno == EACCES || errno == EPERM || errno == EROFS)) {
      fd = OpenConsole(e.target, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    }
    if (fd < 0) {
      if (errno == ENOENT) return absl::OkStatus();  // QEMU has not created it yet
      return absl::ErrnoToStatus(errno, StrCat("open \"", e.target.console.string(), "\""));
    }
    e.in.Reset(fd);
  }
  struct stat st;
  if (::fstat(e.in.get(), &st) < 0) {
    return absl::ErrnoToStatus(errno, StrCat("fstat \"", e.target.console.string(), "\""));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < e.offset + e.splitter.held()) {
    // Truncated or replaced under us: start over rather than read garbage.
    base::LogWarn("console file shrank; copying from the start", {{"id", std::string(id)}});
    e.offset = 0;
    e.punched = 0;
    e.resync_left = 0;
    e.splitter.Reset();
  }
  const absl::Time now = clock_->Now();
  absl::Status status;
  uint64_t pos = e.offset + e.splitter.held();  // the next console byte to read
  if (size - pos > options_.max_backlog_bytes) {
    // Keep the newest max_backlog_bytes: what the guest says now matters more.
    status = Drop(id, e, size - options_.max_backlog_bytes, now);
    pos = e.offset;
  }
  // A final copy reads at most the backlog bound; it may write more than a
  // pass, but not without bound.
  const uint64_t read_budget = final ? options_.max_backlog_bytes : options_.max_read_per_poll;
  const uint64_t write_budget = final ? 8 * options_.max_write_per_poll : options_.max_write_per_poll;
  uint64_t read = 0, written = 0;
  uint64_t commit = e.offset;  // where e.offset goes once `out` is written
  std::string out;
  out.reserve(kOutBuffer + options_.max_line_bytes + 128);
  auto flush = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu) -> bool {
    if (out.empty()) return true;
    status = WriteLog(e, out);
    if (!status.ok()) {
      e.splitter.Reset();  // re-read from e.offset next time
      return false;
    }
    written += out.size();
    out.clear();
    copied_bytes_.fetch_add(commit - e.offset, std::memory_order_relaxed);
    e.offset = commit;
    return true;
  };

  std::vector<char> buf(kReadChunk);
  bool budget_left = true;
  while (status.ok() && budget_left && pos < size && read < read_budget) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>({buf.size(), read_budget - read, size - pos}));
    ssize_t n = ::pread(e.in.get(), buf.data(), want, static_cast<off_t>(pos));
    if (n < 0) {
      if (errno == EINTR) continue;
      status = absl::ErrnoToStatus(errno, StrCat("read \"", e.target.console.string(), "\""));
      break;
    }
    if (n == 0) break;
    read += static_cast<uint64_t>(n);
    std::string_view data(buf.data(), static_cast<size_t>(n));
    if (e.resync_left > 0 && out.empty() && e.splitter.held() == 0) {
      // The tail of the line a drop cut: dropped as well, up to its newline.
      size_t nl = data.substr(0, static_cast<size_t>(std::min<uint64_t>(e.resync_left, data.size()))).find('\n');
      size_t skip = nl == std::string_view::npos ? std::min<uint64_t>(e.resync_left, data.size()) : nl + 1;
      e.resync_left = nl == std::string_view::npos ? e.resync_left - skip : 0;
      data.remove_prefix(skip);
      pos += skip;
      e.offset = commit = pos;
      e.dropped += skip;
      dropped_bytes_.fetch_add(skip, std::memory_order_relaxed);
    }
    while (!data.empty()) {
      if (written + out.size() >= write_budget) {
        budget_left = false;  // the rest of this chunk is read again next pass
        break;
      }
      const size_t out_before = out.size();
      const bool had_held = e.splitter.held() > 0;
      const size_t k = e.splitter.Feed(data, now, &out, kOutBuffer);
      if (e.splitter.held() > 0 && (!had_held || out.size() != out_before)) e.held_since = now;
      data.remove_prefix(k);
      pos += k;
      commit = pos - e.splitter.held();
      if (!data.empty() && !flush()) break;  // `out` is full
    }
  }
  if (status.ok()) {
    if (final) {
      if (pos < size) {
        // Over the final copy's budget: flush what is formatted, count the rest.
        if (flush()) status = Drop(id, e, size, now);
        pos = size;
      } else {
        e.splitter.FlushHeld(now, /*final=*/true, &out);
        commit = pos;
      }
    } else if (pos >= size && e.splitter.held() > 0 && now - e.held_since >= options_.partial_timeout) {
      e.splitter.FlushHeld(now, /*final=*/false, &out);
      commit = pos - e.splitter.held();
      e.held_since = now;
    }
    if (status.ok()) flush();
  }
  if (e.offset != e.saved_offset) {
    absl::Status saved = SaveOffset(e);
    if (status.ok()) status = saved;
  }
  Punch(id, e);
  return status;
}

absl::Status ConsoleLogCopier::Add(std::string_view id, const std::filesystem::path& console,
                                   const std::filesystem::path& cri_log) {
  return Add(id, ConsoleTarget{console, cri_log.parent_path(), cri_log.filename(), {}});
}

absl::Status ConsoleLogCopier::Add(std::string_view id, const ConsoleTarget& target) {
  if (id.empty()) return absl::InvalidArgumentError("console copy id is empty");
  if (target.console.empty() || target.log_dir.empty() || target.log_rel.empty()) {
    return absl::InvalidArgumentError(StrCat("console copy for \"", id, "\" needs a console and a CRI log path"));
  }
  auto same_or_taken = [&](const Entry& e) {
    if (e.target.console == target.console && e.target.log_dir / e.target.log_rel == target.log_dir / target.log_rel) {
      return absl::OkStatus();
    }
    return absl::AlreadyExistsError(StrCat("console of \"", id, "\" is already copied to \"",
                                           (e.target.log_dir / e.target.log_rel).string(), "\""));
  };
  if (std::shared_ptr<Entry> e = Find(id)) return same_or_taken(*e);

  // Read the saved offset and open the log without the map lock.
  auto e = std::make_shared<Entry>(target, options_.max_line_bytes, options_.raw);
  uint64_t offset = 0;
  {
    absl::MutexLock el(&e->mu);
    absl::StatusOr<std::string> saved = base::ReadFile(OffsetFileOf(target));
    if (saved.ok()) {
      if (!ParseOffset(*saved, &e->offset)) {
        base::LogWarn("console offset unreadable; copying from the start",
                      {{"id", std::string(id)}, {"path", OffsetFileOf(target).string()}});
        e->offset = 0;
      }
    } else if (!absl::IsNotFound(saved.status())) {
      return saved.status();
    }
    e->saved_offset = e->offset;
    if (absl::Status s = OpenLog(*e); !s.ok()) return s;
    offset = e->offset;
  }
  {
    absl::MutexLock l(&mu_);
    auto [it, inserted] = entries_.try_emplace(std::string(id), e);
    if (!inserted) return same_or_taken(*it->second);  // a concurrent Add won
  }
  base::LogInfo(
      "console log copy started",
      {{"id", std::string(id)}, {"log", (target.log_dir / target.log_rel).string()}, {"offset", StrCat(offset)}});
  return absl::OkStatus();
}

absl::Status ConsoleLogCopier::Remove(std::string_view id) {
  std::shared_ptr<Entry> e = Find(id);
  if (e == nullptr) return absl::OkStatus();
  absl::Status s;
  {
    // Waits for a copy of this entry in progress; the final copy then starts
    // where it stopped. The entry stays in the map meanwhile, so an Add of
    // the same ID sees it rather than racing it for the offset file.
    absl::MutexLock el(&e->mu);
    if (e->removed) return absl::OkStatus();  // a concurrent Remove flushed it
    s = Copy(id, *e, /*final=*/true);
    e->removed = true;
    e->in.Reset();
    e->out.Reset();
    e->qemu_log.Reset();
  }
  absl::MutexLock l(&mu_);
  if (auto it = entries_.find(std::string(id)); it != entries_.end() && it->second == e) entries_.erase(it);
  return s;
}

absl::Status ConsoleLogCopier::Reopen(std::string_view id) {
  std::shared_ptr<Entry> e = Find(id);
  auto not_copied = [&] { return absl::NotFoundError(StrCat("console of container \"", id, "\" is not copied")); };
  if (e == nullptr) return not_copied();
  absl::MutexLock el(&e->mu);
  if (e->removed) return not_copied();
  return OpenLog(*e);
}

ConsoleCounters ConsoleLogCopier::Counters() const {
  ConsoleCounters c;
  c.copied_bytes = copied_bytes_.load(std::memory_order_relaxed);
  c.dropped_bytes = dropped_bytes_.load(std::memory_order_relaxed);
  c.log_bytes = log_bytes_.load(std::memory_order_relaxed);
  c.qemu_log_truncated_bytes = qemu_log_truncated_bytes_.load(std::memory_order_relaxed);
  return c;
}

absl::StatusOr<uint64_t> ConsoleLogCopier::DroppedBytes(std::string_view id) {
  std::shared_ptr<Entry> e = Find(id);
  if (e == nullptr) return absl::NotFoundError(StrCat("console of container \"", id, "\" is not copied"));
  absl::MutexLock el(&e->mu);
  return e->dropped;
}

}  // namespace kvcri::runtime
