// ExecSync and non-tty exec through qemu-guest-agent's guest-exec, the agent distros and cloud images ship.
#pragma once

// The agent's channel (org.qemu.guest_agent.0) is libvirt's: commands go
// through Hypervisor::GuestAgentCommand (virDomainQemuAgentCommand). guest-exec
// takes stdin up front and hands stdout/stderr back only when the process
// ended, so there is no interactive exec (no pty) through it.
//
// Untrusted: every reply is bounded (the JSON size, the decoded output) and
// malformed replies are errors, never crashes.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvcri::runtime {

class Hypervisor;

struct GuestExecResult {
  int exit_code = 0;  // 128+N when the guest reports signal N
  std::string stdout_data, stderr_data;
  bool truncated = false;  // output beyond max_output_bytes was dropped
};

struct QemuGuestAgentOptions {
  size_t max_output_bytes = 16 << 20;  // per stream, what CRI ExecSync returns at most
  absl::Duration poll_interval = absl::Milliseconds(20);  // guest-exec-status
  absl::Duration command_timeout = absl::Seconds(10);     // one agent command
};

class QemuGuestAgent {
 public:
  QemuGuestAgent(Hypervisor* hypervisor, QemuGuestAgentOptions options = {});
  // Ping: OK when the agent answers (guest-ping) within `timeout`.
  absl::Status Ping(std::string_view domain, absl::Duration timeout);
  // Has the guest run on vCPUs 0..n-1 (logical ids): onlines those that
  // are offline and offlines the others that can be (guest-get-vcpus, then
  // guest-set-vcpus). Linux leaves hot-plugged x86 CPUs offline unless udev
  // or something else onlines them. Returns how many are online afterwards.
  // Unavailable when no agent is connected; FailedPrecondition when the agent
  // refuses (e.g. guest-set-vcpus disabled in its config).
  absl::StatusOr<int> SetOnlineVcpus(std::string_view domain, int n, absl::Duration timeout);
  // Runs argv with `input` as stdin, waits until it ends or `deadline`; at
  // the deadline the guest process is killed and DeadlineExceeded returned.
  absl::StatusOr<GuestExecResult> Exec(std::string_view domain, const std::vector<std::string>& argv,
                                       std::string_view input, absl::Time deadline);

 private:
  Hypervisor* const hypervisor_;
  const QemuGuestAgentOptions options_;
};

}  // namespace kvcri::runtime
