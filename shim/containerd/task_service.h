// TaskService: containerd's Task API (ttrpc containerd.task.v2.Task) for the tasks of one Pod's shim.
#pragma once

// One shim serves one Pod (grouped by io.kubernetes.cri.sandbox-id), so one
// TaskService holds the Pod's sandbox task and its VM container tasks.
//
// The sandbox task: Create reads the bundle's OCI spec, opens the Pod's
// orchestrator (VmTasks, when options.open_vm is set) and wires the Pod
// network in the netns containerd's CRI made (linux.namespaces), then forks
// the pause process into it (its pid is what container specs name as
// /proc/<pid>/ns/net). A container task is the Pod's VM (VmTasks): its pid
// is QEMU's. Start, State, Wait, Kill, Delete, Pids, Connect and Shutdown
// follow runc's shim; TaskCreate/Start/Exit/Delete are published in that
// order. Pause/Resume/Checkpoint are UNIMPLEMENTED: a VM Pod is never frozen
// by containerd.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "shim/containerd/pause_process.h"
#include "shim/containerd/proto/task.pb.h"
#include "shim/containerd/vm_tasks.h"
#include "shim/ttrpc/server.h"

namespace kvcri::shim::containerd {

class EventPublisher;

// Where a task's event goes: topic, bare type_url, serialized event.
using EventSink = std::function<void(std::string_view topic, std::string_view type_url, std::string event)>;

// The EventSink of an EventPublisher; a refused event is logged.
EventSink PublishTo(EventPublisher* publisher);

// Opens the orchestrator of the Pod `sandbox_id` (VmTasks::Open with the
// node's config); `on_exit` reports VM exits, `on_exec_exit` exec exits.
using OpenVmTasks = std::function<absl::StatusOr<std::unique_ptr<VmTasks>>(
    std::string_view sandbox_id, VmTasks::ExitFn on_exit, VmExecs::ExitFn on_exec_exit)>;

struct TaskServiceOptions {
  std::string version;  // ConnectResponse.version
  // Called when a Shutdown finds no task left (or `now`): the server stops.
  std::function<void()> shutdown;
  // Null (unit tests of the front door): sandbox tasks run the pause
  // process only and container tasks are refused.
  OpenVmTasks open_vm;
};

class TaskService {
 public:
  TaskService(EventSink events, TaskServiceOptions options);
  TaskService(const TaskService&) = delete;
  TaskService& operator=(const TaskService&) = delete;
  // Kills what still runs (the shim is going away).
  ~TaskService();

  // Every method of containerd.task.v2.Task.
  void Register(ttrpc::Server* server);

  // The handlers, public for tests that call them without a socket.
  absl::StatusOr<pb::CreateTaskResponse> Create(const ttrpc::CallContext& ctx, const pb::CreateTaskRequest& req);
  absl::StatusOr<pb::StartResponse> Start(const ttrpc::CallContext& ctx, const pb::StartRequest& req);
  absl::StatusOr<pb::StateResponse> State(const ttrpc::CallContext& ctx, const pb::StateRequest& req);
  absl::StatusOr<pb::WaitResponse> Wait(const ttrpc::CallContext& ctx, const pb::WaitRequest& req);
  absl::StatusOr<google::protobuf::Empty> Kill(const ttrpc::CallContext& ctx, const pb::KillRequest& req);
  absl::StatusOr<pb::DeleteResponse> Delete(const ttrpc::CallContext& ctx, const pb::DeleteRequest& req);
  absl::StatusOr<pb::PidsResponse> Pids(const ttrpc::CallContext& ctx, const pb::PidsRequest& req);
  absl::StatusOr<google::protobuf::Empty> Exec(const ttrpc::CallContext& ctx, const pb::ExecProcessRequest& req);
  absl::StatusOr<google::protobuf::Empty> ResizePty(const ttrpc::CallContext& ctx, const pb::ResizePtyRequest& req);
  absl::StatusOr<google::protobuf::Empty> CloseIO(const ttrpc::CallContext& ctx, const pb::CloseIORequest& req);
  absl::StatusOr<pb::StatsResponse> Stats(const ttrpc::CallContext& ctx, const pb::StatsRequest& req);
  absl::StatusOr<google::protobuf::Empty> Update(const ttrpc::CallContext& ctx, const pb::UpdateTaskRequest& req);
  absl::StatusOr<pb::ConnectResponse> Connect(const ttrpc::CallContext& ctx, const pb::ConnectRequest& req);
  absl::StatusOr<google::protobuf::Empty> Shutdown(const ttrpc::CallContext& ctx, const pb::ShutdownRequest& req);

  // Tasks held now (tests, and the serve loop's exit check).
  size_t tasks() const;

 private:
  enum class Phase { kCreated, kRunning, kStopped };
  struct Task {
    std::string id;
    std::string bundle;
    std::string stdin_path, stdout_path, stderr_path;
    bool terminal = false;
    // The sandbox task's; null for a VM container task.
    std::unique_ptr<PauseProcess> process;
    Phase phase = Phase::kCreated;  // guarded by TaskService::mu_
    uint32_t pid = 0;               // the VM's QEMU once started; guarded by mu_
  };

  // The task `id`; NOT_FOUND naming it otherwise (containerd's errdefs
  // turn that into ErrNotFound, which CRI's stop and remove tolerate).
  absl::StatusOr<std::shared_ptr<Task>> Find(std::string_view id) const;
  // The execs of the VM container task `id`: NotFound when `id` is no
  // task, FailedPrecondition when it is the sandbox (nothing to exec in).
  absl::StatusOr<VmExecs*> ExecsOf(std::string_view id) const;
  void OnExecExit(const std::string& id, const std::string& exec_id, const VmExit& e);
  absl::StatusOr<pb::CreateTaskResponse> CreateSandbox(const pb::CreateTaskRequest& req, const std::string& config,
                                                       const std::string& netns);
  // Undone when the call's connection ended or its deadline passed meanwhile.
  absl::StatusOr<pb::CreateTaskResponse> CreateContainer(const ttrpc::CallContext& ctx, const pb::CreateTaskRequest& req,
                                                         const std::string& config);
  void PublishCreate(const pb::CreateTaskRequest& req, uint32_t pid);
  void OnExit(const std::weak_ptr<Task>& task, const ProcessExit& e);
  void OnVmExit(const std::string& id, const VmExit& e);
  std::shared_ptr<VmTasks> Vm() const;
  uint32_t PidOf(const Task& t) const;

  EventSink events_;
  const TaskServiceOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Task>> tasks_ ABSL_GUARDED_BY(mu_);
  // The Pod's orchestrator, from the sandbox task's Create on.
  std::shared_ptr<VmTasks> vm_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::shim::containerd
