// VmExecs: containerd's Task Exec processes of VM containers, run in the guest by the daemon's exec dispatcher.
#pragma once

// containerd's CRI runs ExecSync, Exec (kubectl exec) and exec probes as
// Task Exec + Start + Wait (+ ResizePty, CloseIO, Kill) + Delete with an
// exec id. Each exec here is one cri::ExecDispatcher::Exec session over its
// FIFOs (FifoStreams) on a thread of its own: the guest agent that answers
// (kvcri-agent, else qemu-guest-agent for non-tty execs) runs the command,
// exactly as on the daemon's own streaming server. An exec that cannot run
// (no agent in the guest) ends with exit code 126 and the reason on its
// stderr (stdout with a tty), since Start has already answered containerd.
// A Kill of the exec is its client going away: the dispatcher kills the
// guest process.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cri/streaming/stream_io.h"
#include "shim/containerd/proto/task.pb.h"
#include "shim/ttrpc/server.h"
#include "shim/containerd/vm_exit.h"

namespace kvcri::cri {
class ExecDispatcher;
}  // namespace kvcri::cri

namespace kvcri::shim::containerd {

class FifoStreams;

// Exit code of an exec the guest could not run (the shell's "cannot execute").
inline constexpr uint32_t kExecCannotRunStatus = 126;
// Execs held per shim at most (a Pod's probes and sessions; containerd
// deletes each after its exit).
inline constexpr size_t kMaxExecs = 256;

class VmExecs {
 public:
  // `on_exit(container_id, exec_id, exit)` once per exec when it ends.
  using ExitFn = std::function<void(const std::string& container_id, const std::string& exec_id, const VmExit& exit)>;
  VmExecs(cri::ExecDispatcher* dispatcher, ExitFn on_exit);
  // Ends every running exec (its guest process is killed) and joins them.
  ~VmExecs();
  VmExecs(const VmExecs&) = delete;
  VmExecs& operator=(const VmExecs&) = delete;

  // Task Exec: the OCI Process of req.spec() (args, terminal) and its FIFOs.
  // InvalidArgument for a spec that is not one, AlreadyExists for a used exec id.
  absl::Status Add(const pb::ExecProcessRequest& req);
  // Task Start of the exec: the session begins; its "pid" (0: it runs in the guest).
  absl::StatusOr<uint32_t> Start(const std::string& container_id, const std::string& exec_id);
  absl::StatusOr<pb::Status> State(const std::string& container_id, const std::string& exec_id,
                                   std::optional<VmExit>* exit);
  absl::StatusOr<VmExit> Wait(const std::string& container_id, const std::string& exec_id,
                              const ttrpc::CallContext& ctx);
  absl::Status Signal(const std::string& container_id, const std::string& exec_id, int signal);
  absl::Status Resize(const std::string& container_id, const std::string& exec_id, uint32_t width, uint32_t height);
  // Task Delete of the exec: FailedPrecondition while it runs.
  absl::StatusOr<VmExit> Delete(const std::string& container_id, const std::string& exec_id);

 private:
  struct Exec {
    std::string container_id, exec_id;
    std::vector<std::string> args;
    bool terminal = false;
    std::string stdin_path, stdout_path, stderr_path;
    bool started = false;                  // guarded by mu_
    std::shared_ptr<FifoStreams> streams;  // while it runs; guarded by mu_
    bool killed = false;                   // a Kill before the streams existed; guarded by mu_
    std::optional<VmExit> exit;            // guarded by mu_
    std::thread thread;
  };
  static std::string Key(const std::string& container_id, const std::string& exec_id) {
    return container_id + "/" + exec_id;
  }
  absl::StatusOr<std::shared_ptr<Exec>> Find(const std::string& container_id, const std::string& exec_id);
  void Run(const std::shared_ptr<Exec>& e);

  cri::ExecDispatcher* const dispatcher_;
  const ExitFn on_exit_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Exec>> execs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::shim::containerd
