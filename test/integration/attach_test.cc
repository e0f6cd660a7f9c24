// Attach to a VM Pod's serial console over SPDY and WebSocket: a login shell with -it, several attachers at once, output-only without a tty, and the CRI log copy keeps running.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "test/client/exec_helpers.h"

namespace kvcri::testing {
namespace {

constexpr Transport kTransports[] = {Transport::kSpdy, Transport::kWebSocket};
// The guest's console shell prompt (test/guest/rootfs/sbin/kvcri-console-login).
constexpr char kPrompt[] = "kvcri-guest# ";

// One VM Pod with a getty on ttyS0 (kvcri.console_shell=1) and a heartbeat
// line every second, so the console keeps producing output of its own.
class AttachTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RequireIntegrationEnvironment(true);
    daemon_ = std::make_unique<TestDaemon>();
    daemon_->Start();
    ImportGuestImages(*daemon_);
    pods_ = {VmPod{.name = "attach", .cmdline_extra = "kvcri.console_shell=1 kvcri.heartbeat=1"}};
    ready_ = StartVmPods(*daemon_, pods_);
  }
  static void TearDownTestSuite() {
    RemoveVmPods(*daemon_, pods_);
    daemon_.reset();
  }
  void SetUp() override { ASSERT_TRUE(ready_) << "the suite's VM Pod did not start"; }

  static TestDaemon& d() { return *daemon_; }
  static const VmPod& pod() { return pods_[0]; }

  static pb::AttachRequest Request(bool tty, bool stdin) {
    pb::AttachRequest req;
    req.set_container_id(pod().container_id);
    req.set_tty(tty);
    req.set_stdin(stdin);
    req.set_stdout(true);
    req.set_stderr(!tty);
    return req;
  }

  // Gets a shell prompt on the console: an empty line makes getty prompt again
  // (its first prompt may have been printed before we attached), any name logs in.
  static void LogIn(RemoteCommandClient& c) {
    absl::StatusOr<std::string> got = absl::DeadlineExceededError("no try");
    for (int i = 0; i < 30 && !got.ok(); ++i) {
      ASSERT_TRUE(c.WriteStdin("\r").ok());
      got = c.ReadStdoutUntil("login: ", absl::Seconds(3));
    }
    ASSERT_TRUE(got.ok()) << "no login prompt on the console: " << got.status();
    ASSERT_TRUE(c.WriteStdin("root\r").ok());
    got = c.ReadStdoutUntil(kPrompt, absl::Seconds(30));
    ASSERT_TRUE(got.ok()) << "no shell prompt after logging in: " << got.status();
  }

  // Types `command` until `marker` shows up: a line typed while the shell is
  // still starting its line editor can be lost, as on a real serial console.
  static absl::Status TypeUntil(RemoteCommandClient& c, const std::string& command, const std::string& marker) {
    absl::Status last = absl::DeadlineExceededError("no try");
    for (int i = 0; i < 3; ++i) {
      last = c.WriteStdin(command + "\r");
      if (!last.ok()) return last;
      absl::StatusOr<std::string> got = c.ReadStdoutUntil(marker, absl::Seconds(10));
      if (got.ok()) return absl::OkStatus();
      last = got.status();
    }
    return last;
  }

  inline static std::unique_ptr<TestDaemon> daemon_;
  inline static std::vector<VmPod> pods_;
  inline static bool ready_ = false;
};

TEST_F(AttachTest, TtyAttachGetsALoginShellAndTheCriLogKeepsGrowing) {
  int n = 0;
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    auto c = OpenAttach(d(), t, Request(/*tty=*/true, /*stdin=*/true));
    ASSERT_TRUE(c.ok()) << c.status();
    LogIn(**c);
    const int beats_before = CountCriLogLines(pod().log_path, "KUBEVIRT-CRI-GUEST-HEARTBEAT");
    // The shell computes the marker, so the echoed input alone cannot match it.
    ++n;
    const std::string marker = absl::StrCat("attached-", 100 + n);
    absl::Status typed = TypeUntil(**c, absl::StrCat("echo attached-$((100+", n, "))"), marker);
    EXPECT_TRUE(typed.ok()) << typed;
    EXPECT_TRUE(WaitForFileContains(pod().log_path, marker, std::chrono::seconds(30)))
        << "the CRI log did not get the attached session's output";
    std::this_thread::sleep_for(std::chrono::seconds(4));
    EXPECT_GT(CountCriLogLines(pod().log_path, "KUBEVIRT-CRI-GUEST-HEARTBEAT"), beats_before + 1)
        << "the CRI log stopped growing while attached";
    // Log out and wait for getty to start again for the next attacher: an
    // exit typed while the line editor restarts can be lost, so type it again.
    absl::Status out = TypeUntil(**c, "exit", "login: ");
    ASSERT_TRUE(out.ok()) << "no login prompt after logging out: " << out;
  }
}

TEST_F(AttachTest, SeveralAttachersSeeTheSameConsole) {
  auto typist = OpenAttach(d(), Transport::kSpdy, Request(/*tty=*/true, /*stdin=*/true));
  ASSERT_TRUE(typist.ok()) << typist.status();
  auto watcher_ws = OpenAttach(d(), Transport::kWebSocket, Request(/*tty=*/true, /*stdin=*/false));
  ASSERT_TRUE(watcher_ws.ok()) << watcher_ws.status();
  auto watcher_spdy = OpenAttach(d(), Transport::kSpdy, Request(/*tty=*/false, /*stdin=*/false));
  ASSERT_TRUE(watcher_spdy.ok()) << watcher_spdy.status();
  LogIn(**typist);
  absl::Status typed = TypeUntil(**typist, "echo seen-by-all-$((6*7))", "seen-by-all-42");
  ASSERT_TRUE(typed.ok()) << typed;
  for (RemoteCommandClient* c : {watcher_ws->get(), watcher_spdy->get()}) {
    absl::StatusOr<std::string> got = c->ReadStdoutUntil("seen-by-all-42", absl::Seconds(30));
    EXPECT_TRUE(got.ok()) << c->protocol() << ": " << got.status();
  }
  ASSERT_TRUE((*typist)->WriteStdin("exit\r").ok());
}

TEST_F(AttachTest, NonTtyAttachStreamsTheConsoleOutput) {
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    auto c = OpenAttach(d(), t, Request(/*tty=*/false, /*stdin=*/false));
    ASSERT_TRUE(c.ok()) << c.status();
    // The guest's own output (a heartbeat a second) reaches the attacher.
    absl::StatusOr<std::string> got = (*c)->ReadStdoutUntil("KUBEVIRT-CRI-GUEST-HEARTBEAT", absl::Seconds(15));
    EXPECT_TRUE(got.ok()) << got.status();
  }
}

}  // namespace
}  // namespace kvcri::testing
