// ContainerRunner (container_runner.h): crun in the Pod micro-VM driven through kvcri-agent, state from the bundle files.
#include "runtime/microvm/container_runner.h"

#include <sys/stat.h>

#include <csignal>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "config/base/file_util.h"
#include "config/base/status_macros.h"
#include "runtime/microvm/runtime_spec.h"

namespace kvcri::runtime::microvm {
namespace {

// Of crun's stderr, what an error message carries.
constexpr size_t kMaxErrText = 512;
// An exit file is two short lines; anything longer is not one.
constexpr size_t kMaxExitFileBytes = 128;
constexpr absl::Duration kExitPoll = absl::Milliseconds(50);
constexpr absl::Duration kCrunCallTimeout = absl::Seconds(30);

}  // namespace

Bundle BundleFor(const std::filesystem::path& share, const std::string& id) {
  return Bundle{id, share / id, absl::StrCat(kGuestShareDir, "/", id)};
}

absl::Status ContainerRunner::WriteSpec(const Bundle& b, const nlohmann::json& spec) const {
  return base::WriteFileAtomic(b.host_dir / "config.json", spec.dump(), 0644);
}

absl::StatusOr<uint32_t> ContainerRunner::Start(const Bundle& b) const {
  ASSIGN_OR_RETURN(std::optional<agent::ExitFile> exited, Exited(b));
  if (exited) {
    return absl::FailedPreconditionError(
        absl::StrCat("container \"", b.id, "\" has run already (exit code ", exited->code(), ")"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<agent::AgentClient> client, agent_());
  agent::SpawnOptions o;
  // crun writes the pid file once the container's process exists: the host
  // sees it on the share without an exec into the guest (WaitStarted).
  o.argv = {"crun", "run", "--pid-file", b.guest_dir + "/pid", "--bundle", b.guest_dir, b.id};
  o.cwd = b.guest_dir;
  o.stdout_path = b.guest_dir + "/stdout";
  o.stderr_path = b.guest_dir + "/stderr";
  o.exit_path = b.guest_dir + "/exit";
  o.oom_cgroup = GuestCgroupParent(b.id);
  return client->Spawn(o);
}

absl::StatusOr<std::optional<agent::ExitFile>> ContainerRunner::Exited(const Bundle& b) const {
  absl::StatusOr<std::string> text =
      base::ReadFileAtMost(b.host_dir / "exit", kMaxExitFileBytes, /*follow_symlinks=*/false);
  if (absl::IsNotFound(text.status())) return std::nullopt;
  if (!text.ok()) return absl::DataLossError(absl::StrCat("exit file of container \"", b.id, "\": ", text.status().message()));
  agent::ExitFile e;
  if (!agent::ParseExitFile(*text, &e)) {
    return absl::DataLossError(absl::StrCat("exit file of container \"", b.id, "\" is not one the agent writes"));
  }
  return e;
}

absl::StatusOr<int> ContainerRunner::RunInGuest(const std::vector<std::string>& argv, absl::Duration timeout,
                                                std::string* err) const {
  ASSIGN_OR_RETURN(std::shared_ptr<agent::AgentClient> client, agent_());
  agent::ExecOptions o;
  o.argv = argv;
  ASSIGN_OR_RETURN(std::unique_ptr<agent::Process> p, client->Exec(o));
  char buf[1024];
  for (agent::Output which : {agent::Output::kStdout, agent::Output::kStderr}) {
    for (;;) {
      ASSIGN_OR_RETURN(size_t n, p->Read(which, buf, sizeof buf));
      if (n == 0) break;
      if (which == agent::Output::kStderr && err->size() < kMaxErrText) {
        err->append(buf, std::min(n, kMaxErrText - err->size()));
      }
    }
  }
  return p->Wait(absl::Now() + timeout);
}

absl::Status ContainerRunner::WaitStarted(const Bundle& b, absl::Time deadline) const {
  for (;;) {
    ASSIGN_OR_RETURN(std::optional<agent::ExitFile> exited, Exited(b));
    if (exited) return absl::OkStatus();
    // Only whether it is there: its content is the guest's.
    struct stat st;
    if (::lstat((b.host_dir / "pid").c_str(), &st) == 0) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("container \"", b.id, "\" had no process by its deadline (crun wrote no pid file)"));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

absl::Status ContainerRunner::Signal(const Bundle& b, int signo) const {
  std::string err;
  ASSIGN_OR_RETURN(int code, RunInGuest({"crun", "kill", b.id, std::to_string(signo)}, kCrunCallTimeout, &err));
  if (code == 0) return absl::OkStatus();
  // Gone between our look and crun's: what a kill of an exited process is.
  // crun forgets a container as it exits, a moment before the agent has
  // reaped `crun run` and written the exit file: no state means not running.
  ASSIGN_OR_RETURN(std::optional<agent::ExitFile> exited, Exited(b));
  if (exited || err.find("No such file or directory") != std::string::npos) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("crun kill ", b.id, " ", signo, " in the micro-VM exited ", code,
                                                    ": ", agent::SanitizeText(err)));
}

absl::StatusOr<std::optional<agent::ExitFile>> ContainerRunner::WaitExit(const Bundle& b, absl::Time deadline) const {
  for (;;) {
    ASSIGN_OR_RETURN(std::optional<agent::ExitFile> exited, Exited(b));
    if (exited || absl::Now() >= deadline) return exited;
    absl::SleepFor(std::min(kExitPoll, deadline - absl::Now()));
  }
}

absl::StatusOr<agent::ExitFile> ContainerRunner::Stop(const Bundle& b, absl::Duration grace, int stop_signal,
                                                      absl::Duration kill_wait) const {
  ASSIGN_OR_RETURN(std::optional<agent::ExitFile> exited, Exited(b));
  if (exited) return *exited;
  if (grace > absl::ZeroDuration()) {
    RETURN_IF_ERROR(Signal(b, stop_signal));
    ASSIGN_OR_RETURN(exited, WaitExit(b, absl::Now() + grace));
    if (exited) return *exited;
  }
  RETURN_IF_ERROR(Signal(b, SIGKILL));
  ASSIGN_OR_RETURN(exited, WaitExit(b, absl::Now() + kill_wait));
  if (exited) return *exited;
  return absl::DeadlineExceededError(absl::StrCat("container \"", b.id, "\" did not exit within ",
                                                  absl::FormatDuration(kill_wait), " of SIGKILL"));
}

absl::Status ContainerRunner::Delete(const Bundle& b) const {
  std::string err;
  ASSIGN_OR_RETURN(int code, RunInGuest({"crun", "delete", "--force", b.id}, kCrunCallTimeout, &err));
  // crun's answer for an id it does not know: already deleted.
  if (code == 0 || err.find("No such file or directory") != std::string::npos) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("crun delete ", b.id, " in the micro-VM exited ", code, ": ", agent::SanitizeText(err)));
}

}  // namespace kvcri::runtime::microvm
