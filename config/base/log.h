// Structured logging to stderr: one key=value line per event (Abseil 20220623 has no absl/log).
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"

namespace kvcri::base {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

using LogField = std::pair<std::string_view, std::string>;
using LogFields = std::initializer_list<LogField>;

// Sets the minimum level written to stderr. Thread-safe; set once at start-up.
void SetLogLevel(LogLevel level);
// Parses "debug", "info", "warn", "error".
absl::Status ParseLogLevel(std::string_view text, LogLevel* out);

// Writes one line: level=info msg="..." key=value ... (values quoted when needed).
void Log(LogLevel level, std::string_view msg, LogFields fields = {});
inline void LogDebug(std::string_view m, LogFields f = {}) { Log(LogLevel::kDebug, m, f); }
inline void LogInfo(std::string_view m, LogFields f = {}) { Log(LogLevel::kInfo, m, f); }
inline void LogWarn(std::string_view m, LogFields f = {}) { Log(LogLevel::kWarn, m, f); }
inline void LogError(std::string_view m, LogFields f = {}) { Log(LogLevel::kError, m, f); }

// Logs a failed status at warn level with `what` as message; OK is silent.
void LogIfError(const absl::Status& status, std::string_view what = "cleanup failed");

// For teardown that goes on past failures: logs a failed `s` and keeps it in
// `*first` unless an earlier error is there already.
void KeepFirstError(absl::Status* first, absl::Status s);

// Formats the fields as key=value pairs (exposed for tests).
std::string FormatLogLine(LogLevel level, std::string_view msg, LogFields fields);

}  // namespace kvcri::base
