// Host side of kvcri-agent: one multiplexed connection per VM over its virtio-serial channel; exec sessions and port connections.
#pragma once

// The channel is a unix socket QEMU listens on (libvirt <channel type='unix'
// mode='bind'>, target virtio name kAgentChannelName); the guest's agent opens
// /dev/virtio-ports/<name>. QEMU accepts one host connection at a time, so
// the daemon keeps one AgentClient per VM (AgentPool) and runs every session
// over it. The wire format is runtime/agent/agent_protocol.h.
//
// Everything the guest sends is untrusted: frame sizes, session counts and
// buffered bytes are bounded (AgentLimits); a guest that breaks the protocol
// loses its connection, nothing else.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvcri::runtime::agent {

inline constexpr char kAgentChannelName[] = "io.kubevirt-cri.agent.0";

struct AgentLimits {
  size_t max_frame_bytes = 64 << 10;  // payload of one frame
  size_t max_sessions = 128;          // exec sessions + port connections per VM
  uint32_t window_bytes = 256 << 10;  // per session and direction: bytes in flight
  absl::Duration hello_timeout = absl::Seconds(2);
};

struct ExecOptions {
  std::vector<std::string> argv;  // argv[0] looked up in the guest's PATH
  std::vector<std::string> env;   // "K=V", added to the agent's default environment
  bool tty = false;
  bool stdin = false;  // false: the process's stdin is /dev/null
  uint16_t width = 0, height = 0;  // initial pty size (tty only; 0 = agent default)
};

// A detached process in the guest (runtime/agent/agent_protocol.h SPAWN):
// it outlives the connection; output and exit status go to files (for a
// micro-VM container: on the Pod's share, where the host reads them).
struct SpawnOptions {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "K=V", added to PATH
  std::string cwd;               // empty: /
  std::string stdout_path, stderr_path, exit_path;  // absolute guest paths
  // Optional: the cgroup whose OOM kills the exit file counts (SpawnMsg).
  std::string oom_cgroup;
};

enum class Output { kStdout, kStderr };

// One process in the guest. The destructor kills it (SIGKILL) if it still
// runs and frees the session.
class Process {
 public:
  virtual ~Process() = default;
  // Blocks while the session's window toward the guest is full.
  virtual absl::Status WriteStdin(std::string_view data) = 0;
  virtual absl::Status CloseStdin() = 0;
  virtual absl::Status Resize(uint16_t width, uint16_t height) = 0;
  virtual absl::Status Signal(int signo) = 0;
  // Blocks for the next bytes of `which` (kStderr: always 0 with a tty);
  // 0 at the end of that output.
  virtual absl::StatusOr<size_t> Read(Output which, char* buf, size_t len) = 0;
  // Waits for the exit: the exit code, 128+N when killed by signal N.
  // DeadlineExceeded when `deadline` passes first (the process keeps running).
  virtual absl::StatusOr<int> Wait(absl::Time deadline) = 0;
};

// One TCP connection the agent made to 127.0.0.1:<port> in the guest.
class PortConnection {
 public:
  virtual ~PortConnection() = default;  // closes both directions
  virtual absl::StatusOr<size_t> Read(char* buf, size_t len) = 0;  // 0: guest side closed its write half
  virtual absl::Status Write(std::string_view data) = 0;
  virtual absl::Status CloseWrite() = 0;  // half-close toward the guest
};

class AgentClient {
 public:
  virtual ~AgentClient() = default;
  // Whether the connection still works (false after EOF or a protocol error).
  virtual bool Alive() = 0;
  virtual std::string AgentVersion() = 0;
  virtual absl::StatusOr<std::unique_ptr<Process>> Exec(const ExecOptions& options) = 0;
  // Unavailable with the guest's connect error (e.g. "connection refused").
  virtual absl::StatusOr<std::unique_ptr<PortConnection>> ConnectPort(uint16_t port) = 0;
  // Its pid in the guest; the guest's ERROR text (a missing binary, an
  // unwritable file) as FailedPrecondition. Needs kvcri-agent 2.
  virtual absl::StatusOr<uint32_t> Spawn(const SpawnOptions& options) {
    (void)options;
    return absl::UnimplementedError("this agent client cannot spawn processes");
  }
};

// Connects to the channel socket and says hello; Unavailable when nothing
// answers within limits.hello_timeout (no agent in the guest).
absl::StatusOr<std::unique_ptr<AgentClient>> ConnectAgent(const std::filesystem::path& socket,
                                                          const AgentLimits& limits);

// One AgentClient per VM, made on first use and made again once it died.
class AgentPool {
 public:
  explicit AgentPool(AgentLimits limits = {});
  ~AgentPool();
  // The live client for `key` (the container id), connecting if needed.
  absl::StatusOr<std::shared_ptr<AgentClient>> Get(const std::string& key, const std::filesystem::path& socket);
  // Drops the client for `key` (the VM is gone).
  void Forget(const std::string& key);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace kvcri::runtime::agent
