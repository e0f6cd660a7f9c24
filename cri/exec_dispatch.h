// ExecDispatcher: runs CRI Exec, ExecSync, Attach and PortForward in a VM Pod through the guest agent that answers.
#pragma once

// Per call, the agent is chosen afresh (an agent may come or go with the
// guest): kvcri-agent when the guest opened its virtio-serial channel and the
// hello works; else qemu-guest-agent (its ping cached briefly) for ExecSync
// and non-tty Exec; else FAILED_PRECONDITION naming both (docs/exec.md).
// Attach is the serial console (runtime/console_attach.h); PortForward goes
// through kvcri-agent to the guest's 127.0.0.1, or without it over TCP from
// the host to the Pod IP.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/base/unique_fd.h"
#include "cri/streaming/stream_io.h"
#include "runtime/agent/agent_client.h"
#include "runtime/qemu_guest_agent.h"

namespace kvcri::runtime {
class ConsoleHubs;
class Hypervisor;
}  // namespace kvcri::runtime
namespace kvcri::sandbox {
class SandboxStore;
struct ContainerRecord;
struct SandboxRecord;
}  // namespace kvcri::sandbox

namespace kvcri::cri {

inline constexpr char kQemuGuestAgentChannelName[] = "org.qemu.guest_agent.0";

// What the dispatcher needs of the two guest agents. The daemon adapts
// runtime::agent::AgentPool and runtime::QemuGuestAgent; tests pass fakes.
class GuestAgents {
 public:
  virtual ~GuestAgents() = default;
  // The live kvcri-agent client of container `key` over `socket`
  // (AgentPool::Get); Unavailable when no agent answers.
  virtual absl::StatusOr<std::shared_ptr<runtime::agent::AgentClient>> Agent(const std::string& key,
                                                                              const std::filesystem::path& socket) = 0;
  // Drops the client of `key` (the container is gone).
  virtual void ForgetAgent(const std::string& key) = 0;
  // qemu-guest-agent (QemuGuestAgent::Ping / Exec) of libvirt domain `domain`.
  virtual absl::Status QgaPing(std::string_view domain, absl::Duration timeout) = 0;
  virtual absl::StatusOr<runtime::GuestExecResult> QgaExec(std::string_view domain,
                                                           const std::vector<std::string>& argv,
                                                           std::string_view input, absl::Time deadline) = 0;
};

struct ExecDispatcherOptions {
  // What ExecSync returns of each of stdout and stderr at most (containerd's
  // cap: 16 MiB; the rest is read and dropped, so the command never blocks).
  size_t max_exec_sync_output_bytes = 16 << 20;
  // Stdin a non-tty Exec through qemu-guest-agent may send: guest-exec takes
  // it up front, in one JSON command.
  size_t max_qga_stdin_bytes = 1 << 20;
  absl::Duration qga_ping_timeout = absl::Seconds(1);
  // How long a qemu-guest-agent ping answer (yes or no) is reused.
  absl::Duration qga_ping_cache = absl::Seconds(3);
  // After the timeout's SIGKILL, how long ExecSync waits for the exit.
  absl::Duration kill_wait = absl::Seconds(5);
  // PortForward to the Pod IP: the TCP connect's bound.
  absl::Duration dial_timeout = absl::Seconds(5);
};

struct ExecSyncResult {
  std::string stdout_data, stderr_data;
  int exit_code = 0;
};

class ExecDispatcher : public streaming::StreamingBackend {
 public:
  // Not owned; all must outlive the dispatcher.
  ExecDispatcher(sandbox::SandboxStore* store, runtime::Hypervisor* hypervisor, GuestAgents* agents,
                 runtime::ConsoleHubs* consoles, ExecDispatcherOptions options = {});

  // Checks that `container_id` (a full ID) names a RUNNING container: what
  // the RPCs check before they hand out a URL.
  absl::Status CheckRunning(const std::string& container_id);
  // CheckRunning, and the VM has a console socket to attach to.
  absl::Status CheckAttachable(const std::string& container_id);
  // Checks that `pod_sandbox_id` (a full ID) names a READY sandbox.
  absl::Status CheckSandboxReady(const std::string& pod_sandbox_id);

  // Runs `cmd` to its end with no stdin. `timeout` zero: none; when it
  // passes, the guest process is killed and DeadlineExceeded returned (what
  // containerd returns; kubelet's prober reads that code as a probe timeout).
  absl::StatusOr<ExecSyncResult> ExecSync(const std::string& container_id, const std::vector<std::string>& cmd,
                                          absl::Duration timeout);

  // streaming::StreamingBackend
  streaming::CommandResult Exec(const streaming::ExecSpec& spec, streaming::RemoteCommandStreams& streams) override;
  streaming::CommandResult Attach(const streaming::AttachSpec& spec,
                                  streaming::RemoteCommandStreams& streams) override;
  absl::Status PortForward(const std::string& pod_sandbox_id, uint16_t port, streaming::ByteStream& stream) override;

  // The container is gone: drop its agent client and cached ping.
  void Forget(const std::string& container_id);

 private:
  // The agent that serves one call.
  struct Choice {
    std::shared_ptr<runtime::agent::AgentClient> agent;  // non-null: kvcri-agent
    bool qga = false;                                      // else: qemu-guest-agent answers
    // A plain-image container of the Pod micro-VM: the command runs in it
    // through `crun exec <crun_id>` (its namespaces, root, user and env).
    std::string crun_id;
    std::string bundle_dir;    // the container's bundle on the host's side of the share
    std::string exec_process;  // ContainerRecord::exec_process
  };
  // A plain container's exec process file (`crun exec --process`) on the
  // share, removed with this object.
  struct ExecProcessFile {
    base::UniqueFd bundle;
    std::string name;
    ExecProcessFile() = default;
    ExecProcessFile(ExecProcessFile&&) = default;
    ~ExecProcessFile();
  };
  // The command the agent runs for `cmd` under `choice`; for a plain
  // container, the process file it names in *file.
  static absl::StatusOr<std::vector<std::string>> AgentArgv(const Choice& choice, const std::vector<std::string>& cmd,
                                                            bool tty, ExecProcessFile* file);
  // The kvcri-agent client `key` of `domain` over `socket`, when its channel
  // is open and it answers; null otherwise.
  std::shared_ptr<runtime::agent::AgentClient> AgentOf(const std::string& domain, const std::string& key,
                                                       const std::string& socket);
  // The kvcri-agent of sandbox `sb`'s micro-VM; null when it has none or it does not answer.
  std::shared_ptr<runtime::agent::AgentClient> PodVmAgent(const sandbox::SandboxRecord& sb);
  absl::StatusOr<sandbox::ContainerRecord> RunningRecord(const std::string& container_id);
  // kvcri-agent when it answers, else (when `qga_ok`) qemu-guest-agent, else
  // FailedPrecondition naming both.
  absl::StatusOr<Choice> Choose(const sandbox::ContainerRecord& record, bool qga_ok, std::string_view what);
  std::shared_ptr<runtime::agent::AgentClient> KvcriAgent(const sandbox::ContainerRecord& record);
  bool QgaAnswers(const sandbox::ContainerRecord& record);

  streaming::CommandResult ExecThroughAgent(runtime::agent::AgentClient& agent, const streaming::ExecSpec& spec,
                                            streaming::RemoteCommandStreams& streams, bool set_term = true);
  streaming::CommandResult ExecThroughQga(const std::string& domain, const streaming::ExecSpec& spec,
                                          streaming::RemoteCommandStreams& streams);
  // term_first: a timeout sends SIGTERM, then SIGKILL after a second (crun
  // exec passes SIGTERM on to the command; a SIGKILL would only end crun).
  absl::StatusOr<ExecSyncResult> ExecSyncThroughAgent(runtime::agent::AgentClient& agent, const std::string& id,
                                                      const std::vector<std::string>& cmd, absl::Duration timeout,
                                                      bool term_first = false);

  sandbox::SandboxStore* const store_;
  runtime::Hypervisor* const hypervisor_;
  GuestAgents* const agents_;
  runtime::ConsoleHubs* const consoles_;
  const ExecDispatcherOptions options_;

  struct PingAnswer {
    bool ok = false;
    absl::Time at;
  };
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, PingAnswer> qga_pings_ ABSL_GUARDED_BY(mu_);  // by container ID
};

// The FAILED_PRECONDITION message of a container whose guest has no agent
// that can do `what`.
std::string NoGuestAgentMessage(std::string_view container_id, std::string_view what);

}  // namespace kvcri::cri
