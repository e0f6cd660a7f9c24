// PauseProcess: fork into the Pod netns from a reaper thread, wait for signals, reap (pause_process.h).
#include "shim/containerd/pause_process.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/synchronization/notification.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"
#include "shim/ttrpc/server.h"

namespace kvcri::shim::containerd {
namespace {

// The child, between fork and its end: async-signal-safe calls only (the
// shim has threads). Never returns.
[[noreturn]] void PauseChild(pid_t parent, int netns_fd) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);  // the shim blocks its signals for signalfd
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
  }
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(126);
  if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) != 0) _exit(125);
  // Hold none of the shim's fds (its ttrpc socket, containerd's FIFOs).
  if (syscall(SYS_close_range, 0u, ~0u, 0u) != 0) {
    for (int fd = 0; fd < 65536; ++fd) close(fd);
  }
  prctl(PR_SET_NAME, "kvcri-pause");
  for (;;) pause();
}

}  // namespace

uint32_t ExitStatusOf(int wait_status) {
  if (WIFEXITED(wait_status)) return static_cast<uint32_t>(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) return 128u + static_cast<uint32_t>(WTERMSIG(wait_status));
  return 255;
}

absl::StatusOr<std::unique_ptr<PauseProcess>> PauseProcess::Start(const std::filesystem::path& netns,
                                                                    std::function<void(const ProcessExit&)> on_exit) {
  base::UniqueFd ns;
  if (!netns.empty()) {
    ns.Reset(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns.valid()) return absl::ErrnoToStatus(errno, base::StrCat("open network namespace \"", netns.string(), "\""));
  }
  std::unique_ptr<PauseProcess> p(new PauseProcess());
  p->on_exit_ = std::move(on_exit);
  // Shared with the reaper thread, which outlives this call.
  struct Forked {
    absl::Notification done;
    int error = 0;
    pid_t pid = -1;
  };
  auto forked = std::make_shared<Forked>();
  const pid_t parent = ::getpid();
  const int ns_fd = ns.get();
  p->reaper_ = std::thread([forked, parent, ns_fd, raw = p.get()] {
    pid_t pid = ::fork();
    if (pid == 0) PauseChild(parent, ns_fd);
    forked->error = pid < 0 ? errno : 0;
    forked->pid = pid;
    forked->done.Notify();
    if (pid > 0) raw->Reap(pid);
  });
  forked->done.WaitForNotification();
  const pid_t child = forked->pid;
  if (child < 0) {
    p->reaper_.join();
    return absl::ErrnoToStatus(forked->error, "fork of the sandbox's pause process");
  }
  p->pid_ = child;
  return p;
}

void PauseProcess::Reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ProcessExit e{pid, ExitStatusOf(status), absl::Now()};
  {
    absl::MutexLock lock(&mu_);
    exit_ = e;
  }
  if (on_exit_) on_exit_(e);
}

PauseProcess::~PauseProcess() {
  Signal(SIGKILL).IgnoreError();  // already gone is fine: this is teardown
  if (reaper_.joinable()) reaper_.join();
}

absl::Status PauseProcess::Signal(int signal) {
  absl::MutexLock lock(&mu_);
  // Reaped: the pid may belong to someone else by now.
  if (exit_.has_value() || pid_ <= 0) return absl::OkStatus();
  if (::kill(pid_, signal) != 0 && errno != ESRCH) {
    return absl::ErrnoToStatus(errno, base::StrCat("kill ", pid_, " with signal ", signal));
  }
  return absl::OkStatus();
}

std::optional<ProcessExit> PauseProcess::exit() const {
  absl::MutexLock lock(&mu_);
  return exit_;
}

absl::StatusOr<ProcessExit> PauseProcess::Wait(const std::shared_ptr<ttrpc::Cancellation>& cancel,
                                               absl::Time deadline) {
  // Subscribed before taking mu_: an already cancelled call runs the
  // callback at once, and the callback takes mu_ so that Await re-checks.
  std::unique_ptr<ttrpc::CancelSubscription> sub;
  if (cancel) sub = std::make_unique<ttrpc::CancelSubscription>(cancel, [this] { absl::MutexLock wake(&mu_); });
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> bool { return exit_.has_value() || (cancel && cancel->cancelled()); };
  if (!mu_.AwaitWithDeadline(absl::Condition(&done), deadline)) {
    return absl::DeadlineExceededError("the task did not exit before the call's deadline");
  }
  if (exit_.has_value()) return *exit_;
  return absl::CancelledError("the connection of the Wait call ended");
}

}  // namespace kvcri::shim::containerd
