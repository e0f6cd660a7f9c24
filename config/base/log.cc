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

bool NeedsQuotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || c < 0x21) return true;
  }
  return false;
}

void AppendValue(std::string* out, std::string_view v) {
  if (!NeedsQuotes(v)) {
    out->append(v);
    return;
  }
  out->push_back('"');
  for (char c : v) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\t': out->append("\\t"); break;
      default: out->push_back(c);
    }
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
