// ExecDispatcher: agent choice, ExecSync with CRI timeouts, exec pumps between the client's streams and the guest, attach, port-forward.
#include "cri/exec_dispatch.h"

#include <csignal>
#include <functional>
#include <optional>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "config/base/file_util.h"
#include "config/base/str.h"
#include "config/base/log.h"
#include "runtime/microvm/container_runner.h"
#include "runtime/microvm/share_fs.h"
#include "cri/port_forward.h"
#include "runtime/console_attach.h"
#include "runtime/hypervisor.h"
#include "sandbox/records.h"
#include "sandbox/sandbox_store.h"

namespace kvcri::cri {
namespace {

using runtime::agent::Output;
using streaming::CommandResult;

constexpr size_t kPumpChunk = 32 << 10;

// Appends to `out` up to `cap` bytes in total; the rest is dropped (the
// caller keeps reading so the command never blocks on a full pipe).
void AppendCapped(std::string& out, std::string_view data, size_t cap) {
  if (out.size() < cap) out.append(data.substr(0, cap - out.size()));
}

// Reads `which` of `proc` to its end into `out` (capped).
absl::Status ReadAll(runtime::agent::Process& proc, Output which, std::string& out, size_t cap) {
  std::string buf(kPumpChunk, '\0');
  for (;;) {
    absl::StatusOr<size_t> n = proc.Read(which, buf.data(), buf.size());
    if (!n.ok()) return n.status();
    if (*n == 0) return absl::OkStatus();
    AppendCapped(out, std::string_view(buf.data(), *n), cap);
  }
}

// Copies `which` of `proc` to `to` (null: the client did not ask for it; the
// output is still drained so the process does not block on it). After the
// client's stream failed the output keeps being drained: the process was
// killed by then and its last bytes must not stall the agent's session.
void PumpOutput(runtime::agent::Process& proc, Output which, streaming::ByteWriter* to) {
  std::string buf(kPumpChunk, '\0');
  bool client_ok = to != nullptr;
  for (;;) {
    absl::StatusOr<size_t> n = proc.Read(which, buf.data(), buf.size());
    if (!n.ok() || *n == 0) break;
    if (client_ok && !to->Write(std::string_view(buf.data(), *n)).ok()) client_ok = false;
  }
  if (client_ok) to->CloseWrite().IgnoreError();  // the session ends right after anyway
}

// Kills the guest process when the client goes away, even if the callback
// fires after the session ended (it may run at any time, from any thread).
// Its mutex is held across the SIGKILL: it only orders the kill against the
// end of the session, no other call waits for it.
struct KillOnClientGone {
  absl::Mutex mu;
  runtime::agent::Process* proc ABSL_GUARDED_BY(mu) = nullptr;
  bool gone ABSL_GUARDED_BY(mu) = false;
};

absl::Status NoConsoleSocket(std::string_view container_id) {
  return absl::FailedPreconditionError(base::StrCat(
      "container ", container_id,
      ": attach needs the VM's console socket, which VMs created before kubevirt-cri had attach lack; "
      "recreate the Pod"));
}

std::string TimeoutText(absl::Duration timeout) { return base::StrCat(absl::ToInt64Seconds(timeout), "s"); }

}  // namespace

std::string NoGuestAgentMessage(std::string_view container_id, std::string_view what) {
  return base::StrCat("container ", container_id, ": ", what, " needs a guest agent: neither kvcri-agent (virtio-serial channel ",
                      runtime::agent::kAgentChannelName, ") nor qemu-guest-agent (", kQemuGuestAgentChannelName,
                      ") answers in the VM; see docs/exec.md");
}

ExecDispatcher::ExecDispatcher(sandbox::SandboxStore* store, runtime::Hypervisor* hypervisor, GuestAgents* agents,
                               runtime::ConsoleHubs* consoles, ExecDispatcherOptions options)
    : store_(store), hypervisor_(hypervisor), agents_(agents), consoles_(consoles), options_(options) {}

absl::StatusOr<sandbox::ContainerRecord> ExecDispatcher::RunningRecord(const std::string& container_id) {
  absl::StatusOr<sandbox::ContainerRecord> c = store_->GetContainer(container_id);
  if (absl::IsNotFound(c.status())) {
    return absl::NotFoundError(base::StrCat("container_id \"", container_id, "\": no such container"));
  }
  if (!c.ok()) return c.status();
  if (c->state != sandbox::ContainerState::kRunning) {
    return absl::FailedPreconditionError(base::StrCat("container ", container_id, " is in state ",
                                                      sandbox::ContainerStateName(c->state), ", not RUNNING"));
  }
  return c;
}

absl::Status ExecDispatcher::CheckRunning(const std::string& container_id) {
  return RunningRecord(container_id).status();
}

absl::Status ExecDispatcher::CheckAttachable(const std::string& container_id) {
  absl::StatusOr<sandbox::ContainerRecord> record = RunningRecord(container_id);
  if (!record.ok()) return record.status();
  if (record->boot.kind == sandbox::BootKind::kMicroVm) {
    return absl::UnimplementedError(base::StrCat(
        "container ", container_id, ": attach to a plain-image container is not supported yet; its output is "
        "in its CRI log (kubectl logs -f), and kubectl exec runs commands in it (docs/microvm.md)"));
  }
  if (record->console_socket.empty()) return NoConsoleSocket(container_id);
  return absl::OkStatus();
}

absl::Status ExecDispatcher::CheckSandboxReady(const std::string& pod_sandbox_id) {
  absl::StatusOr<sandbox::SandboxRecord> s = store_->GetSandbox(pod_sandbox_id);
  if (absl::IsNotFound(s.status())) {
    return absl::NotFoundError(base::StrCat("pod_sandbox_id \"", pod_sandbox_id, "\": no such sandbox"));
  }
  if (!s.ok()) return s.status();
  if (s->state != sandbox::SandboxState::kReady) {
    return absl::FailedPreconditionError(base::StrCat("sandbox ", pod_sandbox_id, " is not ready"));
  }
  return absl::OkStatus();
}

std::shared_ptr<runtime::agent::AgentClient> ExecDispatcher::AgentOf(const std::string& domain, const std::string& key,
                                                                   const std::string& socket) {
  if (socket.empty()) return nullptr;  // a VM made before the channel existed
  absl::StatusOr<bool> open = hypervisor_->GuestChannelConnected(domain, runtime::agent::kAgentChannelName);
  // A driver without channel state: the hello (bounded by its timeout) decides.
  if (open.ok() && !*open) return nullptr;
  if (!open.ok() && !absl::IsUnimplemented(open.status())) return nullptr;
  absl::StatusOr<std::shared_ptr<runtime::agent::AgentClient>> agent = agents_->Agent(key, socket);
  if (!agent.ok()) {
    base::LogDebug("kvcri-agent does not answer", {{"domain", domain}, {"error", std::string(agent.status().message())}});
    return nullptr;
  }
  return *agent;
}

std::shared_ptr<runtime::agent::AgentClient> ExecDispatcher::PodVmAgent(const sandbox::SandboxRecord& sb) {
  if (sb.pod_vm.domain_name.empty()) return nullptr;
  // Keyed by the sandbox: the Pod's containers share its one channel.
  return AgentOf(sb.pod_vm.domain_name, sb.id, sb.pod_vm.agent_socket);
}

ExecDispatcher::ExecProcessFile::~ExecProcessFile() {
  if (bundle.valid() && !name.empty()) ::unlinkat(bundle.get(), name.c_str(), 0);
}

absl::StatusOr<std::vector<std::string>> ExecDispatcher::AgentArgv(const Choice& choice,
                                                                  const std::vector<std::string>& cmd, bool tty,
                                                                  ExecProcessFile* file) {
  if (choice.crun_id.empty()) return cmd;
  // The container's own process with the exec's args, as containerd makes
  // an exec's: same user, groups, capabilities, env, cwd.
  nlohmann::json process = nlohmann::json::parse(choice.exec_process, nullptr, /*allow_exceptions=*/false);
  if (!process.is_object()) {
    return absl::FailedPreconditionError(
        base::StrCat("container ", choice.crun_id, " has no exec process in its record (made by an older version?)"));
  }
  process["args"] = cmd;
  process["terminal"] = tty;
  if (tty && process["env"].is_array()) {
    nlohmann::json env = nlohmann::json::array();
    for (const nlohmann::json& e : process["env"]) {
      if (!e.is_string() || e.get_ref<const std::string&>().rfind("TERM=", 0) != 0) env.push_back(e);
    }
    env.push_back("TERM=xterm");  // as containerd sets it for a tty exec
    process["env"] = std::move(env);
  }
  const std::filesystem::path bundle(choice.bundle_dir);
  absl::StatusOr<base::UniqueFd> share = runtime::microvm::OpenDir(bundle.parent_path());
  if (!share.ok()) return share.status();
  absl::StatusOr<base::UniqueFd> dir = runtime::microvm::OpenDirAt(share->get(), bundle.filename());
  if (!dir.ok()) return dir.status();
  absl::StatusOr<std::string> suffix = base::RandomHex(8);
  if (!suffix.ok()) return suffix.status();
  file->name = base::StrCat("exec-", *suffix, ".json");
  if (absl::Status w = runtime::microvm::WriteFileAt(dir->get(), file->name, process.dump(), 0644); !w.ok()) {
    file->name.clear();
    return w;
  }
  file->bundle = *std::move(dir);
  return std::vector<std::string>{
      "crun", "exec", "--process",
      base::StrCat(runtime::microvm::kGuestShareDir, "/", choice.crun_id, "/", file->name), choice.crun_id};
}

std::shared_ptr<runtime::agent::AgentClient> ExecDispatcher::KvcriAgent(const sandbox::ContainerRecord& record) {
  if (record.boot.kind == sandbox::BootKind::kMicroVm) {
    absl::StatusOr<sandbox::SandboxRecord> sb = store_->GetSandbox(record.sandbox_id);
    return sb.ok() ? PodVmAgent(*sb) : nullptr;
  }
  return AgentOf(record.domain_name, record.id, record.agent_socket);
}

bool ExecDispatcher::QgaAnswers(const sandbox::ContainerRecord& record) {
  const absl::Time now = absl::Now();
  {
    absl::MutexLock l(&mu_);
    auto it = qga_pings_.find(record.id);
    if (it != qga_pings_.end() && now - it->second.at < options_.qga_ping_cache) return it->second.ok;
  }
  // The ping runs unlocked: a guest that does not answer delays only this call.
  const bool ok = agents_->QgaPing(record.domain_name, options_.qga_ping_timeout).ok();
  absl::MutexLock l(&mu_);
  qga_pings_[record.id] = PingAnswer{ok, absl::Now()};
  return ok;
}

absl::StatusOr<ExecDispatcher::Choice> ExecDispatcher::Choose(const sandbox::ContainerRecord& record, bool qga_ok,
                                                              std::string_view what) {
  Choice choice;
  choice.agent = KvcriAgent(record);
  if (record.boot.kind == sandbox::BootKind::kMicroVm) {
    // crun in the micro-VM, which always runs kvcri-agent as its init.
    if (choice.agent == nullptr) {
      return absl::UnavailableError(base::StrCat("container ", record.id, ": the kvcri-agent of its Pod's micro-VM does "
                                                 "not answer (is the micro-VM still running?)"));
    }
    choice.crun_id = record.id;
    choice.bundle_dir = record.bundle_dir;
    choice.exec_process = record.exec_process;
    return choice;
  }
  if (choice.agent != nullptr) return choice;
  if (qga_ok && QgaAnswers(record)) {
    choice.qga = true;
    return choice;
  }
  if (!qga_ok) {
    return absl::FailedPreconditionError(base::StrCat(
        "container ", record.id, ": ", what, " needs a guest agent: neither kvcri-agent (virtio-serial channel ",
        runtime::agent::kAgentChannelName, ") answers in the VM nor can qemu-guest-agent (", kQemuGuestAgentChannelName,
        ") run a command on a tty; see docs/exec.md"));
  }
  return absl::FailedPreconditionError(NoGuestAgentMessage(record.id, what));
}

void ExecDispatcher::Forget(const std::string& container_id) {
  agents_->ForgetAgent(container_id);
  absl::MutexLock l(&mu_);
  qga_pings_.erase(container_id);
}

// ---- ExecSync ----

absl::StatusOr<ExecSyncResult> ExecDispatcher::ExecSync(const std::string& container_id,
                                                        const std::vector<std::string>& cmd,
                                                        absl::Duration timeout) {
  absl::StatusOr<sandbox::ContainerRecord> record = RunningRecord(container_id);
  if (!record.ok()) return record.status();
  absl::StatusOr<Choice> choice = Choose(*record, /*qga_ok=*/true, "exec");
  if (!choice.ok()) return choice.status();
  if (choice->agent != nullptr) {
    ExecProcessFile file;
    absl::StatusOr<std::vector<std::string>> argv = AgentArgv(*choice, cmd, /*tty=*/false, &file);
    if (!argv.ok()) return argv.status();
    return ExecSyncThroughAgent(*choice->agent, container_id, *argv, timeout, /*term_first=*/!choice->crun_id.empty());
  }

  const absl::Time deadline = timeout > absl::ZeroDuration() ? absl::Now() + timeout : absl::InfiniteFuture();
  absl::StatusOr<runtime::GuestExecResult> r = agents_->QgaExec(record->domain_name, cmd, "", deadline);
  if (absl::IsDeadlineExceeded(r.status())) {
    return absl::DeadlineExceededError(base::StrCat("container ", container_id, ": timeout ", TimeoutText(timeout),
                                                    " exceeded: the command was killed"));
  }
  if (!r.ok()) return r.status();
  ExecSyncResult out;
  out.exit_code = r->exit_code;
  out.stdout_data = std::move(r->stdout_data);
  out.stderr_data = std::move(r->stderr_data);
  if (out.stdout_data.size() > options_.max_exec_sync_output_bytes) out.stdout_data.resize(options_.max_exec_sync_output_bytes);
  if (out.stderr_data.size() > options_.max_exec_sync_output_bytes) out.stderr_data.resize(options_.max_exec_sync_output_bytes);
  return out;
}

absl::StatusOr<ExecSyncResult> ExecDispatcher::ExecSyncThroughAgent(runtime::agent::AgentClient& agent,
                                                                    const std::string& id,
                                                                    const std::vector<std::string>& cmd,
                                                                    absl::Duration timeout, bool term_first) {
  runtime::agent::ExecOptions opts;
  opts.argv = cmd;
  absl::StatusOr<std::unique_ptr<runtime::agent::Process>> proc = agent.Exec(opts);
  if (!proc.ok()) return proc.status();
  runtime::agent::Process& p = **proc;

  const size_t cap = options_.max_exec_sync_output_bytes;
  ExecSyncResult out;
  absl::Status err_status;
  std::thread err_reader([&] { err_status = ReadAll(p, Output::kStderr, out.stderr_data, cap); });
  // The wait runs beside the stdout read: the deadline must hold even while
  // the command keeps its output open.
  absl::StatusOr<int> code = absl::UnknownError("not waited");
  bool timed_out = false;
  std::thread waiter([&] {
    const absl::Time deadline = timeout > absl::ZeroDuration() ? absl::Now() + timeout : absl::InfiniteFuture();
    code = p.Wait(deadline);
    if (absl::IsDeadlineExceeded(code.status())) {
      timed_out = true;
      if (term_first) {
        p.Signal(SIGTERM).IgnoreError();
        code = p.Wait(absl::Now() + absl::Seconds(1));
        if (code.ok()) return;
      }
      p.Signal(SIGKILL).IgnoreError();  // it may have just exited; Wait tells
      code = p.Wait(absl::Now() + options_.kill_wait);
    }
  });
  absl::Status out_status = ReadAll(p, Output::kStdout, out.stdout_data, cap);
  err_reader.join();
  waiter.join();
  if (timed_out) {
    return absl::DeadlineExceededError(
        base::StrCat("container ", id, ": timeout ", TimeoutText(timeout), " exceeded: the command was killed"));
  }
  if (!code.ok()) return code.status();
  if (!out_status.ok()) return out_status;
  if (!err_status.ok()) return err_status;
  out.exit_code = *code;
  return out;
}

// ---- Exec ----

CommandResult ExecDispatcher::Exec(const streaming::ExecSpec& spec, streaming::RemoteCommandStreams& streams) {
  absl::StatusOr<sandbox::ContainerRecord> record = RunningRecord(spec.container_id);
  if (!record.ok()) return {record.status()};
  absl::StatusOr<Choice> choice = Choose(*record, /*qga_ok=*/!spec.tty, spec.tty ? "tty exec" : "exec");
  if (!choice.ok()) return {choice.status()};
  if (choice->agent != nullptr) {
    streaming::ExecSpec wrapped = spec;
    ExecProcessFile file;
    absl::StatusOr<std::vector<std::string>> argv = AgentArgv(*choice, spec.cmd, spec.tty, &file);
    if (!argv.ok()) return {argv.status()};
    wrapped.cmd = *std::move(argv);
    return ExecThroughAgent(*choice->agent, wrapped, streams, /*set_term=*/choice->crun_id.empty());
  }
  return ExecThroughQga(record->domain_name, spec, streams);
}

CommandResult ExecDispatcher::ExecThroughAgent(runtime::agent::AgentClient& agent, const streaming::ExecSpec& spec,
                                               streaming::RemoteCommandStreams& streams, bool set_term) {
  runtime::agent::ExecOptions opts;
  opts.argv = spec.cmd;
  opts.tty = spec.tty;
  opts.stdin = spec.stdin && streams.Stdin() != nullptr;
  if (spec.tty && set_term) opts.env = {"TERM=xterm"};  // as containerd sets it for a tty exec
  absl::StatusOr<std::unique_ptr<runtime::agent::Process>> proc = agent.Exec(opts);
  if (!proc.ok()) return {proc.status()};
  runtime::agent::Process& p = **proc;

  auto killer = std::make_shared<KillOnClientGone>();
  {
    absl::MutexLock l(&killer->mu);
    killer->proc = &p;
  }
  streams.OnClientGone([killer] {
    absl::MutexLock l(&killer->mu);
    killer->gone = true;
    if (killer->proc != nullptr) killer->proc->Signal(SIGKILL).IgnoreError();
  });

  std::vector<std::thread> readers;  // end at the client's EOF or StopReading
  if (opts.stdin) {
    readers.emplace_back([&p, in = streams.Stdin()] {
      std::string buf(kPumpChunk, '\0');
      for (;;) {
        absl::StatusOr<size_t> n = in->Read(buf.data(), buf.size());
        if (!n.ok()) return;  // the client went away or the session is over
        if (*n == 0) {
          p.CloseStdin().IgnoreError();  // the process may be gone already
          return;
        }
        if (!p.WriteStdin(std::string_view(buf.data(), *n)).ok()) return;
      }
    });
  }
  if (spec.tty) {
    readers.emplace_back([&p, &streams] {
      while (std::optional<streaming::TerminalSize> size = streams.NextResize()) {
        p.Resize(size->width, size->height).IgnoreError();  // a lost resize only mis-sizes the terminal
      }
    });
  }
  std::vector<std::thread> outputs;
  outputs.emplace_back([&p, out = streams.Stdout()] { PumpOutput(p, Output::kStdout, out); });
  if (!spec.tty) outputs.emplace_back([&p, err = streams.Stderr()] { PumpOutput(p, Output::kStderr, err); });

  absl::StatusOr<int> code = p.Wait(absl::InfiniteFuture());
  for (std::thread& t : outputs) t.join();
  streams.StopReading();
  for (std::thread& t : readers) t.join();
  bool gone;
  {
    absl::MutexLock l(&killer->mu);
    killer->proc = nullptr;  // `p` dies with this frame
    gone = killer->gone;
  }
  if (!code.ok()) return {code.status()};
  if (gone) base::LogInfo("exec ended: client gone, process killed", {{"container", spec.container_id}});
  return {absl::OkStatus(), *code};
}

CommandResult ExecDispatcher::ExecThroughQga(const std::string& domain, const streaming::ExecSpec& spec,
                                             streaming::RemoteCommandStreams& streams) {
  // guest-exec takes stdin up front: read it all (bounded) before the run.
  std::string input;
  if (spec.stdin && streams.Stdin() != nullptr) {
    std::string buf(kPumpChunk, '\0');
    for (;;) {
      absl::StatusOr<size_t> n = streams.Stdin()->Read(buf.data(), buf.size());
      if (!n.ok()) return {n.status()};
      if (*n == 0) break;
      if (input.size() + *n > options_.max_qga_stdin_bytes) {
        return {absl::ResourceExhaustedError(base::StrCat(
            "container ", spec.container_id, ": stdin over ", options_.max_qga_stdin_bytes,
            " bytes; qemu-guest-agent takes stdin in one piece (kvcri-agent streams it, see docs/exec.md)"))};
      }
      input.append(buf.data(), *n);
    }
  }
  absl::StatusOr<runtime::GuestExecResult> r = agents_->QgaExec(domain, spec.cmd, input, absl::InfiniteFuture());
  if (!r.ok()) return {r.status()};
  if (streams.Stdout() != nullptr && !r->stdout_data.empty()) {
    if (absl::Status s = streams.Stdout()->Write(r->stdout_data); !s.ok()) return {s};
  }
  if (streams.Stderr() != nullptr && !r->stderr_data.empty()) {
    if (absl::Status s = streams.Stderr()->Write(r->stderr_data); !s.ok()) return {s};
  }
  return {absl::OkStatus(), r->exit_code};
}

// ---- Attach ----

CommandResult ExecDispatcher::Attach(const streaming::AttachSpec& spec, streaming::RemoteCommandStreams& streams) {
  absl::StatusOr<sandbox::ContainerRecord> record = RunningRecord(spec.container_id);
  if (!record.ok()) return {record.status()};
  if (record->console_socket.empty()) {
    return {NoConsoleSocket(spec.container_id)};
  }
  absl::StatusOr<std::unique_ptr<runtime::ConsoleAttacher>> attacher =
      consoles_->Attach(spec.container_id, record->console_socket);
  if (!attacher.ok()) return {attacher.status()};
  // Shared with the client-gone callback, which may outlive this call.
  std::shared_ptr<runtime::ConsoleAttacher> a = std::move(*attacher);
  streams.OnClientGone([a] { a->Close(); });

  std::optional<std::thread> input;
  // Without a tty, attach only watches: typing into a serial console needs a
  // terminal on the client's side to make sense of the echo.
  if (spec.tty && spec.stdin && streams.Stdin() != nullptr) {
    input.emplace([a, in = streams.Stdin()] {
      std::string buf(kPumpChunk, '\0');
      for (;;) {
        absl::StatusOr<size_t> n = in->Read(buf.data(), buf.size());
        if (!n.ok() || *n == 0) return;  // detach of stdin; the output goes on
        if (!a->Write(std::string_view(buf.data(), *n)).ok()) return;
      }
    });
  }
  // A serial console has no window size; resizes are read and dropped so
  // they never pile up in the client's stream.
  std::optional<std::thread> resizes;
  if (spec.tty) {
    resizes.emplace([&streams] {
      while (streams.NextResize()) {
      }
    });
  }
  absl::Status result;
  streaming::ByteWriter* out = streams.Stdout();
  for (;;) {
    absl::StatusOr<std::string> chunk = a->Next();
    if (!chunk.ok()) {
      if (!absl::IsCancelled(chunk.status())) result = chunk.status();  // Cancelled: the client left
      break;
    }
    if (chunk->empty()) break;  // the console closed: the VM stopped
    if (out != nullptr && !out->Write(*chunk).ok()) break;
  }
  a->Close();
  streams.StopReading();
  if (input) input->join();
  if (resizes) resizes->join();
  return {result};
}

// ---- PortForward ----

absl::Status ExecDispatcher::PortForward(const std::string& pod_sandbox_id, uint16_t port,
                                         streaming::ByteStream& stream) {
  absl::StatusOr<sandbox::SandboxRecord> sandbox = store_->GetSandbox(pod_sandbox_id);
  if (absl::IsNotFound(sandbox.status())) {
    return absl::NotFoundError(base::StrCat("pod_sandbox_id \"", pod_sandbox_id, "\": no such sandbox"));
  }
  if (!sandbox.ok()) return sandbox.status();
  if (sandbox->state != sandbox::SandboxState::kReady) {
    return absl::FailedPreconditionError(base::StrCat("sandbox ", pod_sandbox_id, " is not ready"));
  }
  // The Pod's VM: its running container. kvcri-agent reaches the guest's own
  // 127.0.0.1, which is what port-forward means for a Pod.
  std::vector<sandbox::ContainerRecord> vms = store_->ListContainers([&](const sandbox::ContainerRecord& c) {
    return c.sandbox_id == pod_sandbox_id && c.state == sandbox::ContainerState::kRunning;
  });
  std::unique_ptr<PodConnection> conn;
  // A Pod micro-VM's containers share its network: its agent reaches their 127.0.0.1.
  if (std::shared_ptr<runtime::agent::AgentClient> agent = PodVmAgent(*sandbox); agent != nullptr) {
    absl::StatusOr<std::unique_ptr<runtime::agent::PortConnection>> pc = agent->ConnectPort(port);
    if (!pc.ok()) {
      return absl::Status(pc.status().code(), base::StrCat("port ", port, " in the micro-VM of sandbox ", pod_sandbox_id,
                                                           ": ", pc.status().message()));
    }
    conn = WrapAgentPort(std::move(*pc));
  }
  for (const sandbox::ContainerRecord& vm : vms) {
    if (conn != nullptr) break;
    if (vm.boot.kind == sandbox::BootKind::kMicroVm) continue;
    std::shared_ptr<runtime::agent::AgentClient> agent = KvcriAgent(vm);
    if (agent == nullptr) continue;
    absl::StatusOr<std::unique_ptr<runtime::agent::PortConnection>> pc = agent->ConnectPort(port);
    if (!pc.ok()) {
      return absl::Status(pc.status().code(),
                          base::StrCat("port ", port, " in the guest of sandbox ", pod_sandbox_id, ": ", pc.status().message()));
    }
    conn = WrapAgentPort(std::move(*pc));
    break;
  }
  if (conn == nullptr) {
    // No agent: the Pod IP, from the host's network namespace (the Pod's own
    // netns has no usable IP stack: its eth0 is redirected into the tap).
    if (sandbox->network.ip.empty()) {
      return absl::FailedPreconditionError(base::StrCat(
          "sandbox ", pod_sandbox_id,
          ": port-forward needs kvcri-agent in the guest or a Pod IP, and this Pod has neither"
          " (host network or no CNI result); see docs/exec.md"));
    }
    absl::StatusOr<std::unique_ptr<PodConnection>> tcp = DialPodTcp(sandbox->network.ip, port, options_.dial_timeout);
    if (!tcp.ok()) return tcp.status();
    conn = std::move(*tcp);
  }
  return CopyBothWays(stream, *conn);
}

}  // namespace kvcri::cri
