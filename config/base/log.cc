// The key=value log line format, the level threshold, and LogIfError/KeepFirstError.
#include "config/base/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "config/base/str.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kvcri::base {
namespace {

// The only process-wide state: the threshold is written once by main().
std::atomic<int>& Threshold() {
  static std::atomic<int> level{static_cast<int>(LogLevel::kInfo)};
  return level;
}

std::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

// Length of the well-formed UTF-8 sequence at the start of `s` (overlongs,
// surrogates and code points past U+10FFFF are not well formed), 0 if none.
size_t Utf8SequenceLength(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto cont = [&](size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
    if (c == 0xED && b(1) > 0x9F) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && b(1) > 0x8F) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

bool NeedsQuotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    // Every byte outside printable ASCII: control characters, DEL and all of
    // UTF-8 (quoted so a reader sees where the value ends).
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || c < 0x21 || c > 0x7e) return true;
  }
  return false;
}

// Values come from CRI callers, guests and registries: nothing in them may
// end the line, move the cursor or start a terminal escape, so every control
// character, DEL and every byte that is not part of well-formed UTF-8 is
// written as an escape; a line stays one line, and one event.
void AppendValue(std::string* out, std::string_view v) {
  if (!NeedsQuotes(v)) {
    out->append(v);
    return;
  }
  out->push_back('"');
  for (size_t i = 0; i < v.size();) {
    const unsigned char c = static_cast<unsigned char>(v[i]);
    if (c >= 0x80) {
      // C1 controls (U+0080..U+009F, 0xC2 0x80..0x9F) act as escapes on some
      // terminals: escaped like C0 ones.
      size_t n = Utf8SequenceLength(v.substr(i));
      bool c1 = n == 2 && c == 0xC2 && static_cast<unsigned char>(v[i + 1]) < 0xA0;
      if (n > 0 && !c1) {
        out->append(v.substr(i, n));
        i += n;
        continue;
      }
    }
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r':
        out->append("\\r");
        break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          out->append("\\x");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out->push_back('"');
}

}  // namespace

void SetLogLevel(LogLevel level) { Threshold().store(static_cast<int>(level)); }

absl::Status ParseLogLevel(std::string_view text, LogLevel* out) {
  if (text == "debug") *out = LogLevel::kDebug;
  else if (text == "info") *out = LogLevel::kInfo;
  else if (text == "warn" || text == "warning") *out = LogLevel::kWarn;
  else if (text == "error") *out = LogLevel::kError;
  else
    return absl::InvalidArgumentError(base::StrCat(
        "log level \"", text, "\" is not one of debug, info, warn, error"));
  return absl::OkStatus();
}

std::string FormatLogLine(LogLevel level, std::string_view msg, LogFields fields) {
  std::string line = base::StrCat(
      "time=", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
      " level=", LevelName(level), " msg=");
  AppendValue(&line, msg);
  for (const auto& [key, value] : fields) {
    line.push_back(' ');
    line.append(key);
    line.push_back('=');
    AppendValue(&line, value);
  }
  line.push_back('\n');
  return line;
}

void Log(LogLevel level, std::string_view msg, LogFields fields) {
  if (static_cast<int>(level) < Threshold().load(std::memory_order_relaxed)) return;
  std::string line = FormatLogLine(level, msg, fields);
  // One write() per line keeps concurrent lines whole.
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

void LogIfError(const absl::Status& status, std::string_view what) {
  if (!status.ok()) LogWarn(what, {{"error", std::string(status.ToString())}});
}

void KeepFirstError(absl::Status* first, absl::Status s) {
  if (s.ok()) return;
  LogWarn("teardown step failed", {{"error", std::string(s.message())}});
  if (first->ok()) *first = std::move(s);
}

}  // namespace kvcri::base
