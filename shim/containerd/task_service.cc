// TaskService: the sandbox task over a pause process in containerd's netns; events in runc's order (task_service.h).
#include "shim/containerd/task_service.h"

#include <signal.h>
#include <unistd.h>

#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "shim/containerd/bootstrap.h"
#include "shim/containerd/event_publisher.h"
#include "shim/containerd/names.h"
#include "shim/containerd/proto/events.pb.h"
#include "shim/containerd/spec_drafts.h"

namespace kvcri::shim::containerd {
namespace {

template <typename Event>
void Emit(const EventSink& sink, std::string_view topic, std::string_view type_url, const Event& e) {
  if (sink) sink(topic, type_url, e.SerializeAsString());
}

}  // namespace

EventSink PublishTo(EventPublisher* publisher) {
  return [publisher](std::string_view topic, std::string_view type_url, std::string event) {
    base::LogIfError(publisher->Publish(topic, type_url, std::move(event)), "task event dropped");
  };
}

TaskService::TaskService(EventSink events, TaskServiceOptions options)
    : events_(std::move(events)), options_(std::move(options)) {}

TaskService::~TaskService() {
  absl::flat_hash_map<std::string, std::shared_ptr<Task>> tasks;
  {
    absl::MutexLock lock(&mu_);
    tasks.swap(tasks_);
  }
  tasks.clear();  // outside the lock: each pause process is killed and reaped, its exit callback takes mu_
  std::shared_ptr<VmTasks> vm;
  {
    absl::MutexLock lock(&mu_);
    vm.swap(vm_);
  }
  vm.reset();  // outside the lock too: its exit callbacks take mu_; the VMs keep running
}

size_t TaskService::tasks() const {
  absl::MutexLock lock(&mu_);
  return tasks_.size();
}

absl::StatusOr<std::shared_ptr<TaskService::Task>> TaskService::Find(std::string_view id) const {
  absl::MutexLock lock(&mu_);
  auto it = tasks_.find(std::string(id));
  if (it == tasks_.end()) return absl::NotFoundError(base::StrCat("task \"", id, "\" not found"));
  return it->second;
}

absl::StatusOr<VmExecs*> TaskService::ExecsOf(std::string_view id) const {
  ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(id));
  if (task->process != nullptr) {
    return absl::FailedPreconditionError(base::StrCat(
        "task \"", id, "\" is the Pod's sandbox (its pause process): exec in its VM container instead"));
  }
  std::shared_ptr<VmTasks> vm = Vm();
  if (vm == nullptr || vm->execs() == nullptr) return absl::NotFoundError(base::StrCat("task \"", id, "\" not found"));
  return vm->execs();
}

void TaskService::OnExecExit(const std::string& id, const std::string& exec_id, const VmExit& e) {
  pb::TaskExit event;
  event.set_container_id(id);
  event.set_id(exec_id);  // an exec's exit: CRI tells it from the init's by this
  event.set_exit_status(e.status);
  ToTimestamp(e.at, event.mutable_exited_at());
  Emit(events_, kTopicTaskExit, kTypeUrlTaskExit, event);
}

absl::StatusOr<google::protobuf::Empty> TaskService::Exec(const ttrpc::CallContext&, const pb::ExecProcessRequest& req) {
  RETURN_IF_ERROR(ExecsOf(req.id()).status());
  RETURN_IF_ERROR(Vm()->AddExec(req));
  pb::TaskExecAdded event;
  event.set_container_id(req.id());
  event.set_exec_id(req.exec_id());
  Emit(events_, kTopicTaskExecAdded, kTypeUrlTaskExecAdded, event);
  return google::protobuf::Empty();
}

absl::StatusOr<google::protobuf::Empty> TaskService::ResizePty(const ttrpc::CallContext&, const pb::ResizePtyRequest& req) {
  if (req.exec_id().empty()) {
    return absl::FailedPreconditionError(
        base::StrCat("task \"", req.id(), "\": a VM's console has no pty to resize (attach is the serial console)"));
  }
  ASSIGN_OR_RETURN(VmExecs * execs, ExecsOf(req.id()));
  RETURN_IF_ERROR(execs->Resize(req.id(), req.exec_id(), req.width(), req.height()));
  return google::protobuf::Empty();
}

absl::StatusOr<google::protobuf::Empty> TaskService::CloseIO(const ttrpc::CallContext&, const pb::CloseIORequest& req) {
  // containerd closes its end of the stdin FIFO itself; our reader sees EOF.
  if (!req.exec_id().empty()) {
    ASSIGN_OR_RETURN(VmExecs * execs, ExecsOf(req.id()));
    std::optional<VmExit> exit;
    RETURN_IF_ERROR(execs->State(req.id(), req.exec_id(), &exit).status());
  } else {
    RETURN_IF_ERROR(Find(req.id()).status());
  }
  return google::protobuf::Empty();
}

std::shared_ptr<VmTasks> TaskService::Vm() const {
  absl::MutexLock lock(&mu_);
  return vm_;
}

uint32_t TaskService::PidOf(const Task& t) const {
  if (t.process != nullptr) return static_cast<uint32_t>(t.process->pid());
  absl::MutexLock lock(&mu_);
  return t.pid;
}

absl::StatusOr<pb::CreateTaskResponse> TaskService::Create(const ttrpc::CallContext& ctx, const pb::CreateTaskRequest& req) {
  if (req.id().empty()) return absl::InvalidArgumentError("CreateTaskRequest.id is empty");
  if (req.bundle().empty()) return absl::InvalidArgumentError("CreateTaskRequest.bundle is empty");
  if (!req.checkpoint().empty()) {
    return absl::UnimplementedError(base::StrCat("task \"", req.id(), "\": restoring from a checkpoint is not supported"));
  }
  ASSIGN_OR_RETURN(std::string config, ReadBundleConfig(req.bundle()));
  absl::StatusOr<SpecFacts> read = ReadSpecFacts(config);
  if (!read.ok()) {
    return absl::Status(read.status().code(), base::StrCat("bundle \"", req.bundle(), "\": ", read.status().message()));
  }
  const SpecFacts& facts = *read;
  {
    absl::MutexLock lock(&mu_);
    if (tasks_.contains(req.id())) return absl::AlreadyExistsError(base::StrCat("task \"", req.id(), "\" already exists"));
  }
  if (facts.container_type == kContainerTypeContainer) return CreateContainer(ctx, req, config);
  if (facts.container_type != kContainerTypeSandbox) {
    return absl::InvalidArgumentError(base::StrCat("task \"", req.id(), "\": its OCI spec has no annotation ",
                                                   kAnnotationContainerType,
                                                   " (sandbox or container): only containerd's CRI makes kubevirt tasks"));
  }
  if (facts.netns.empty()) {
    return absl::FailedPreconditionError(base::StrCat(
        "sandbox task \"", req.id(), "\": its OCI spec names no network namespace: a kubevirt VM Pod cannot use "
        "host networking"));
  }
  return CreateSandbox(req, config, facts.netns);
}

absl::StatusOr<pb::CreateTaskResponse> TaskService::CreateSandbox(const pb::CreateTaskRequest& req,
                                                                  const std::string& config, const std::string& netns) {
  const std::string id = req.id();
  std::shared_ptr<VmTasks> vm;
  if (options_.open_vm) {
    if (Vm() != nullptr) {
      return absl::FailedPreconditionError(
          base::StrCat("sandbox task \"", id, "\": this shim already serves a Pod (one shim per Pod)"));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<VmTasks> opened,
                     options_.open_vm(
                         id, [this](const std::string& cid, const VmExit& e) { OnVmExit(cid, e); },
                         [this](const std::string& cid, const std::string& eid, const VmExit& e) {
                           OnExecExit(cid, eid, e);
                         }));
    vm = std::move(opened);
    // The Pod record and its wiring (tap + redirect + DHCP) in containerd's netns.
    RETURN_IF_ERROR(vm->RunSandbox(id, config));
  }
  auto task = std::make_shared<Task>();
  task->id = id;
  task->bundle = req.bundle();
  task->stdin_path = req.stdin();
  task->stdout_path = req.stdout();
  task->stderr_path = req.stderr();
  task->terminal = req.terminal();
  // The callback holds the task weakly: a task being destroyed (the shim
  // going away, a lost race for the id) reports no exit.
  std::weak_ptr<Task> weak = task;
  absl::StatusOr<std::unique_ptr<PauseProcess>> process =
      PauseProcess::Start(netns, [this, weak](const ProcessExit& e) { OnExit(weak, e); });
  if (!process.ok()) {
    if (vm != nullptr) base::LogIfError(vm->RemoveSandbox(id), "sandbox task rollback");
    return process.status();
  }
  task->process = *std::move(process);
  const pid_t pid = task->process->pid();
  {
    absl::MutexLock lock(&mu_);
    if (tasks_.contains(id)) return absl::AlreadyExistsError(base::StrCat("task \"", id, "\" already exists"));
    tasks_.emplace(id, task);
    if (vm != nullptr) vm_ = vm;
  }
  PublishCreate(req, static_cast<uint32_t>(pid));
  base::LogInfo("sandbox task created", {{"id", id}, {"pid", base::StrCat(pid)}, {"netns", netns}});
  pb::CreateTaskResponse resp;
  resp.set_pid(static_cast<uint32_t>(pid));
  return resp;
}

absl::StatusOr<pb::CreateTaskResponse> TaskService::CreateContainer(const ttrpc::CallContext& ctx,
                                                                    const pb::CreateTaskRequest& req,
                                                                    const std::string& config) {
  std::shared_ptr<VmTasks> vm = Vm();
  if (vm == nullptr) {
    return absl::FailedPreconditionError(base::StrCat(
        "container task \"", req.id(), "\": ",
        options_.open_vm ? "its Pod's sandbox task does not run in this shim"
                         : "this shim runs without the VM orchestrator (a test of the front door)"));
  }
  RETURN_IF_ERROR(vm->CreateContainer(req, config));
  if (ctx.cancelled() || absl::Now() >= ctx.deadline) {
    // containerd gave up on this Create (its caller's deadline closed the
    // connection) and has already run `delete` for the task, which found
    // nothing: a task kept now would be one containerd never deletes, and
    // this shim would never shut down. Undo it.
    base::LogInfo("container task create abandoned by containerd; undone", {{"id", req.id()}});
    base::LogIfError(vm->RemoveContainer(req.id()).status(), "abandoned container task rollback");
    return absl::CancelledError(base::StrCat("task \"", req.id(), "\": the Create call's connection ended"));
  }
  auto task = std::make_shared<Task>();
  task->id = req.id();
  task->bundle = req.bundle();
  task->stdin_path = req.stdin();
  task->stdout_path = req.stdout();
  task->stderr_path = req.stderr();
  task->terminal = req.terminal();
  {
    absl::MutexLock lock(&mu_);
    tasks_.emplace(task->id, task);
  }
  PublishCreate(req, 0);
  base::LogInfo("VM container task created", {{"id", task->id}});
  return pb::CreateTaskResponse();
}

void TaskService::PublishCreate(const pb::CreateTaskRequest& req, uint32_t pid) {
  pb::TaskCreate event;
  event.set_container_id(req.id());
  event.set_bundle(req.bundle());
  *event.mutable_rootfs() = req.rootfs();
  event.mutable_io()->set_stdin(req.stdin());
  event.mutable_io()->set_stdout(req.stdout());
  event.mutable_io()->set_stderr(req.stderr());
  event.mutable_io()->set_terminal(req.terminal());
  event.set_checkpoint(req.checkpoint());
  event.set_pid(pid);
  Emit(events_, kTopicTaskCreate, kTypeUrlTaskCreate, event);
}

absl::StatusOr<pb::StartResponse> TaskService::Start(const ttrpc::CallContext&, const pb::StartRequest& req) {
  if (!req.exec_id().empty()) {
    ASSIGN_OR_RETURN(VmExecs * execs, ExecsOf(req.id()));
    ASSIGN_OR_RETURN(uint32_t pid, execs->Start(req.id(), req.exec_id()));
    pb::TaskExecStarted event;
    event.set_container_id(req.id());
    event.set_exec_id(req.exec_id());
    event.set_pid(pid);
    Emit(events_, kTopicTaskExecStarted, kTypeUrlTaskExecStarted, event);
    pb::StartResponse resp;
    resp.set_pid(pid);
    return resp;
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(req.id()));
  {
    absl::MutexLock lock(&mu_);
    if (task->phase == Phase::kRunning) {
      return absl::FailedPreconditionError(base::StrCat("task \"", req.id(), "\" is already started"));
    }
    if (task->phase == Phase::kStopped) {
      return absl::FailedPreconditionError(base::StrCat("task \"", req.id(), "\" has exited: it cannot be started"));
    }
  }
  uint32_t pid = 0;
  if (task->process != nullptr) {
    pid = static_cast<uint32_t>(task->process->pid());
  } else {
    std::shared_ptr<VmTasks> vm = Vm();
    if (vm == nullptr) return absl::FailedPreconditionError("the Pod of this shim has been removed");
    ASSIGN_OR_RETURN(pid, vm->StartContainer(task->id));
  }
  {
    absl::MutexLock lock(&mu_);
    // A VM that powered off at once has already reported its exit.
    if (task->phase == Phase::kCreated) task->phase = Phase::kRunning;
    task->pid = pid;
  }
  pb::TaskStart event;
  event.set_container_id(task->id);
  event.set_pid(pid);
  Emit(events_, kTopicTaskStart, kTypeUrlTaskStart, event);
  pb::StartResponse resp;
  resp.set_pid(pid);
  return resp;
}

void TaskService::OnExit(const std::weak_ptr<Task>& weak, const ProcessExit& e) {
  std::shared_ptr<Task> task = weak.lock();
  if (task == nullptr) return;
  {
    absl::MutexLock lock(&mu_);
    task->phase = Phase::kStopped;
  }
  pb::TaskExit event;
  event.set_container_id(task->id);
  event.set_id(task->id);  // the init process: CRI tells it from an exec's exit by this
  // The process exits on its reaper thread, possibly before Start() has
  // stored the pointer: the pid comes from the pause process itself.
  event.set_pid(static_cast<uint32_t>(e.pid));
  event.set_exit_status(e.status);
  ToTimestamp(e.at, event.mutable_exited_at());
  Emit(events_, kTopicTaskExit, kTypeUrlTaskExit, event);
  base::LogInfo("sandbox task exited", {{"id", task->id}, {"exit_status", base::StrCat(e.status)}});
}

void TaskService::OnVmExit(const std::string& id, const VmExit& e) {
  uint32_t pid = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return;  // deleted meanwhile: its Delete reported the exit
    it->second->phase = Phase::kStopped;
    pid = it->second->pid;
  }
  pb::TaskExit event;
  event.set_container_id(id);
  event.set_id(id);
  event.set_pid(pid);
  event.set_exit_status(e.status);
  ToTimestamp(e.at, event.mutable_exited_at());
  Emit(events_, kTopicTaskExit, kTypeUrlTaskExit, event);
  base::LogInfo("VM container task exited", {{"id", id}, {"exit_status", base::StrCat(e.status)}});
}

absl::StatusOr<pb::StateResponse> TaskService::State(const ttrpc::CallContext&, const pb::StateRequest& req) {
  if (!req.exec_id().empty()) {
    ASSIGN_OR_RETURN(VmExecs * execs, ExecsOf(req.id()));
    std::optional<VmExit> exit;
    ASSIGN_OR_RETURN(pb::Status status, execs->State(req.id(), req.exec_id(), &exit));
    pb::StateResponse resp;
    resp.set_id(req.exec_id());
    resp.set_status(status);
    if (exit.has_value()) {
      resp.set_exit_status(exit->status);
      ToTimestamp(exit->at, resp.mutable_exited_at());
    }
    return resp;
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(req.id()));
  pb::StateResponse resp;
  resp.set_id(task->id);
  resp.set_bundle(task->bundle);
  resp.set_stdin(task->stdin_path);
  resp.set_stdout(task->stdout_path);
  resp.set_stderr(task->stderr_path);
  resp.set_terminal(task->terminal);
  if (task->process == nullptr) {
    std::shared_ptr<VmTasks> vm = Vm();
    if (vm == nullptr) return absl::NotFoundError(base::StrCat("task \"", req.id(), "\" not found"));
    ASSIGN_OR_RETURN(VmTaskState s, vm->State(task->id));
    resp.set_status(s.status);
    resp.set_pid(s.pid != 0 ? s.pid : PidOf(*task));
    if (s.exit.has_value()) {
      resp.set_exit_status(s.exit->status);
      ToTimestamp(s.exit->at, resp.mutable_exited_at());
    }
    return resp;
  }
  resp.set_pid(static_cast<uint32_t>(task->process->pid()));
  std::optional<ProcessExit> exit = task->process->exit();
  Phase phase;
  {
    absl::MutexLock lock(&mu_);
    phase = task->phase;
  }
  if (exit.has_value()) {
    resp.set_status(pb::STOPPED);
    resp.set_exit_status(exit->status);
    ToTimestamp(exit->at, resp.mutable_exited_at());
  } else {
    resp.set_status(phase == Phase::kCreated ? pb::CREATED : pb::RUNNING);
  }
  return resp;
}

absl::StatusOr<pb::WaitResponse> TaskService::Wait(const ttrpc::CallContext& ctx, const pb::WaitRequest& req) {
  pb::WaitResponse resp;
  if (!req.exec_id().empty()) {
    ASSIGN_OR_RETURN(VmExecs * execs, ExecsOf(req.id()));
    ASSIGN_OR_RETURN(VmExit exit, execs->Wait(req.id(), req.exec_id(), ctx));
    resp.set_exit_status(exit.status);
    ToTimestamp(exit.at, resp.mutable_exited_at());
    return resp;
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(req.id()));
  if (task->process == nullptr) {
    std::shared_ptr<VmTasks> vm = Vm();
    if (vm == nullptr) return absl::NotFoundError(base::StrCat("task \"", req.id(), "\" not found"));
    ASSIGN_OR_RETURN(VmExit exit, vm->Wait(task->id, ctx));
    resp.set_exit_status(exit.status);
    ToTimestamp(exit.at, resp.mutable_exited_at());
    return resp;
  }
  ASSIGN_OR_RETURN(ProcessExit exit, task->process->Wait(ctx.cancel, ctx.deadline));
  resp.set_exit_status(exit.status);
  ToTimestamp(exit.at, resp.mutable_exited_at());
  return resp;
}

absl::StatusOr<google::protobuf::Empty> TaskService::Kill(const ttrpc::CallContext&, const pb::KillRequest& req) {
  if (req.signal() == 0 || req.signal() >= static_cast<uint32_t>(NSIG)) {
    return absl::InvalidArgumentError(base::StrCat("KillRequest.signal ", req.signal(), " is not a signal"));
  }
  if (!req.exec_id().empty()) {
    ASSIGN_OR_RETURN(VmExecs * execs, ExecsOf(req.id()));
    RETURN_IF_ERROR(execs->Signal(req.id(), req.exec_id(), static_cast<int>(req.signal())));
    return google::protobuf::Empty();
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(req.id()));
  if (task->process == nullptr) {
    std::shared_ptr<VmTasks> vm = Vm();
    if (vm == nullptr) return absl::NotFoundError(base::StrCat("task \"", req.id(), "\": process already finished"));
    RETURN_IF_ERROR(vm->Signal(task->id, static_cast<int>(req.signal())));
    return google::protobuf::Empty();
  }
  RETURN_IF_ERROR(task->process->Signal(static_cast<int>(req.signal())));
  return google::protobuf::Empty();
}

absl::StatusOr<pb::DeleteResponse> TaskService::Delete(const ttrpc::CallContext&, const pb::DeleteRequest& req) {
  if (!req.exec_id().empty()) {
    ASSIGN_OR_RETURN(VmExecs * execs, ExecsOf(req.id()));
    ASSIGN_OR_RETURN(VmExit exit, execs->Delete(req.id(), req.exec_id()));
    pb::DeleteResponse resp;
    resp.set_exit_status(exit.status);
    ToTimestamp(exit.at, resp.mutable_exited_at());
    return resp;
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(req.id()));
  uint32_t status = 0;
  absl::Time at;
  const uint32_t pid = PidOf(*task);
  if (task->process == nullptr) {
    std::shared_ptr<VmTasks> vm = Vm();
    if (vm != nullptr) {
      ASSIGN_OR_RETURN(VmExit exit, vm->RemoveContainer(task->id));
      status = exit.status;
      at = exit.at;
    } else {
      at = absl::Now();
    }
  } else {
    std::optional<ProcessExit> exit = task->process->exit();
    if (!exit.has_value()) {
      return absl::FailedPreconditionError(
          base::StrCat("task \"", req.id(), "\" is still running: kill it and wait for its exit first"));
    }
    // The Pod's wiring and records go with its sandbox task; a failure
    // keeps the task, so containerd's retry finishes the job.
    if (std::shared_ptr<VmTasks> vm = Vm(); vm != nullptr) RETURN_IF_ERROR(vm->RemoveSandbox(task->id));
    status = exit->status;
    at = exit->at;
  }
  {
    absl::MutexLock lock(&mu_);
    tasks_.erase(task->id);
  }
  pb::TaskDelete event;
  event.set_container_id(task->id);
  event.set_id(task->id);
  event.set_pid(pid);
  event.set_exit_status(status);
  ToTimestamp(at, event.mutable_exited_at());
  Emit(events_, kTopicTaskDelete, kTypeUrlTaskDelete, event);
  pb::DeleteResponse resp;
  resp.set_pid(pid);
  resp.set_exit_status(status);
  ToTimestamp(at, resp.mutable_exited_at());
  return resp;
}

absl::StatusOr<pb::PidsResponse> TaskService::Pids(const ttrpc::CallContext&, const pb::PidsRequest& req) {
  ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(req.id()));
  pb::PidsResponse resp;
  if (task->process == nullptr) {
    if (std::shared_ptr<VmTasks> vm = Vm(); vm != nullptr) {
      for (uint32_t p : vm->Pids(task->id)) resp.add_processes()->set_pid(p);
    }
    return resp;
  }
  if (!task->process->exit().has_value()) resp.add_processes()->set_pid(static_cast<uint32_t>(task->process->pid()));
  return resp;
}

absl::StatusOr<pb::StatsResponse> TaskService::Stats(const ttrpc::CallContext&, const pb::StatsRequest& req) {
  ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(req.id()));
  if (task->process != nullptr) {
    // The sandbox task is the pause process: the Pod's usage is its VM's.
    return absl::NotFoundError(base::StrCat("task \"", req.id(), "\" is the Pod's sandbox: its VM container has the stats"));
  }
  std::shared_ptr<VmTasks> vm = Vm();
  if (vm == nullptr) return absl::NotFoundError(base::StrCat("task \"", req.id(), "\" not found"));
  pb::StatsResponse resp;
  ASSIGN_OR_RETURN(*resp.mutable_stats(), vm->Stats(task->id));
  return resp;
}

absl::StatusOr<google::protobuf::Empty> TaskService::Update(const ttrpc::CallContext&, const pb::UpdateTaskRequest& req) {
  ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(req.id()));
  if (task->process != nullptr) {
    return absl::FailedPreconditionError(
        base::StrCat("task \"", req.id(), "\" is the Pod's sandbox: resources are its VM container's"));
  }
  std::shared_ptr<VmTasks> vm = Vm();
  if (vm == nullptr) return absl::NotFoundError(base::StrCat("task \"", req.id(), "\" not found"));
  RETURN_IF_ERROR(vm->Update(task->id, req.resources()));
  return google::protobuf::Empty();
}

absl::StatusOr<pb::ConnectResponse> TaskService::Connect(const ttrpc::CallContext&, const pb::ConnectRequest& req) {
  pb::ConnectResponse resp;
  resp.set_shim_pid(static_cast<uint32_t>(::getpid()));
  resp.set_version(options_.version);
  if (absl::StatusOr<std::shared_ptr<Task>> task = Find(req.id()); task.ok()) {
    resp.set_task_pid(PidOf(**task));
  }
  return resp;
}

absl::StatusOr<google::protobuf::Empty> TaskService::Shutdown(const ttrpc::CallContext&, const pb::ShutdownRequest& req) {
  // As runc's shim: a shim that still serves a task of the Pod stays.
  if ((req.now() || tasks() == 0) && options_.shutdown) options_.shutdown();
  return google::protobuf::Empty();
}

void TaskService::Register(ttrpc::Server* server) {
  const std::string svc(kTaskService);
  auto bind = [this](auto method) {
    return [this, method](const ttrpc::CallContext& ctx, const auto& req) { return (this->*method)(ctx, req); };
  };
  server->Register(svc, std::string(kTaskCreate),
                   ttrpc::Typed<pb::CreateTaskRequest, pb::CreateTaskResponse>(bind(&TaskService::Create)));
  server->Register(svc, std::string(kTaskStart), ttrpc::Typed<pb::StartRequest, pb::StartResponse>(bind(&TaskService::Start)));
  server->Register(svc, std::string(kTaskState), ttrpc::Typed<pb::StateRequest, pb::StateResponse>(bind(&TaskService::State)));
  server->Register(svc, std::string(kTaskWait), ttrpc::Typed<pb::WaitRequest, pb::WaitResponse>(bind(&TaskService::Wait)));
  server->Register(svc, std::string(kTaskKill), ttrpc::Typed<pb::KillRequest, google::protobuf::Empty>(bind(&TaskService::Kill)));
  server->Register(svc, std::string(kTaskDelete),
                   ttrpc::Typed<pb::DeleteRequest, pb::DeleteResponse>(bind(&TaskService::Delete)));
  server->Register(svc, std::string(kTaskPids), ttrpc::Typed<pb::PidsRequest, pb::PidsResponse>(bind(&TaskService::Pids)));
  server->Register(svc, std::string(kTaskConnect),
                   ttrpc::Typed<pb::ConnectRequest, pb::ConnectResponse>(bind(&TaskService::Connect)));
  server->Register(svc, std::string(kTaskShutdown),
                   ttrpc::Typed<pb::ShutdownRequest, google::protobuf::Empty>(bind(&TaskService::Shutdown)));
  // What a VM Pod's sandbox task has no use for, said clearly rather than
  // left to ttrpc's bare "method X".
  auto refuse = [](absl::Status s) {
    return [s](const ttrpc::CallContext&, std::string_view) -> absl::StatusOr<std::string> { return s; };
  };
  for (std::string_view m : {kTaskPause, kTaskResume, kTaskCheckpoint}) {
    server->Register(svc, std::string(m),
                     refuse(absl::UnimplementedError(base::StrCat(
                         m, " is not supported by containerd-shim-kubevirt-v1: a VM Pod is not frozen or checkpointed "
                            "through containerd"))));
  }
  server->Register(svc, std::string(kTaskStats), ttrpc::Typed<pb::StatsRequest, pb::StatsResponse>(bind(&TaskService::Stats)));
  server->Register(svc, std::string(kTaskExec),
                   ttrpc::Typed<pb::ExecProcessRequest, google::protobuf::Empty>(bind(&TaskService::Exec)));
  server->Register(svc, std::string(kTaskResizePty),
                   ttrpc::Typed<pb::ResizePtyRequest, google::protobuf::Empty>(bind(&TaskService::ResizePty)));
  server->Register(svc, std::string(kTaskCloseIO),
                   ttrpc::Typed<pb::CloseIORequest, google::protobuf::Empty>(bind(&TaskService::CloseIO)));
  server->Register(svc, std::string(kTaskUpdate),
                   ttrpc::Typed<pb::UpdateTaskRequest, google::protobuf::Empty>(bind(&TaskService::Update)));
}

}  // namespace kvcri::shim::containerd
