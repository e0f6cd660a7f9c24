// Exec in VM Pods without kvcri-agent: qemu-guest-agent alone serves ExecSync and non-tty Exec, a tty is FAILED_PRECONDITION, and with neither agent every exec names both.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "test/client/exec_helpers.h"

namespace kvcri::testing {
namespace {

using Clock = std::chrono::steady_clock;
using ::testing::HasSubstr;

constexpr Transport kTransports[] = {Transport::kSpdy, Transport::kWebSocket};
constexpr auto kSession = absl::Seconds(60);

// Both Pods boot at once: "qga" has kvcri-agent stopped (kvcri.agent=0),
// "noagent" has qemu-ga stopped too (kvcri.qga=0).
class QgaExecTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RequireIntegrationEnvironment(true);
    daemon_ = std::make_unique<TestDaemon>();
    daemon_->Start();
    ImportGuestImages(*daemon_);
    pods_ = {VmPod{.name = "qga", .cmdline_extra = "kvcri.agent=0"},
             VmPod{.name = "noagent", .cmdline_extra = "kvcri.agent=0 kvcri.qga=0"}};
    ready_ = StartVmPods(*daemon_, pods_);
    if (ready_) {
      absl::Status s = WaitForExec(*daemon_, pods_[0].container_id, std::chrono::seconds(120));
      EXPECT_TRUE(s.ok()) << "ExecSync `true` through qemu-guest-agent never succeeded: " << s << "\n"
                          << daemon_->DaemonLog();
      ready_ = s.ok();
    }
  }
  static void TearDownTestSuite() {
    RemoveVmPods(*daemon_, pods_);
    daemon_.reset();
  }
  void SetUp() override { ASSERT_TRUE(ready_) << "the suite's VM Pods did not start"; }

  static TestDaemon& d() { return *daemon_; }
  static const std::string& qga() { return pods_[0].container_id; }
  static const std::string& noagent() { return pods_[1].container_id; }

  inline static std::unique_ptr<TestDaemon> daemon_;
  inline static std::vector<VmPod> pods_;
  inline static bool ready_ = false;
};

// The message for a guest without the agent a request needs names both
// agents, so an operator knows what to install.
void ExpectNamesBothAgents(absl::string_view message) {
  EXPECT_THAT(std::string(message), HasSubstr("kvcri-agent"));
  EXPECT_THAT(std::string(message), HasSubstr("qemu-guest-agent"));
}

TEST_F(QgaExecTest, ExecSyncReturnsStdoutStderrAndExitCodes) {
  absl::StatusOr<pb::ExecSyncResponse> r = ExecSync(d(), qga(), {"echo", "hello", "qga"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout(), "hello qga\n");
  EXPECT_EQ(r->exit_code(), 0);
  r = ExecSync(d(), qga(), {"sh", "-c", "echo to-out; echo to-err >&2"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout(), "to-out\n");
  EXPECT_EQ(r->stderr(), "to-err\n");
  for (const auto& [cmd, want] : std::vector<std::pair<std::string, int>>{
           {"exit 0", 0}, {"exit 1", 1}, {"kill -9 $$", 137}}) {
    r = ExecSync(d(), qga(), {"sh", "-c", cmd});
    ASSERT_TRUE(r.ok()) << cmd << ": " << r.status();
    EXPECT_EQ(r->exit_code(), want) << cmd;
  }
}

TEST_F(QgaExecTest, ExecSyncTimeoutReturnsAnErrorAndKillsTheGuestProcess) {
  const auto t0 = Clock::now();
  absl::StatusOr<pb::ExecSyncResponse> r = ExecSync(d(), qga(), {"sleep", "10"}, 2);
  const double took_s = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_FALSE(r.ok()) << "sleep 10 with timeout 2 returned exit code " << r->exit_code();
  const std::string msg = absl::AsciiStrToLower(r.status().message());
  EXPECT_TRUE(r.status().code() == absl::StatusCode::kDeadlineExceeded || absl::StrContains(msg, "timeout") ||
              absl::StrContains(msg, "timed out"))
      << r.status();
  EXPECT_LE(took_s, 8.0) << "ExecSync returned " << took_s << " s after a 2 s timeout";
  std::string ps;
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<pb::ExecSyncResponse> p = ExecSync(d(), qga(), {"ps"});
    ASSERT_TRUE(p.ok()) << p.status();
    ps = p->stdout();
    if (!absl::StrContains(ps, "sleep 10")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  EXPECT_THAT(ps, ::testing::Not(HasSubstr("sleep 10")));
}

TEST_F(QgaExecTest, NonTtyExecWorks) {
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    auto c = OpenExec(d(), t, MakeExecRequest(qga(), {"sh", "-c", "echo out; echo err >&2; exit 3"}, false, false));
    ASSERT_TRUE(c.ok()) << c.status();
    absl::StatusOr<RemoteCommandResult> r = (*c)->Wait(kSession);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->stdout_data, "out\n");
    EXPECT_EQ(r->stderr_data, "err\n");
    EXPECT_EQ(r->exit_code, 3) << r->error_text;
  }
}

TEST_F(QgaExecTest, NonTtyExecTakesStdinUntilItCloses) {
  // guest-exec takes its input up front: the session collects stdin to its end.
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    auto c = OpenExec(d(), t, MakeExecRequest(qga(), {"sh", "-c", "tr a-z A-Z"}, false, true));
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE((*c)->WriteStdin("through qemu-ga\n").ok());
    ASSERT_TRUE((*c)->CloseStdin().ok());
    absl::StatusOr<RemoteCommandResult> r = (*c)->Wait(kSession);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->stdout_data, "THROUGH QEMU-GA\n");
    EXPECT_TRUE(r->success) << r->error_text;
  }
}

TEST_F(QgaExecTest, TtyExecIsFailedPreconditionNamingBothAgents) {
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    pb::ExecRequest req = MakeExecRequest(qga(), {"sh"}, true, true);
    absl::StatusOr<std::string> url = ExecUrl(d(), req);
    if (!url.ok()) {  // refused at the RPC
      EXPECT_EQ(url.status().code(), absl::StatusCode::kFailedPrecondition) << url.status();
      ExpectNamesBothAgents(url.status().message());
      continue;
    }
    // Or refused on the session's error stream.
    RemoteCommandOptions o;
    o.tty = o.stdin = true;
    o.stderr = false;
    auto c = OpenRemoteCommand(t, *url, o);
    ASSERT_TRUE(c.ok()) << c.status();
    absl::StatusOr<RemoteCommandResult> r = (*c)->Wait(kSession);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->success);
    ExpectNamesBothAgents(r->error_text);
  }
}

TEST_F(QgaExecTest, WithNeitherAgentExecIsFailedPreconditionNamingBoth) {
  // Agents connect after boot: wait for the verdict rather than a transient error.
  absl::Status last;
  const auto deadline = Clock::now() + std::chrono::seconds(90);
  while (Clock::now() < deadline) {
    absl::StatusOr<pb::ExecSyncResponse> r = ExecSync(d(), noagent(), {"true"}, 10);
    ASSERT_FALSE(r.ok()) << "ExecSync ran in a guest with no agent";
    last = r.status();
    if (last.code() == absl::StatusCode::kFailedPrecondition) break;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kFailedPrecondition) << last;
  ExpectNamesBothAgents(last.message());
  absl::StatusOr<std::string> url = ExecUrl(d(), MakeExecRequest(noagent(), {"true"}, false, false));
  if (!url.ok()) {
    EXPECT_EQ(url.status().code(), absl::StatusCode::kFailedPrecondition) << url.status();
    ExpectNamesBothAgents(url.status().message());
  } else {
    auto c = OpenSpdyRemoteCommand(*url, RemoteCommandOptions{});
    ASSERT_TRUE(c.ok()) << c.status();
    absl::StatusOr<RemoteCommandResult> r = (*c)->Wait(kSession);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->success);
    ExpectNamesBothAgents(r->error_text);
  }
}

}  // namespace
}  // namespace kvcri::testing
