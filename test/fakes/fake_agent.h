// Fake guest agents for the exec dispatcher's unit tests: a scripted kvcri-agent (AgentClient, Process) and a scripted qemu-guest-agent.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <csignal>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "config/base/unique_fd.h"
#include "cri/exec_dispatch.h"
#include "runtime/agent/agent_client.h"

namespace kvcri::testing {

// What a fake guest process does and what was done to it. The script (the
// "guest") and the Process handle (the host) share it.
class FakeGuestProcess {
 public:
  // Guest side.
  void Emit(runtime::agent::Output which, const std::string& data) {
    absl::MutexLock l(&mu);
    (which == runtime::agent::Output::kStdout ? out : err).append(data);
  }
  // The process ends: its outputs close, Wait returns `code`.
  void Exit(int code) {
    absl::MutexLock l(&mu);
    if (exit_code) return;
    exit_code = code;
  }
  // Blocks until stdin holds something or was closed; takes what it holds.
  std::optional<std::string> TakeStdin() {
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(+[](FakeGuestProcess* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) {
      return !p->in.empty() || p->stdin_closed || p->exit_code.has_value();
    }, this));
    if (in.empty()) return std::nullopt;
    return std::exchange(in, "");
  }
  // Blocks until the host resized the terminal (or the process ended).
  std::optional<std::pair<uint16_t, uint16_t>> WaitResize() {
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(+[](FakeGuestProcess* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) {
      return !p->resizes.empty() || p->exit_code.has_value();
    }, this));
    if (resizes.empty()) return std::nullopt;
    return resizes.back();
  }
  // Blocks until the process ended (killed or exited).
  void WaitExit() {
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(+[](FakeGuestProcess* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) {
      return p->exit_code.has_value();
    }, this));
  }
  std::vector<int> Signals() {
    absl::MutexLock l(&mu);
    return signals;
  }

  absl::Mutex mu;
  std::string out ABSL_GUARDED_BY(mu), err ABSL_GUARDED_BY(mu), in ABSL_GUARDED_BY(mu);
  bool stdin_closed ABSL_GUARDED_BY(mu) = false;
  std::vector<std::pair<uint16_t, uint16_t>> resizes ABSL_GUARDED_BY(mu);
  std::vector<int> signals ABSL_GUARDED_BY(mu);
  std::optional<int> exit_code ABSL_GUARDED_BY(mu);
};

// The host's handle on a FakeGuestProcess, with the agent's semantics:
// outputs end once the process exited and they are drained; SIGKILL ends it
// with 137; the destructor kills it.
class FakeProcess : public runtime::agent::Process {
 public:
  explicit FakeProcess(std::shared_ptr<FakeGuestProcess> g) : g_(std::move(g)) {}
  ~FakeProcess() override { Signal(SIGKILL).IgnoreError(); }
  absl::Status WriteStdin(std::string_view data) override {
    absl::MutexLock l(&g_->mu);
    if (g_->exit_code) return absl::FailedPreconditionError("process exited");
    g_->in.append(data);
    return absl::OkStatus();
  }
  absl::Status CloseStdin() override {
    absl::MutexLock l(&g_->mu);
    g_->stdin_closed = true;
    return absl::OkStatus();
  }
  absl::Status Resize(uint16_t w, uint16_t h) override {
    absl::MutexLock l(&g_->mu);
    g_->resizes.emplace_back(w, h);
    return absl::OkStatus();
  }
  absl::Status Signal(int signo) override {
    absl::MutexLock l(&g_->mu);
    g_->signals.push_back(signo);
    if (signo == SIGKILL && !g_->exit_code) g_->exit_code = 128 + SIGKILL;
    return absl::OkStatus();
  }
  absl::StatusOr<size_t> Read(runtime::agent::Output which, char* buf, size_t len) override {
    absl::MutexLock l(&g_->mu);
    std::string& src = which == runtime::agent::Output::kStdout ? g_->out : g_->err;
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_->mu) { return !src.empty() || g_->exit_code.has_value(); };
    g_->mu.Await(absl::Condition(&ready));
    size_t n = std::min(len, src.size());
    src.copy(buf, n);
    src.erase(0, n);
    return n;
  }
  absl::StatusOr<int> Wait(absl::Time deadline) override {
    absl::MutexLock l(&g_->mu);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_->mu) { return g_->exit_code.has_value(); };
    if (!g_->mu.AwaitWithDeadline(absl::Condition(&done), deadline)) return absl::DeadlineExceededError("wait");
    return *g_->exit_code;
  }

 private:
  std::shared_ptr<FakeGuestProcess> g_;
};

// A forwarded port: a real TCP connection to 127.0.0.1:<port> on the host,
// standing in for the guest's localhost.
class FakePortConnection : public runtime::agent::PortConnection {
 public:
  explicit FakePortConnection(base::UniqueFd fd) : fd_(std::move(fd)) {}
  absl::StatusOr<size_t> Read(char* buf, size_t len) override {
    ssize_t n = ::recv(fd_.get(), buf, len, 0);
    if (n < 0) return absl::ErrnoToStatus(errno, "recv");
    return static_cast<size_t>(n);
  }
  absl::Status Write(std::string_view d) override {
    while (!d.empty()) {
      ssize_t n = ::send(fd_.get(), d.data(), d.size(), MSG_NOSIGNAL);
      if (n < 0) return absl::ErrnoToStatus(errno, "send");
      d.remove_prefix(n);
    }
    return absl::OkStatus();
  }
  absl::Status CloseWrite() override {
    ::shutdown(fd_.get(), SHUT_WR);
    return absl::OkStatus();
  }

 private:
  base::UniqueFd fd_;
};

// A scripted kvcri-agent: each Exec runs `script` on a thread of its own
// (joined by the destructor) against a fresh FakeGuestProcess.
class FakeAgentClient : public runtime::agent::AgentClient {
 public:
  ~FakeAgentClient() override {
    for (std::thread& t : scripts_) t.join();
  }
  bool Alive() override { return true; }
  std::string AgentVersion() override { return "fake"; }
  absl::StatusOr<std::unique_ptr<runtime::agent::Process>> Exec(const runtime::agent::ExecOptions& o) override {
    auto g = std::make_shared<FakeGuestProcess>();
    {
      absl::MutexLock l(&mu);
      execs.push_back(o);
      procs.push_back(g);
    }
    scripts_.emplace_back([this, g] { script(*g); });
    return std::make_unique<FakeProcess>(g);
  }
  absl::StatusOr<std::unique_ptr<runtime::agent::PortConnection>> ConnectPort(uint16_t port) override {
    {
      absl::MutexLock l(&mu);
      ports.push_back(port);
    }
    base::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0) {
      return absl::UnavailableError("connection refused");
    }
    return std::make_unique<FakePortConnection>(std::move(fd));
  }

  // Set before the first Exec.
  std::function<void(FakeGuestProcess&)> script = [](FakeGuestProcess& p) { p.Exit(0); };
  absl::Mutex mu;
  std::vector<runtime::agent::ExecOptions> execs ABSL_GUARDED_BY(mu);
  std::vector<std::shared_ptr<FakeGuestProcess>> procs ABSL_GUARDED_BY(mu);
  std::vector<uint16_t> ports ABSL_GUARDED_BY(mu);

 private:
  std::vector<std::thread> scripts_;  // Exec is called from one test thread at a time
};

// GuestAgents over a FakeAgentClient (null: kvcri-agent does not answer) and
// a scripted qemu-guest-agent.
class FakeGuestAgents : public cri::GuestAgents {
 public:
  absl::StatusOr<std::shared_ptr<runtime::agent::AgentClient>> Agent(const std::string& key,
                                                                      const std::filesystem::path& socket) override {
    absl::MutexLock l(&mu);
    calls.push_back("Agent " + key.substr(0, 8) + " " + socket.string());
    if (agent == nullptr) return absl::UnavailableError("no hello");
    return agent;
  }
  void ForgetAgent(const std::string& key) override {
    absl::MutexLock l(&mu);
    calls.push_back("ForgetAgent " + key.substr(0, 8));
  }
  absl::Status QgaPing(std::string_view domain, absl::Duration) override {
    absl::MutexLock l(&mu);
    calls.push_back("QgaPing " + std::string(domain));
    return qga_ping;
  }
  absl::StatusOr<runtime::GuestExecResult> QgaExec(std::string_view domain, const std::vector<std::string>& argv,
                                                   std::string_view input, absl::Time deadline) override {
    std::function<absl::StatusOr<runtime::GuestExecResult>(const std::vector<std::string>&, std::string_view,
                                                           absl::Time)>
        fn;
    {
      absl::MutexLock l(&mu);
      calls.push_back("QgaExec " + std::string(domain) + " " + argv[0]);
      qga_inputs.emplace_back(input);
      fn = qga_exec;
    }
    return fn(argv, input, deadline);
  }
  std::vector<std::string> Calls() {
    absl::MutexLock l(&mu);
    return calls;
  }

  absl::Mutex mu;
  std::shared_ptr<FakeAgentClient> agent ABSL_GUARDED_BY(mu);
  absl::Status qga_ping ABSL_GUARDED_BY(mu) = absl::UnavailableError("no qemu-guest-agent");
  std::function<absl::StatusOr<runtime::GuestExecResult>(const std::vector<std::string>&, std::string_view,
                                                         absl::Time)>
      qga_exec ABSL_GUARDED_BY(mu) = [](const std::vector<std::string>&, std::string_view, absl::Time) {
        return runtime::GuestExecResult{};
      };
  std::vector<std::string> qga_inputs ABSL_GUARDED_BY(mu);
  std::vector<std::string> calls ABSL_GUARDED_BY(mu);
};

}  // namespace kvcri::testing
