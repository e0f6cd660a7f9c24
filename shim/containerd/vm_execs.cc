// VmExecs: one dispatcher session per Task Exec over containerd's FIFOs (vm_execs.h).
#include "shim/containerd/vm_execs.h"

#include <signal.h>

#include <nlohmann/json.hpp>

#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/exec_dispatch.h"
#include "shim/containerd/fifo_streams.h"
#include "shim/containerd/names.h"

namespace kvcri::shim::containerd {

using base::StrCat;

VmExecs::VmExecs(cri::ExecDispatcher* dispatcher, ExitFn on_exit)
    : dispatcher_(dispatcher), on_exit_(std::move(on_exit)) {}

VmExecs::~VmExecs() {
  std::vector<std::shared_ptr<Exec>> execs;
  std::vector<std::shared_ptr<FifoStreams>> running;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [key, e] : execs_) {
      e->killed = true;
      if (e->streams != nullptr) running.push_back(e->streams);
      execs.push_back(e);
    }
  }
  for (auto& streams : running) streams->Gone();  // outside mu_: the dispatcher's callbacks run here
  for (auto& e : execs) {
    if (e->thread.joinable()) e->thread.join();
  }
}

absl::StatusOr<std::shared_ptr<VmExecs::Exec>> VmExecs::Find(const std::string& container_id,
                                                             const std::string& exec_id) {
  absl::MutexLock lock(&mu_);
  auto it = execs_.find(Key(container_id, exec_id));
  if (it == execs_.end()) {
    return absl::NotFoundError(StrCat("exec \"", exec_id, "\" of task \"", container_id, "\" not found"));
  }
  return it->second;
}

absl::Status VmExecs::Add(const pb::ExecProcessRequest& req) {
  if (req.exec_id().empty()) return absl::InvalidArgumentError("ExecProcessRequest.exec_id is empty");
  if (req.spec().type_url() != kOciProcessTypeUrl) {
    return absl::InvalidArgumentError(
        StrCat("ExecProcessRequest.spec has type \"", req.spec().type_url(), "\", not ", kOciProcessTypeUrl));
  }
  // containerd's JSON of an OCI Process: only args and terminal matter in a
  // guest (env, cwd and user are the image's inside the VM).
  nlohmann::json spec = nlohmann::json::parse(req.spec().value(), nullptr, /*allow_exceptions=*/false);
  if (!spec.is_object()) return absl::InvalidArgumentError("ExecProcessRequest.spec is not an OCI Process JSON object");
  auto e = std::make_shared<Exec>();
  e->container_id = req.id();
  e->exec_id = req.exec_id();
  if (auto args = spec.find("args"); args != spec.end() && args->is_array()) {
    for (const auto& a : *args) {
      if (!a.is_string()) return absl::InvalidArgumentError("ExecProcessRequest.spec.args has a non-string entry");
      e->args.push_back(a.get<std::string>());
    }
  }
  if (e->args.empty()) return absl::InvalidArgumentError("ExecProcessRequest.spec.args is empty");
  auto terminal = spec.find("terminal");
  e->terminal = req.terminal() || (terminal != spec.end() && terminal->is_boolean() && terminal->get<bool>());
  e->stdin_path = req.stdin();
  e->stdout_path = req.stdout();
  e->stderr_path = req.stderr();
  absl::MutexLock lock(&mu_);
  if (execs_.size() >= kMaxExecs) {
    return absl::ResourceExhaustedError(StrCat("task \"", req.id(), "\" already has ", kMaxExecs, " execs"));
  }
  if (!execs_.emplace(Key(e->container_id, e->exec_id), e).second) {
    return absl::AlreadyExistsError(StrCat("exec \"", e->exec_id, "\" of task \"", e->container_id, "\" already exists"));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> VmExecs::Start(const std::string& container_id, const std::string& exec_id) {
  ASSIGN_OR_RETURN(std::shared_ptr<Exec> e, Find(container_id, exec_id));
  absl::MutexLock lock(&mu_);
  if (e->started) return absl::FailedPreconditionError(StrCat("exec \"", exec_id, "\" is already started"));
  e->started = true;
  e->thread = std::thread([this, e] { Run(e); });
  return 0;
}

void VmExecs::Run(const std::shared_ptr<Exec>& e) {
  streaming::CommandResult result;
  absl::StatusOr<std::unique_ptr<FifoStreams>> opened =
      FifoStreams::Open(e->stdin_path, e->stdout_path, e->stderr_path, e->terminal);
  std::shared_ptr<FifoStreams> streams;
  if (opened.ok()) {
    streams = *std::move(opened);
    bool killed;
    {
      absl::MutexLock lock(&mu_);
      e->streams = streams;
      killed = e->killed;
    }
    if (killed) streams->Gone();
    streaming::ExecSpec spec;
    spec.container_id = e->container_id;
    spec.cmd = e->args;
    spec.tty = e->terminal;
    spec.stdin = !e->stdin_path.empty();
    spec.stdout = !e->stdout_path.empty();
    spec.stderr = !e->stderr_path.empty() && !e->terminal;
    result = dispatcher_->Exec(spec, *streams);
  } else {
    result.status = opened.status();
  }
  VmExit exit{static_cast<uint32_t>(result.exit_code), absl::Now()};
  if (!result.status.ok()) {
    // Start has answered already: the reason goes where the caller reads.
    exit.status = kExecCannotRunStatus;
    streaming::ByteWriter* out = streams == nullptr ? nullptr : (e->terminal ? streams->Stdout() : streams->Stderr());
    if (out != nullptr) out->Write(StrCat("kubevirt-cri: ", result.status.message(), "\n")).IgnoreError();
    base::LogInfo("exec could not run",
                  {{"id", e->container_id}, {"exec_id", e->exec_id}, {"error", std::string(result.status.message())}});
  }
  if (streams != nullptr) {
    // Closing our ends is what tells containerd's copies the output ended.
    if (streams->Stdout() != nullptr) streams->Stdout()->CloseWrite().IgnoreError();
    if (streams->Stderr() != nullptr) streams->Stderr()->CloseWrite().IgnoreError();
  }
  {
    absl::MutexLock lock(&mu_);
    e->exit = exit;
    e->streams.reset();
  }
  if (on_exit_) on_exit_(e->container_id, e->exec_id, exit);
}

absl::StatusOr<pb::Status> VmExecs::State(const std::string& container_id, const std::string& exec_id,
                                          std::optional<VmExit>* exit) {
  ASSIGN_OR_RETURN(std::shared_ptr<Exec> e, Find(container_id, exec_id));
  absl::MutexLock lock(&mu_);
  *exit = e->exit;
  if (e->exit.has_value()) return pb::STOPPED;
  return e->started ? pb::RUNNING : pb::CREATED;
}

absl::StatusOr<VmExit> VmExecs::Wait(const std::string& container_id, const std::string& exec_id,
                                     const ttrpc::CallContext& ctx) {
  ASSIGN_OR_RETURN(std::shared_ptr<Exec> e, Find(container_id, exec_id));
  std::unique_ptr<ttrpc::CancelSubscription> sub;
  if (ctx.cancel) sub = std::make_unique<ttrpc::CancelSubscription>(ctx.cancel, [this] { absl::MutexLock wake(&mu_); });
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return e->exit.has_value() || (ctx.cancel && ctx.cancel->cancelled());
  };
  if (!mu_.AwaitWithDeadline(absl::Condition(&done), ctx.deadline)) {
    return absl::DeadlineExceededError("the exec did not exit before the call's deadline");
  }
  if (e->exit.has_value()) return *e->exit;
  return absl::CancelledError("the connection of the Wait call ended");
}

absl::Status VmExecs::Signal(const std::string& container_id, const std::string& exec_id, int signal) {
  ASSIGN_OR_RETURN(std::shared_ptr<Exec> e, Find(container_id, exec_id));
  std::shared_ptr<FifoStreams> streams;
  {
    absl::MutexLock lock(&mu_);
    if (e->exit.has_value()) return absl::NotFoundError(StrCat("exec \"", exec_id, "\": process already finished"));
    // The agents end a guest process only by killing it (the client gone):
    // every signal containerd sends an exec (its ExecSync timeout's SIGKILL,
    // a stop) ends it.
    e->killed = true;
    streams = e->streams;
  }
  base::LogInfo("exec signalled", {{"id", container_id}, {"exec_id", exec_id}, {"signal", StrCat(signal)}});
  if (streams != nullptr) streams->Gone();
  return absl::OkStatus();
}

absl::Status VmExecs::Resize(const std::string& container_id, const std::string& exec_id, uint32_t width,
                             uint32_t height) {
  ASSIGN_OR_RETURN(std::shared_ptr<Exec> e, Find(container_id, exec_id));
  if (width > 0xffff || height > 0xffff) {
    return absl::InvalidArgumentError(StrCat("ResizePtyRequest ", width, "x", height, " is larger than a terminal"));
  }
  absl::MutexLock lock(&mu_);
  if (e->streams != nullptr) {
    e->streams->Resize({static_cast<uint16_t>(width), static_cast<uint16_t>(height)});
  }
  return absl::OkStatus();
}

absl::StatusOr<VmExit> VmExecs::Delete(const std::string& container_id, const std::string& exec_id) {
  ASSIGN_OR_RETURN(std::shared_ptr<Exec> e, Find(container_id, exec_id));
  std::thread ended;
  VmExit exit;
  {
    absl::MutexLock lock(&mu_);
    if (e->started && !e->exit.has_value()) {
      return absl::FailedPreconditionError(StrCat("exec \"", exec_id, "\" is still running: kill it first"));
    }
    exit = e->exit.value_or(VmExit{0, absl::Now()});
    ended = std::move(e->thread);
    execs_.erase(Key(container_id, exec_id));
  }
  // Its session is over (exit set); the thread is only returning.
  if (ended.joinable()) ended.join();
  return exit;
}

}  // namespace kvcri::shim::containerd
