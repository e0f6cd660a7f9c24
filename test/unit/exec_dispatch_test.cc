// The exec dispatcher against fake agents and client streams: agent choice, FAILED_PRECONDITION messages, ExecSync timeouts, exec pumps, attach fan-out, port-forward copying.
#include "cri/exec_dispatch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <csignal>
#include <filesystem>
#include <thread>

#include "config/base/unique_fd.h"
#include "cri/port_forward.h"
#include "runtime/console_attach.h"
#include "sandbox/file_sandbox_store.h"
#include "test/fakes/fake_agent.h"
#include "test/fakes/fake_hypervisor.h"
#include "test/fakes/fake_streams.h"

namespace kvcri::cri {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::FakeAgentClient;
using testing::FakeByteStream;
using testing::FakeGuestAgents;
using testing::FakeGuestProcess;
using testing::FakeHypervisor;
using testing::FakeRemoteCommandStreams;
using runtime::agent::Output;

const std::string kPod(64, 'a');
const std::string kVm(64, 'c');
const std::string kDomain = "kvcri-" + kVm;

// A unix socket the test listens on, standing in for QEMU's console chardev.
class FakeConsoleServer {
 public:
  explicit FakeConsoleServer(const fs::path& path) {
    fd_ = base::UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd_.get(), 4), 0);
  }
  // Accepts the hub's connection.
  base::UniqueFd Accept() { return base::UniqueFd(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC)); }

 private:
  base::UniqueFd fd_;
};

std::string RecvAtLeast(int fd, size_t n) {
  std::string got;
  char buf[4096];
  while (got.size() < n) {
    ssize_t r = ::recv(fd, buf, sizeof(buf), 0);
    if (r <= 0) break;
    got.append(buf, r);
  }
  return got;
}

void SendAll(int fd, std::string_view d) {
  while (!d.empty()) {
    ssize_t n = ::send(fd, d.data(), d.size(), MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    d.remove_prefix(n);
  }
}

// A TCP service on 127.0.0.1:<port>: per connection, reads to EOF, then
// sends back "echo:" + what it read and closes (needs the half-close).
class HalfCloseEchoServer {
 public:
  HalfCloseEchoServer() {
    fd_ = base::UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    socklen_t len = sizeof(a);
    ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    EXPECT_EQ(::listen(fd_.get(), 64), 0);
    thread_ = std::thread([this] {
      for (;;) {
        int c = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        workers_.emplace_back([c] {
          base::UniqueFd conn(c);
          std::string got;
          char buf[4096];
          for (;;) {
            ssize_t n = ::recv(c, buf, sizeof(buf), 0);
            if (n <= 0) break;
            got.append(buf, n);
          }
          std::string reply = "echo:" + got;
          ::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
        });
      }
    });
  }
  ~HalfCloseEchoServer() {
    ::shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
    for (auto& w : workers_) w.join();
  }
  uint16_t port() const { return port_; }

 private:
  base::UniqueFd fd_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::vector<std::thread> workers_;
};

class ExecDispatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/kvcri-exec-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    store_ = std::make_unique<sandbox::FileSandboxStore>(dir_ / "root");
    ASSERT_TRUE(store_->Load().ok());
    sandbox::SandboxRecord s;
    s.id = kPod;
    s.metadata = {"web", "default", "uid-web", 0};
    s.runtime_handler = "kubevirt";
    s.state = sandbox::SandboxState::kReady;
    s.phase = sandbox::Phase::kReady;
    s.network.ip = "127.0.0.1";  // the Pod IP path dials it
    ASSERT_TRUE(store_->PutSandbox(s).ok());
    sandbox::ContainerRecord c;
    c.id = kVm;
    c.sandbox_id = kPod;
    c.metadata = {"vm", 0};
    c.state = sandbox::ContainerState::kRunning;
    c.phase = sandbox::Phase::kReady;
    c.domain_name = kDomain;
    c.agent_socket = (dir_ / "agent.sock").string();
    c.console_socket = (dir_ / "console.sock").string();
    ASSERT_TRUE(store_->PutContainer(c).ok());
    agent_ = std::make_shared<FakeAgentClient>();
    dispatcher_ = std::make_unique<ExecDispatcher>(store_.get(), &hv_, &agents_, &consoles_, options_);
  }
  void TearDown() override {
    dispatcher_.reset();
    fs::remove_all(dir_);
  }
  void Rebuild() { dispatcher_ = std::make_unique<ExecDispatcher>(store_.get(), &hv_, &agents_, &consoles_, options_); }
  void KvcriAgentUp() {
    {
      absl::MutexLock l(&hv_.mu);
      hv_.connected_channels.insert(kDomain + " " + runtime::agent::kAgentChannelName);
    }
    absl::MutexLock l(&agents_.mu);
    agents_.agent = agent_;
  }
  void QgaUp() {
    absl::MutexLock l(&agents_.mu);
    agents_.qga_ping = absl::OkStatus();
  }
  void SetQgaExec(std::function<absl::StatusOr<runtime::GuestExecResult>(const std::vector<std::string>&,
                                                                         std::string_view, absl::Time)>
                      fn) {
    absl::MutexLock l(&agents_.mu);
    agents_.qga_exec = std::move(fn);
  }

  fs::path dir_;
  std::unique_ptr<sandbox::FileSandboxStore> store_;
  FakeHypervisor hv_;
  FakeGuestAgents agents_;
  std::shared_ptr<FakeAgentClient> agent_;
  runtime::ConsoleHubs consoles_;
  ExecDispatcherOptions options_;
  std::unique_ptr<ExecDispatcher> dispatcher_;
};

// ---- agent choice ----

TEST_F(ExecDispatchTest, ExecSyncUsesKvcriAgentWhenItsChannelIsConnected) {
  KvcriAgentUp();
  QgaUp();
  agent_->script = [](FakeGuestProcess& p) {
    p.Emit(Output::kStdout, "hello\n");
    p.Emit(Output::kStderr, "oops\n");
    p.Exit(3);
  };
  absl::StatusOr<ExecSyncResult> r = dispatcher_->ExecSync(kVm, {"sh", "-c", "x"}, absl::ZeroDuration());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "hello\n");
  EXPECT_EQ(r->stderr_data, "oops\n");
  EXPECT_EQ(r->exit_code, 3);
  absl::MutexLock l(&agent_->mu);
  ASSERT_EQ(agent_->execs.size(), 1u);
  EXPECT_THAT(agent_->execs[0].argv, ElementsAre("sh", "-c", "x"));
  EXPECT_FALSE(agent_->execs[0].stdin);
  EXPECT_THAT(agents_.Calls(), ElementsAre("Agent cccccccc " + (dir_ / "agent.sock").string()));
}

TEST_F(ExecDispatchTest, ExecSyncFallsBackToQemuGuestAgentWhenTheChannelIsClosed) {
  {
    absl::MutexLock l(&agents_.mu);
    agents_.agent = agent_;  // a client exists, but the guest closed the port
  }
  QgaUp();
  SetQgaExec([](const std::vector<std::string>& argv, std::string_view, absl::Time deadline) {
    EXPECT_EQ(deadline, absl::InfiniteFuture());  // timeout 0: none
    return runtime::GuestExecResult{1, "out:" + argv[1], "err", false};
  });
  absl::StatusOr<ExecSyncResult> r = dispatcher_->ExecSync(kVm, {"cat", "/etc/hostname"}, absl::ZeroDuration());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "out:/etc/hostname");
  EXPECT_EQ(r->stderr_data, "err");
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_THAT(agents_.Calls(), ElementsAre("QgaPing " + kDomain, "QgaExec " + kDomain + " cat"));
}

TEST_F(ExecDispatchTest, WithNeitherAgentExecSyncIsFailedPreconditionNamingBothAndTheDoc) {
  absl::StatusOr<ExecSyncResult> r = dispatcher_->ExecSync(kVm, {"true"}, absl::ZeroDuration());
  ASSERT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_EQ(r.status().message(),
            "container " + kVm +
                ": exec needs a guest agent: neither kvcri-agent (virtio-serial channel io.kubevirt-cri.agent.0) nor "
                "qemu-guest-agent (org.qemu.guest_agent.0) answers in the VM; see docs/exec.md");
}

TEST_F(ExecDispatchTest, TtyExecWithoutKvcriAgentIsFailedPreconditionEvenWhenQemuGuestAgentAnswers) {
  QgaUp();
  FakeRemoteCommandStreams streams(true, true, false, true);
  streaming::CommandResult r = dispatcher_->Exec({kVm, {"sh"}, true, true, true, false}, streams);
  ASSERT_TRUE(absl::IsFailedPrecondition(r.status)) << r.status;
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("neither kvcri-agent (virtio-serial channel io.kubevirt-cri.agent.0)"));
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("qemu-guest-agent (org.qemu.guest_agent.0)"));
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("docs/exec.md"));
  EXPECT_THAT(agents_.Calls(), Not(Contains(HasSubstr("QgaExec"))));
}

TEST_F(ExecDispatchTest, QemuGuestAgentPingIsCachedBetweenCalls) {
  QgaUp();
  ASSERT_TRUE(dispatcher_->ExecSync(kVm, {"true"}, absl::ZeroDuration()).ok());
  ASSERT_TRUE(dispatcher_->ExecSync(kVm, {"true"}, absl::ZeroDuration()).ok());
  std::vector<std::string> calls = agents_.Calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "QgaPing " + kDomain), 1);
  // Forget (the container was removed) drops the cached answer and the client.
  dispatcher_->Forget(kVm);
  ASSERT_TRUE(dispatcher_->ExecSync(kVm, {"true"}, absl::ZeroDuration()).ok());
  calls = agents_.Calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "QgaPing " + kDomain), 2);
  EXPECT_THAT(calls, Contains("ForgetAgent cccccccc"));
}

TEST_F(ExecDispatchTest, UnknownContainerIsNotFoundAndAStoppedOneFailedPrecondition) {
  absl::StatusOr<ExecSyncResult> r = dispatcher_->ExecSync(std::string(64, 'f'), {"true"}, absl::ZeroDuration());
  ASSERT_TRUE(absl::IsNotFound(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("container_id \"ffff"));
  ASSERT_TRUE(store_->UpdateContainer(kVm, [](sandbox::ContainerRecord& c) {
                      c.state = sandbox::ContainerState::kExited;
                      return absl::OkStatus();
                    }).ok());
  r = dispatcher_->ExecSync(kVm, {"true"}, absl::ZeroDuration());
  ASSERT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("not RUNNING"));
}

// ---- ExecSync timeouts and bounds ----

TEST_F(ExecDispatchTest, ExecSyncTimeoutKillsTheGuestProcessAndIsDeadlineExceeded) {
  KvcriAgentUp();
  agent_->script = [](FakeGuestProcess& p) { p.WaitExit(); };  // sleep 10
  const absl::Time start = absl::Now();
  absl::StatusOr<ExecSyncResult> r = dispatcher_->ExecSync(kVm, {"sleep", "10"}, absl::Seconds(1));
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("timeout 1s exceeded"));
  EXPECT_GE(took, absl::Seconds(1));
  EXPECT_LT(took, absl::Seconds(4));
  absl::MutexLock l(&agent_->mu);
  EXPECT_THAT(agent_->procs[0]->Signals(), Contains(SIGKILL));
}

TEST_F(ExecDispatchTest, ExecSyncTimeoutThroughQemuGuestAgentIsDeadlineExceeded) {
  QgaUp();
  absl::Time seen;
  SetQgaExec([&](const std::vector<std::string>&, std::string_view, absl::Time deadline) {
    seen = deadline;
    return absl::StatusOr<runtime::GuestExecResult>(absl::DeadlineExceededError("guest-exec: killed"));
  });
  const absl::Time before = absl::Now();
  absl::StatusOr<ExecSyncResult> r = dispatcher_->ExecSync(kVm, {"sleep", "10"}, absl::Seconds(2));
  ASSERT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
  EXPECT_GE(seen, before + absl::Seconds(2));
  EXPECT_LT(seen, before + absl::Seconds(3));
}

TEST_F(ExecDispatchTest, ExecSyncKeepsAtMostTheCapOfEachOutputAndStillReadsToTheEnd) {
  options_.max_exec_sync_output_bytes = 8;
  Rebuild();
  KvcriAgentUp();
  agent_->script = [](FakeGuestProcess& p) {
    p.Emit(Output::kStdout, std::string(100, 'o'));
    p.Emit(Output::kStderr, std::string(100, 'e'));
    p.Exit(0);
  };
  absl::StatusOr<ExecSyncResult> r = dispatcher_->ExecSync(kVm, {"yes"}, absl::ZeroDuration());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, std::string(8, 'o'));
  EXPECT_EQ(r->stderr_data, std::string(8, 'e'));
}

// ---- Exec ----

TEST_F(ExecDispatchTest, ExecThroughKvcriAgentPumpsStdinToTheProcessAndItsOutputsApart) {
  KvcriAgentUp();
  agent_->script = [](FakeGuestProcess& p) {  // cat, and a word on stderr
    p.Emit(Output::kStderr, "starting\n");
    while (std::optional<std::string> in = p.TakeStdin()) p.Emit(Output::kStdout, *in);
    p.Exit(0);
  };
  FakeRemoteCommandStreams streams(true, true, true, false);
  streams.stdin.Feed("abc");
  streams.stdin.Feed("def");
  streams.stdin.FeedEof();
  streaming::CommandResult r = dispatcher_->Exec({kVm, {"cat"}, false, true, true, true}, streams);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(streams.stdout.data(), "abcdef");
  EXPECT_EQ(streams.stderr.data(), "starting\n");
  absl::MutexLock l(&agent_->mu);
  EXPECT_TRUE(agent_->execs[0].stdin);
  EXPECT_FALSE(agent_->execs[0].tty);
}

TEST_F(ExecDispatchTest, ExecExitCodeIsReportedAndAProcessIgnoringStdinEndsTheSessionAnyway) {
  KvcriAgentUp();
  agent_->script = [](FakeGuestProcess& p) { p.Exit(42); };
  FakeRemoteCommandStreams streams(true, true, true, false);  // the client never closes stdin
  streaming::CommandResult r = dispatcher_->Exec({kVm, {"false"}, false, true, true, true}, streams);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.exit_code, 42);
  EXPECT_TRUE(streams.stdin.cancelled());  // StopReading ended the stdin pump
}

TEST_F(ExecDispatchTest, TtyExecPassesResizesToThePty) {
  KvcriAgentUp();
  agent_->script = [](FakeGuestProcess& p) {
    std::optional<std::pair<uint16_t, uint16_t>> size = p.WaitResize();
    p.Emit(Output::kStdout, size ? std::to_string(size->second) + " " + std::to_string(size->first) + "\r\n" : "none");
    p.Exit(0);
  };
  FakeRemoteCommandStreams streams(true, true, false, true);
  streams.Resize(100, 40);
  streaming::CommandResult r = dispatcher_->Exec({kVm, {"stty", "size"}, true, true, true, false}, streams);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(streams.stdout.data(), "40 100\r\n");
  absl::MutexLock l(&agent_->mu);
  EXPECT_TRUE(agent_->execs[0].tty);
  EXPECT_THAT(agent_->execs[0].env, Contains("TERM=xterm"));
}

TEST_F(ExecDispatchTest, ClientGoneKillsTheGuestProcess) {
  KvcriAgentUp();
  agent_->script = [](FakeGuestProcess& p) { p.WaitExit(); };
  FakeRemoteCommandStreams streams(true, true, true, false);
  std::thread client([&] {
    absl::SleepFor(absl::Milliseconds(100));
    streams.GoAway();
  });
  streaming::CommandResult r = dispatcher_->Exec({kVm, {"sleep", "1000"}, false, true, true, true}, streams);
  client.join();
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.exit_code, 137);
  absl::MutexLock l(&agent_->mu);
  EXPECT_THAT(agent_->procs[0]->Signals(), Contains(SIGKILL));
}

TEST_F(ExecDispatchTest, NonTtyExecThroughQemuGuestAgentReadsStdinFirstThenWritesTheOutputs) {
  QgaUp();
  SetQgaExec([](const std::vector<std::string>&, std::string_view input, absl::Time) {
    return runtime::GuestExecResult{5, "got:" + std::string(input), "warn", false};
  });
  FakeRemoteCommandStreams streams(true, true, true, false);
  streams.stdin.Feed("line1\n");
  streams.stdin.FeedEof();
  streaming::CommandResult r = dispatcher_->Exec({kVm, {"cat"}, false, true, true, true}, streams);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(streams.stdout.data(), "got:line1\n");
  EXPECT_EQ(streams.stderr.data(), "warn");
}

TEST_F(ExecDispatchTest, QemuGuestAgentExecRefusesStdinOverItsBound) {
  options_.max_qga_stdin_bytes = 4;
  Rebuild();
  QgaUp();
  FakeRemoteCommandStreams streams(true, true, true, false);
  streams.stdin.Feed("too long");
  streams.stdin.FeedEof();
  streaming::CommandResult r = dispatcher_->Exec({kVm, {"cat"}, false, true, true, true}, streams);
  ASSERT_TRUE(absl::IsResourceExhausted(r.status)) << r.status;
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("stdin over 4 bytes"));
  EXPECT_THAT(agents_.Calls(), Not(Contains(HasSubstr("QgaExec"))));
}

// ---- Attach ----

TEST_F(ExecDispatchTest, ConsoleFanOutFeedsEveryAttacherAndDisconnectsOnlyTheSlowOne) {
  runtime::ConsoleHubs hubs(runtime::ConsoleAttachOptions{.max_queued_bytes = 64 << 10});
  FakeConsoleServer qemu(dir_ / "c.sock");
  absl::StatusOr<std::unique_ptr<runtime::ConsoleAttacher>> fast = hubs.Attach(kVm, dir_ / "c.sock");
  ASSERT_TRUE(fast.ok()) << fast.status();
  base::UniqueFd conn = qemu.Accept();
  absl::StatusOr<std::unique_ptr<runtime::ConsoleAttacher>> slow = hubs.Attach(kVm, dir_ / "c.sock");
  ASSERT_TRUE(slow.ok()) << slow.status();

  // 1 MiB of console output in 16 KiB pieces, each sent once the fast
  // attacher has the previous one (so it is never behind by more than a
  // piece, whatever the machine's load); the slow one reads nothing. The
  // guest's side is never held up by it.
  const std::string piece(16 << 10, 'x');
  constexpr size_t kPieces = 64;
  absl::Mutex mu;
  size_t got = 0;  // guarded by mu
  std::thread reader([&] {
    for (;;) {
      absl::StatusOr<std::string> c = (*fast)->Next();
      if (!c.ok() || c->empty()) return;
      absl::MutexLock l(&mu);
      got += c->size();
      if (got == piece.size() * kPieces) return;
    }
  });
  for (size_t i = 1; i <= kPieces; ++i) {
    SendAll(conn.get(), piece);
    absl::MutexLock l(&mu);
    auto has = [&] { return got >= piece.size() * i; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&has), absl::Seconds(10))) << "piece " << i;
  }
  reader.join();
  absl::StatusOr<std::string> s = (*slow)->Next();
  ASSERT_TRUE(absl::IsResourceExhausted(s.status())) << s.status();
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("disconnected"));

  // Input of any attacher reaches the console; one connection served both.
  ASSERT_TRUE((*slow)->Write("root\n").ok());
  ASSERT_TRUE((*fast)->Write("ls\n").ok());
  EXPECT_EQ(RecvAtLeast(conn.get(), 8), "root\nls\n");

  // The console closes (the VM stopped): attachers see the end.
  conn.Reset();
  absl::StatusOr<std::string> end = (*fast)->Next();
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(*end, "");
}

TEST_F(ExecDispatchTest, ConsoleInputBlockedByAGuestThatDoesNotReadEndsWhenTheAttacherCloses) {
  FakeConsoleServer qemu(dir_ / "c.sock");
  absl::StatusOr<std::unique_ptr<runtime::ConsoleAttacher>> a = consoles_.Attach(kVm, dir_ / "c.sock");
  ASSERT_TRUE(a.ok()) << a.status();
  base::UniqueFd conn = qemu.Accept();  // and never reads
  absl::Status written;
  std::thread typist([&] { written = (*a)->Write(std::string(32 << 20, 'y')); });
  absl::SleepFor(absl::Milliseconds(300));
  (*a)->Close();
  typist.join();
  EXPECT_TRUE(absl::IsCancelled(written)) << written;
}

TEST_F(ExecDispatchTest, AttachStreamsTheConsoleAndTypesTtyInputIntoIt) {
  FakeConsoleServer qemu(dir_ / "console.sock");
  FakeRemoteCommandStreams streams(true, true, false, true);
  streams.Resize(120, 50);  // read and dropped: a serial console has no size
  streaming::CommandResult result;
  std::thread session([&] { result = dispatcher_->Attach({kVm, true, true, true, false}, streams); });
  base::UniqueFd conn = qemu.Accept();
  SendAll(conn.get(), "login: ");
  ASSERT_TRUE(streams.stdout.WaitFor("login: ", absl::Seconds(5)));
  streams.stdin.Feed("root\n");
  EXPECT_EQ(RecvAtLeast(conn.get(), 5), "root\n");
  streams.GoAway();  // kubectl detached
  session.join();
  EXPECT_TRUE(result.status.ok()) << result.status;
}

TEST_F(ExecDispatchTest, AttachWithoutTtyOnlyWatchesAndEndsWithTheConsole) {
  FakeConsoleServer qemu(dir_ / "console.sock");
  FakeRemoteCommandStreams streams(true, true, false, false);
  streams.stdin.Feed("ignored\n");
  streaming::CommandResult result;
  std::thread session([&] { result = dispatcher_->Attach({kVm, false, true, true, false}, streams); });
  base::UniqueFd conn = qemu.Accept();
  SendAll(conn.get(), "boot line\n");
  ASSERT_TRUE(streams.stdout.WaitFor("boot line\n", absl::Seconds(5)));
  conn.Reset();  // the VM stopped
  session.join();
  EXPECT_TRUE(result.status.ok()) << result.status;
}

TEST_F(ExecDispatchTest, AttachToAVmWithoutConsoleSocketIsFailedPrecondition) {
  ASSERT_TRUE(store_->UpdateContainer(kVm, [](sandbox::ContainerRecord& c) {
                      c.console_socket.clear();
                      return absl::OkStatus();
                    }).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(dispatcher_->CheckAttachable(kVm)));
  FakeRemoteCommandStreams streams(false, true, false, false);
  streaming::CommandResult r = dispatcher_->Attach({kVm, false, false, true, false}, streams);
  ASSERT_TRUE(absl::IsFailedPrecondition(r.status)) << r.status;
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("console socket"));
}

// ---- PortForward ----

TEST_F(ExecDispatchTest, PortForwardWithoutAgentDialsThePodIpAndPassesTheHalfCloseOn) {
  HalfCloseEchoServer server;
  FakeByteStream client;
  client.in.Feed("ping");
  client.in.FeedEof();  // the service answers only after our EOF
  absl::Status s = dispatcher_->PortForward(kPod, server.port(), client);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(client.out.data(), "echo:ping");
  EXPECT_TRUE(client.out.closed());
  absl::MutexLock l(&agent_->mu);
  EXPECT_TRUE(agent_->ports.empty());
}

TEST_F(ExecDispatchTest, PortForwardKeepsSendingToThePodAfterThePodHalfClosed) {
  // The Pod's service greets, half-closes, then reads what the client sends.
  base::UniqueFd lfd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  socklen_t len = sizeof(a);
  ::getsockname(lfd.get(), reinterpret_cast<sockaddr*>(&a), &len);
  ASSERT_EQ(::listen(lfd.get(), 1), 0);
  std::string received;
  std::thread pod([&] {
    base::UniqueFd c(::accept4(lfd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    SendAll(c.get(), "hello");
    ::shutdown(c.get(), SHUT_WR);
    received = RecvAtLeast(c.get(), SIZE_MAX);
  });
  FakeByteStream client;
  std::thread feeder([&] {
    ASSERT_TRUE(client.out.WaitFor("hello", absl::Seconds(5)));
    client.in.Feed("after the pod's FIN");
    client.in.FeedEof();
  });
  absl::Status s = dispatcher_->PortForward(kPod, ntohs(a.sin_port), client);
  feeder.join();
  pod.join();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(client.out.data(), "hello");
  EXPECT_TRUE(client.out.closed());
  EXPECT_EQ(received, "after the pod's FIN");
}

TEST_F(ExecDispatchTest, PortForwardGoesThroughKvcriAgentWhenItAnswers) {
  HalfCloseEchoServer server;
  KvcriAgentUp();
  FakeByteStream client;
  client.in.Feed("via agent");
  client.in.FeedEof();
  ASSERT_TRUE(dispatcher_->PortForward(kPod, server.port(), client).ok());
  EXPECT_EQ(client.out.data(), "echo:via agent");
  absl::MutexLock l(&agent_->mu);
  EXPECT_THAT(agent_->ports, ElementsAre(server.port()));
}

TEST_F(ExecDispatchTest, PortForwardCopiesManyConcurrentConnections) {
  HalfCloseEchoServer server;
  constexpr int kConns = 20;
  std::vector<std::unique_ptr<FakeByteStream>> clients;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < kConns; ++i) {
    clients.push_back(std::make_unique<FakeByteStream>());
    clients.back()->in.Feed(std::string(200 << 10, static_cast<char>('a' + i % 26)));
    clients.back()->in.FeedEof();
    // The thread gets its stream, not the vector a later push_back moves.
    threads.emplace_back([&, stream = clients.back().get()] {
      if (dispatcher_->PortForward(kPod, server.port(), *stream).ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kConns);
  for (int i = 0; i < kConns; ++i) {
    EXPECT_EQ(clients[i]->out.data(), "echo:" + std::string(200 << 10, static_cast<char>('a' + i % 26))) << i;
  }
}

TEST_F(ExecDispatchTest, PortForwardToAClosedPortIsUnavailableNamingTheAddress) {
  uint16_t port;
  {
    HalfCloseEchoServer gone;
    port = gone.port();
  }
  FakeByteStream client;
  absl::Status s = dispatcher_->PortForward(kPod, port, client);
  ASSERT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("127.0.0.1:" + std::to_string(port)));
}

TEST_F(ExecDispatchTest, PortForwardFailureOnThePodSideCancelsTheClientRead) {
  // A Pod side that fails at once: the copy must not wait for the client.
  class Broken : public PodConnection {
   public:
    absl::StatusOr<size_t> Read(char*, size_t) override { return absl::UnavailableError("connection reset"); }
    absl::Status Write(std::string_view) override { return absl::OkStatus(); }
    absl::Status CloseWrite() override { return absl::OkStatus(); }
    void Abort() override {}
  } broken;
  FakeByteStream client;  // never sends, never closes
  absl::Status s = CopyBothWays(client, broken);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_TRUE(client.in.cancelled());
}

TEST_F(ExecDispatchTest, PortForwardEndsASecondAfterThePodSideClosesFirst) {
  // An HTTP/1.0 server answers and closes; the client (curl through
  // client-go) never half-closes and waits for the pair to end.
  class AnswersAndCloses : public PodConnection {
   public:
    absl::StatusOr<size_t> Read(char* buf, size_t n) override {
      if (sent_) return size_t{0};
      sent_ = true;
      const std::string answer = "HTTP/1.0 200 OK\r\n\r\nbody";
      std::memcpy(buf, answer.data(), std::min(n, answer.size()));
      return std::min(n, answer.size());
    }
    absl::Status Write(std::string_view) override { return absl::OkStatus(); }
    absl::Status CloseWrite() override { return absl::OkStatus(); }
    void Abort() override {}

   private:
    bool sent_ = false;
  } server;
  FakeByteStream client;  // never sends, never closes
  const absl::Time t0 = absl::Now();
  absl::Status s = CopyBothWays(client, server);
  EXPECT_TRUE(s.ok()) << s << ": our own close is not an error";
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
  EXPECT_GE(absl::Now() - t0, absl::Milliseconds(900)) << "the client's direction gets its second";
  EXPECT_EQ(client.out.data(), "HTTP/1.0 200 OK\r\n\r\nbody");
  EXPECT_TRUE(client.out.closed());
  EXPECT_TRUE(client.in.cancelled());
}

}  // namespace
}  // namespace kvcri::cri
