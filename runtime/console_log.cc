// ConsoleLogCopier: console file to CRI log lines, saved offsets, the copy thread.
#include "runtime/console_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <utility>
#include <vector>

#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/str.h"

namespace kvcri::runtime {

using base::StrCat;

namespace {

constexpr std::string_view kOffsetVersion = "v1 ";

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

std::string FormatCriLogLine(absl::Time t, bool partial, std::string_view text) {
  return StrCat(base::Sv(absl::FormatTime("%Y-%m-%dT%H:%M:%E9SZ", t, absl::UTCTimeZone())), " stdout ",
                partial ? "P " : "F ", text, "\n");
}

std::filesystem::path ConsoleOffsetPath(const std::filesystem::path& console) {
  return std::filesystem::path(console.string() + ".offset");
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
  // Offsets are saved after every write; pending partial lines are re-read
  // by the next Add() of the same console.
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
  e.out.Reset(::open(e.cri_log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
  if (!e.out.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", e.cri_log.string(), "\""));
  return absl::OkStatus();
}

absl::Status ConsoleLogCopier::SaveOffset(const Entry& e) {
  // Rename-atomic without fsync: a daemon crash leaves the old or the new
  // offset; only a host crash can lose the last second of progress, which
  // then shows as repeated console lines.
  std::filesystem::path path = ConsoleOffsetPath(e.console);
  std::filesystem::path tmp = path.string() + ".tmp";
  base::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", tmp.string(), "\""));
  if (absl::Status s = WriteAll(fd.get(), StrCat(kOffsetVersion, e.offset, "\n"), tmp); !s.ok()) return s;
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) < 0) {
    return absl::ErrnoToStatus(errno, StrCat("rename \"", tmp.string(), "\" to \"", path.string(), "\""));
  }
  return absl::OkStatus();
}

absl::Status ConsoleLogCopier::Copy(std::string_view id, Entry& e, bool final) {
  if (!e.in.valid()) {
    e.in.Reset(::open(e.console.c_str(), O_RDONLY | O_CLOEXEC));
    if (!e.in.valid()) {
      if (errno == ENOENT) return absl::OkStatus();  // QEMU has not created it yet
      return absl::ErrnoToStatus(errno, StrCat("open \"", e.console.string(), "\""));
    }
  }
  struct stat st;
  if (::fstat(e.in.get(), &st) < 0) return absl::ErrnoToStatus(errno, StrCat("fstat \"", e.console.string(), "\""));
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < e.offset + e.pending.size()) {
    // Truncated or replaced under us: start over rather than read garbage.
    base::LogWarn("console file shrank; copying from the start", {{"id", std::string(id)}});
    e.offset = 0;
    e.pending.clear();
  }
  absl::Time now = clock_->Now();
  bool was_empty = e.pending.empty();
  uint64_t pos = e.offset + e.pending.size();
  uint64_t budget = final ? size - pos : std::min<uint64_t>(size - pos, options_.max_read_per_poll);
  while (budget > 0) {
    char buf[64 * 1024];
    ssize_t n = ::pread(e.in.get(), buf, std::min<uint64_t>(budget, sizeof buf), static_cast<off_t>(pos));
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, StrCat("read \"", e.console.string(), "\""));
    }
    if (n == 0) break;
    e.pending.append(buf, static_cast<size_t>(n));
    pos += static_cast<uint64_t>(n);
    budget -= static_cast<uint64_t>(n);
  }
  if (e.pending.empty()) return absl::OkStatus();
  if (was_empty) e.pending_since = now;

  const size_t max = options_.max_line_bytes;
  std::string out;
  size_t consumed = 0;
  std::string_view data = e.pending;
  while (consumed < data.size()) {
    size_t nl = data.find('\n', consumed);
    size_t end = nl == std::string_view::npos ? data.size() : nl;
    while (end - consumed > max) {  // over-long: P chunks
      out += FormatCriLogLine(now, true, data.substr(consumed, max));
      consumed += max;
    }
    std::string_view rest = data.substr(consumed, end - consumed);
    if (nl != std::string_view::npos) {
      out += FormatCriLogLine(now, false, StripTrailingCr(rest));
      consumed = nl + 1;
      continue;
    }
    // No newline yet.
    if (final) {
      if (!StripTrailingCr(rest).empty()) out += FormatCriLogLine(now, false, StripTrailingCr(rest));
      consumed = data.size();
    } else if (now - e.pending_since >= options_.partial_timeout) {
      // Keep a trailing \r back: its \n probably follows.
      std::string_view text = StripTrailingCr(rest);
      if (!text.empty()) {
        out += FormatCriLogLine(now, true, text);
        consumed += text.size();
      }
    }
    break;
  }
  if (consumed == 0) return absl::OkStatus();
  if (!out.empty()) {
    if (!e.out.valid()) {
      if (absl::Status s = OpenLog(e); !s.ok()) return s;
    }
    if (absl::Status s = WriteAll(e.out.get(), out, e.cri_log); !s.ok()) return s;
  }
  e.offset += consumed;
  e.pending.erase(0, consumed);
  e.pending_since = now;
  return SaveOffset(e);
}

absl::Status ConsoleLogCopier::Add(std::string_view id, const std::filesystem::path& console,
                                   const std::filesystem::path& cri_log) {
  if (id.empty()) return absl::InvalidArgumentError("console copy id is empty");
  if (console.empty() || cri_log.empty()) {
    return absl::InvalidArgumentError(StrCat("console copy for \"", id, "\" needs a console and a CRI log path"));
  }
  auto same_or_taken = [&](const Entry& e) {
    if (e.console == console && e.cri_log == cri_log) return absl::OkStatus();
    return absl::AlreadyExistsError(
        StrCat("console of \"", id, "\" is already copied to \"", e.cri_log.string(), "\""));
  };
  if (std::shared_ptr<Entry> e = Find(id)) return same_or_taken(*e);

  // Read the saved offset and open the log without the map lock.
  auto e = std::make_shared<Entry>(console, cri_log);
  uint64_t offset = 0;
  {
    absl::MutexLock el(&e->mu);
    absl::StatusOr<std::string> saved = base::ReadFile(ConsoleOffsetPath(console));
    if (saved.ok()) {
      if (!ParseOffset(*saved, &e->offset)) {
        base::LogWarn("console offset unreadable; copying from the start",
                      {{"id", std::string(id)}, {"path", ConsoleOffsetPath(console).string()}});
        e->offset = 0;
      }
    } else if (!absl::IsNotFound(saved.status())) {
      return saved.status();
    }
    if (absl::Status s = OpenLog(*e); !s.ok()) return s;
    offset = e->offset;
  }
  {
    absl::MutexLock l(&mu_);
    auto [it, inserted] = entries_.try_emplace(std::string(id), e);
    if (!inserted) return same_or_taken(*it->second);  // a concurrent Add won
  }
  base::LogInfo("console log copy started",
                {{"id", std::string(id)}, {"log", cri_log.string()}, {"offset", StrCat(offset)}});
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

}  // namespace kvcri::runtime
