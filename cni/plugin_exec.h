// Process execution for CNI plugins: ChildProcess, RunProcess, FindPlugin and ExecPlugin.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "config/base/unique_fd.h"

namespace kvcri::cni {

// One child process that is its own process group leader. Move-only; when it
// goes out of scope un-reaped, the whole group gets SIGKILL and the leader is
// reaped, so no early return leaks a process (or a plugin's helpers).
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)) {}
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { KillAndReap(); }

  // posix_spawn()s `binary` with `argv` (argv[0] included) and `env`;
  // stdin/stdout/stderr become the given fds (which the child gets as 0/1/2).
  static absl::StatusOr<ChildProcess> Spawn(
      const std::filesystem::path& binary, const std::vector<std::string>& argv,
      const std::vector<std::string>& env, int stdin_fd, int stdout_fd,
      int stderr_fd);

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  // Non-blocking reap. Returns the wait status once the child has exited.
  absl::StatusOr<std::optional<int>> TryWait();
  // SIGKILLs the process group and reaps the leader; no-op once reaped.
  void KillAndReap();

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
};

struct ProcessOutput {
  int exit_code = -1;  // -1 when killed by a signal
  int term_signal = 0;
  // Each is kept up to kMaxProcessOutput; the rest is read and dropped.
  std::string stdout_data;
  std::string stderr_data;
  bool stdout_truncated = false;
};

// A plugin's result is a few KiB; one printing more than this is refused
// rather than held in the daemon's memory.
constexpr size_t kMaxProcessOutput = 4 << 20;

// Runs `binary`, feeds it `stdin_data`, collects stdout/stderr and waits.
// DeadlineExceeded (the process group killed and reaped) when it takes
// longer than `timeout`. A non-zero exit is not an error here.
absl::StatusOr<ProcessOutput> RunProcess(const std::filesystem::path& binary,
                                         const std::vector<std::string>& argv,
                                         const std::vector<std::string>& env,
                                         std::string_view stdin_data,
                                         absl::Duration timeout);

// The first executable file named `type` in `dirs`, like CNI_PATH lookup.
// InvalidArgument for a type that is not a plain file name; FailedPrecondition
// naming the plugin and every directory searched when none has it.
absl::StatusOr<std::filesystem::path> FindPlugin(
    std::string_view type, const std::vector<std::filesystem::path>& dirs);

// One CNI plugin invocation.
struct PluginCall {
  std::string plugin;  // the plugin's "type", for messages
  std::filesystem::path binary;
  std::string command;           // ADD, DEL, CHECK, VERSION
  std::vector<std::string> env;  // complete environment, CNI_* included
  std::string stdin_data;
  absl::Duration timeout = absl::Minutes(1);
};

// Runs the plugin. On exit 0 returns its stdout. On failure the status names
// the plugin and command and carries the CNI error object's code, msg and
// details (or stderr when stdout holds no error object): code 11 ("try again
// later") maps to Unavailable, every other plugin failure to Internal, a
// timeout to DeadlineExceeded. The CNI code is also attached as a payload,
// see CniErrorCode().
absl::StatusOr<std::string> ExecPlugin(const PluginCall& call);

// The CNI error code a failed ExecPlugin() reported, if any.
std::optional<int> CniErrorCode(const absl::Status& status);

// Well-known CNI error codes (spec 1.0.0, "Error").
inline constexpr int kCniErrIncompatibleVersion = 1;
inline constexpr int kCniErrUnsupportedField = 2;
inline constexpr int kCniErrUnknownContainer = 3;
inline constexpr int kCniErrInvalidEnv = 4;
inline constexpr int kCniErrIo = 5;
inline constexpr int kCniErrDecode = 6;
inline constexpr int kCniErrInvalidConfig = 7;
inline constexpr int kCniErrTryAgainLater = 11;

}  // namespace kvcri::cni
