// PauseProcess: the sandbox task's process, a child that sleeps in the Pod's netns so /proc/<pid>/ns/net names it.
#pragma once

// containerd's CRI gives container tasks /proc/<sandbox task pid>/ns/net
// (and ipc, uts) as their namespaces (docs/containerd-shim.md section 4), so
// the sandbox task's pid must be a process that lives in the Pod's netns
// for as long as the sandbox runs. runc runs the pause image's binary; we
// fork one that joins the netns and waits for a signal.
//
// Lifetime: it dies with the shim (PR_SET_PDEATHSIG SIGKILL; kill -9 of the
// shim then leaves no process behind, and containerd reports the task
// exited). The death signal fires when the *thread* that forked exits, so
// the fork happens on this object's own reaper thread, which lives exactly
// as long as the child and reaps it.

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kvcri::shim::ttrpc {
class Cancellation;
}  // namespace kvcri::shim::ttrpc

namespace kvcri::shim::containerd {

struct ProcessExit {
  pid_t pid = 0;
  uint32_t status = 0;  // the exit code, or 128 + the signal that killed it
  absl::Time at;
};

class PauseProcess {
 public:
  // Forks the process into the network namespace at `netns` (empty: stays
  // in ours). `on_exit` runs once, on the reaper thread, after it is reaped.
  static absl::StatusOr<std::unique_ptr<PauseProcess>> Start(const std::filesystem::path& netns,
                                                             std::function<void(const ProcessExit&)> on_exit);
  PauseProcess(const PauseProcess&) = delete;
  PauseProcess& operator=(const PauseProcess&) = delete;
  // SIGKILLs a process still running and joins the reaper.
  ~PauseProcess();

  pid_t pid() const { return pid_; }
  // Sends `signal`; OK when it has already exited (nothing to signal).
  absl::Status Signal(int signal);
  // The exit once reaped.
  std::optional<ProcessExit> exit() const;
  // Blocks until the exit, `cancel` fires or `deadline` passes. CANCELLED /
  // DEADLINE_EXCEEDED for the latter two.
  absl::StatusOr<ProcessExit> Wait(const std::shared_ptr<ttrpc::Cancellation>& cancel, absl::Time deadline);

 private:
  PauseProcess() = default;
  void Reap(pid_t pid);

  pid_t pid_ = -1;
  std::function<void(const ProcessExit&)> on_exit_;
  mutable absl::Mutex mu_;
  std::optional<ProcessExit> exit_ ABSL_GUARDED_BY(mu_);
  std::thread reaper_;
};

// A wait status as containerd reports it: the exit code, or 128 + signal.
uint32_t ExitStatusOf(int wait_status);

}  // namespace kvcri::shim::containerd
