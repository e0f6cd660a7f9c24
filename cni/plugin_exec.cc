// Running CNI plugins: spawn in a process group, feed stdin, collect output, kill on timeout.
#include "cni/plugin_exec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>

#include "absl/strings/cord.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::cni {
namespace fs = std::filesystem;
using base::StrCat;
using base::UniqueFd;

namespace {

constexpr char kCodePayload[] = "type.kvcri/cni.error_code";
// How long we keep draining pipes after the plugin exited, in case a helper
// it left behind still holds them open.
constexpr absl::Duration kDrainGrace = absl::Seconds(1);
// Enough of stderr to explain a failure without flooding the log.
constexpr size_t kMaxStderrInMessage = 2048;

// Blocks SIGPIPE on this thread while we write to a plugin that may exit
// before reading its stdin; a pending SIGPIPE is discarded on the way out.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~ScopedSigpipeBlock() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  sigset_t old_;
};

absl::Status MakePipe(UniqueFd* read_end, UniqueFd* write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "pipe2");
  read_end->Reset(fds[0]);
  write_end->Reset(fds[1]);
  return absl::OkStatus();
}

absl::Status SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return absl::ErrnoToStatus(errno, "fcntl O_NONBLOCK");
  }
  return absl::OkStatus();
}

// Reads what is available; closes `fd` at EOF or on a hard error. Keeps at
// most kMaxProcessOutput bytes and drops the rest (still reading it, so the
// child never blocks on a full pipe), setting `*truncated`.
void Drain(UniqueFd* fd, std::string* out, bool* truncated) {
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd->get(), buf, sizeof buf);
    if (n > 0) {
      size_t keep = std::min(static_cast<size_t>(n), kMaxProcessOutput - out->size());
      out->append(buf, keep);
      if (keep < static_cast<size_t>(n)) *truncated = true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    fd->Reset();  // EOF or error
    return;
  }
}

std::string Truncated(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.remove_suffix(1);
  if (s.size() <= kMaxStderrInMessage) return std::string(s);
  return StrCat(s.substr(0, kMaxStderrInMessage), "...");
}

}  // namespace

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    KillAndReap();
    pid_ = std::exchange(other.pid_, -1);
  }
  return *this;
}

absl::StatusOr<ChildProcess> ChildProcess::Spawn(
    const fs::path& binary, const std::vector<std::string>& argv,
    const std::vector<std::string>& env, int stdin_fd, int stdout_fd,
    int stderr_fd) {
  std::vector<char*> c_argv;
  for (const std::string& a : argv)
    c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  std::vector<char*> c_env;
  for (const std::string& e : env)
    c_env.push_back(const_cast<char*>(e.c_str()));
  c_env.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
  posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2);
#if defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  // Whatever fd the daemon opened without O_CLOEXEC stays out of plugins.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
#endif
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Own process group, so a timeout kills the plugin's helpers (iptables...)
  // too.
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, dfl;
  sigemptyset(&none);
  sigemptyset(&dfl);
  sigaddset(&dfl, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &dfl);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
                                      POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, binary.c_str(), &actions, &attr, c_argv.data(),
                         c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0)
    return absl::ErrnoToStatus(rc,
                               StrCat("posix_spawn \"", binary.string(), "\""));
  return ChildProcess(pid);
}

absl::StatusOr<std::optional<int>> ChildProcess::TryWait() {
  if (pid_ <= 0)
    return absl::FailedPreconditionError("child process already reaped");
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return absl::ErrnoToStatus(errno, StrCat("waitpid ", pid_));
  if (r == 0) return std::optional<int>();
  // The group may still hold helpers; they die with the leader's group.
  ::kill(-pid_, SIGKILL);
  pid_ = -1;
  return std::optional<int>(status);
}

void ChildProcess::KillAndReap() {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  int status;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

absl::StatusOr<ProcessOutput> RunProcess(const fs::path& binary,
                                         const std::vector<std::string>& argv,
                                         const std::vector<std::string>& env,
                                         std::string_view stdin_data,
                                         absl::Duration timeout) {
  ScopedSigpipeBlock no_sigpipe;
  UniqueFd in_r, in_w, out_r, out_w, err_r, err_w;
  RETURN_IF_ERROR(MakePipe(&in_r, &in_w));
  RETURN_IF_ERROR(MakePipe(&out_r, &out_w));
  RETURN_IF_ERROR(MakePipe(&err_r, &err_w));
  RETURN_IF_ERROR(SetNonBlocking(in_w.get()));
  RETURN_IF_ERROR(SetNonBlocking(out_r.get()));
  RETURN_IF_ERROR(SetNonBlocking(err_r.get()));

  const absl::Time deadline = absl::Now() + timeout;
  ASSIGN_OR_RETURN(ChildProcess child,
                   ChildProcess::Spawn(binary, argv, env, in_r.get(),
                                       out_w.get(), err_w.get()));
  in_r.Reset();
  out_w.Reset();
  err_w.Reset();

  ProcessOutput out;
  size_t written = 0;
  if (stdin_data.empty()) in_w.Reset();
  std::optional<int> wait_status;
  absl::Time exited_at;
  for (;;) {
    if (!wait_status) {
      ASSIGN_OR_RETURN(wait_status, child.TryWait());
      if (wait_status) exited_at = absl::Now();
    }
    bool pipes_open = out_r.valid() || err_r.valid();
    if (wait_status && (!pipes_open || absl::Now() - exited_at > kDrainGrace))
      break;
    absl::Duration remaining = deadline - absl::Now();
    if (remaining <= absl::ZeroDuration()) {
      child.KillAndReap();
      return absl::DeadlineExceededError(
          StrCat("\"", binary.string(), "\" did not finish within ",
                 absl::FormatDuration(timeout), " and was killed"));
    }
    struct pollfd pfds[3];
    int n = 0;
    int in_idx = -1, out_idx = -1, err_idx = -1;
    if (in_w.valid()) {
      in_idx = n;
      pfds[n++] = {in_w.get(), POLLOUT, 0};
    }
    if (out_r.valid()) {
      out_idx = n;
      pfds[n++] = {out_r.get(), POLLIN, 0};
    }
    if (err_r.valid()) {
      err_idx = n;
      pfds[n++] = {err_r.get(), POLLIN, 0};
    }
    // Short ticks: the child's exit is noticed by waitpid, not by poll.
    int tick_ms = static_cast<int>(
        std::clamp<int64_t>(absl::ToInt64Milliseconds(remaining), 1, 20));
    int r = ::poll(pfds, n, tick_ms);
    if (r < 0 && errno != EINTR)
      return absl::ErrnoToStatus(errno, "poll plugin pipes");
    if (r <= 0) continue;
    if (in_idx >= 0 && pfds[in_idx].revents) {
      ssize_t w = ::write(in_w.get(), stdin_data.data() + written,
                          stdin_data.size() - written);
      if (w > 0) written += static_cast<size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) ||
          written == stdin_data.size()) {
        in_w.Reset();  // done, or the plugin stopped reading (EPIPE)
      }
    }
    bool stderr_truncated = false;  // only its head goes into messages anyway
    if (out_idx >= 0 && pfds[out_idx].revents) Drain(&out_r, &out.stdout_data, &out.stdout_truncated);
    if (err_idx >= 0 && pfds[err_idx].revents) Drain(&err_r, &out.stderr_data, &stderr_truncated);
  }
  if (WIFEXITED(*wait_status)) {
    out.exit_code = WEXITSTATUS(*wait_status);
  } else if (WIFSIGNALED(*wait_status)) {
    out.term_signal = WTERMSIG(*wait_status);
  }
  return out;
}

absl::StatusOr<fs::path> FindPlugin(std::string_view type,
                                    const std::vector<fs::path>& dirs) {
  if (type.empty() || type == "." || type == ".." ||
      type.find('/') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        StrCat("CNI plugin type \"", type, "\" is not a plain file name"));
  }
  std::string searched;
  for (const fs::path& dir : dirs) {
    if (!searched.empty()) searched += ", ";
    searched += StrCat("\"", dir.string(), "\"");
    fs::path candidate = dir / std::string(type);
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return absl::FailedPreconditionError(StrCat(
      "CNI plugin \"", type, "\" not found in bin dirs [", searched, "]"));
}

absl::StatusOr<std::string> ExecPlugin(const PluginCall& call) {
  absl::StatusOr<ProcessOutput> run =
      RunProcess(call.binary, {call.binary.string()}, call.env, call.stdin_data,
                 call.timeout);
  if (!run.ok()) {
    return absl::Status(
        run.status().code(),
        StrCat("CNI plugin \"", call.plugin, "\" ", call.command, ": ",
               base::Sv(run.status().message())));
  }
  if (run->exit_code == 0 && run->stdout_truncated) {
    return absl::InvalidArgumentError(StrCat("CNI plugin \"", call.plugin, "\" ", call.command, " printed more than ",
                                             kMaxProcessOutput, " bytes on stdout"));
  }
  if (run->exit_code == 0) {
    if (!run->stderr_data.empty()) {
      base::LogDebug("CNI plugin stderr",
                     {{"plugin", call.plugin},
                      {"command", call.command},
                      {"stderr", Truncated(run->stderr_data)}});
    }
    return std::move(run->stdout_data);
  }
  // The spec's error object on stdout: {cniVersion, code, msg, details}.
  nlohmann::json err = nlohmann::json::parse(run->stdout_data, nullptr, false);
  std::optional<int> code;
  std::string msg, details;
  if (!err.is_discarded() && err.is_object() && err.contains("code") &&
      err["code"].is_number_integer()) {
    code = err["code"].get<int>();
    if (err.contains("msg") && err["msg"].is_string())
      msg = err["msg"].get<std::string>();
    if (err.contains("details") && err["details"].is_string()) {
      details = err["details"].get<std::string>();
    }
  }
  std::string text;
  if (code) {
    text = StrCat("CNI plugin \"", call.plugin, "\" ", call.command,
                  " failed: code=", *code, " msg=\"", msg, "\"");
    if (!details.empty()) text += StrCat(" details=\"", details, "\"");
  } else {
    std::string how = run->term_signal != 0
                          ? StrCat("was killed by signal ", run->term_signal)
                          : StrCat("exited with status ", run->exit_code);
    std::string said = Truncated(run->stderr_data.empty() ? run->stdout_data
                                                          : run->stderr_data);
    text = StrCat("CNI plugin \"", call.plugin, "\" ", call.command, " ", how,
                  ": \"", said, "\"");
  }
  absl::Status status = (code && *code == kCniErrTryAgainLater)
                            ? absl::UnavailableError(text)
                            : absl::InternalError(text);
  if (code) status.SetPayload(kCodePayload, absl::Cord(StrCat(*code)));
  return status;
}

std::optional<int> CniErrorCode(const absl::Status& status) {
  auto payload = status.GetPayload(kCodePayload);
  if (!payload) return std::nullopt;
  std::string s(*payload);
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace kvcri::cni
