// ExecSync and Exec into a VM Pod with both guest agents (kvcri-agent serves), over SPDY and WebSocket; tokens and hostile SPDY clients.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "config/base/unique_fd.h"
#include "test/client/exec_helpers.h"

namespace kvcri::testing {
namespace {

using Clock = std::chrono::steady_clock;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr Transport kTransports[] = {Transport::kSpdy, Transport::kWebSocket};
constexpr auto kSession = absl::Seconds(60);
constexpr int kTokenTtlSeconds = 5;

// One daemon and one VM Pod for the whole suite: a boot costs seconds under TCG.
class ExecTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RequireIntegrationEnvironment(true);
    TestDaemon::Options opts;
    // Short enough for AnExpiredTokenIsRefused to wait it out; every other
    // case opens its URL right after the RPC.
    opts.extra_config = absl::StrCat("[streaming]\ntoken_ttl_seconds = ", kTokenTtlSeconds, "\n");
    daemon_ = std::make_unique<TestDaemon>(opts);
    daemon_->Start();
    ImportGuestImages(*daemon_);
    pods_ = {VmPod{.name = "exec"}};
    ready_ = StartVmPods(*daemon_, pods_);
    if (ready_) {
      absl::Status s = WaitForExec(*daemon_, pods_[0].container_id, std::chrono::seconds(120));
      EXPECT_TRUE(s.ok()) << "ExecSync `true` never succeeded: " << s << "\n" << daemon_->DaemonLog();
      ready_ = s.ok();
    }
  }
  static void TearDownTestSuite() {
    RemoveVmPods(*daemon_, pods_);
    daemon_.reset();
  }
  void SetUp() override { ASSERT_TRUE(ready_) << "the suite's VM Pod did not start"; }

  static TestDaemon& d() { return *daemon_; }
  static const std::string& ctr() { return pods_[0].container_id; }

  // Output of an ExecSync that must succeed with exit code 0.
  static std::string Run(const std::vector<std::string>& cmd) {
    absl::StatusOr<pb::ExecSyncResponse> r = ExecSync(d(), ctr(), cmd, 30);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return "";
    EXPECT_EQ(r->exit_code(), 0) << r->stderr();
    return r->stdout();
  }

  inline static std::unique_ptr<TestDaemon> daemon_;
  inline static std::vector<VmPod> pods_;
  inline static bool ready_ = false;
};

TEST_F(ExecTest, ExecSyncEchoReturnsStdout) {
  absl::StatusOr<pb::ExecSyncResponse> r = ExecSync(d(), ctr(), {"echo", "hello", "guest"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout(), "hello guest\n");
  EXPECT_EQ(r->stderr(), "");
  EXPECT_EQ(r->exit_code(), 0);
}

TEST_F(ExecTest, ExecSyncReportsExitCodes) {
  for (const auto& [cmd, want] : std::vector<std::pair<std::string, int>>{
           {"exit 0", 0}, {"exit 1", 1}, {"kill -9 $$", 137}}) {
    absl::StatusOr<pb::ExecSyncResponse> r = ExecSync(d(), ctr(), {"sh", "-c", cmd});
    ASSERT_TRUE(r.ok()) << cmd << ": " << r.status();
    EXPECT_EQ(r->exit_code(), want) << cmd;
  }
}

TEST_F(ExecTest, ExecSyncKeepsStderrApart) {
  absl::StatusOr<pb::ExecSyncResponse> r =
      ExecSync(d(), ctr(), {"sh", "-c", "echo to-out; echo to-err >&2; echo more-out; exit 4"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout(), "to-out\nmore-out\n");
  EXPECT_EQ(r->stderr(), "to-err\n");
  EXPECT_EQ(r->exit_code(), 4);
}

TEST_F(ExecTest, ExecSyncTimeoutReturnsAnErrorAndKillsTheGuestProcess) {
  const auto t0 = Clock::now();
  absl::StatusOr<pb::ExecSyncResponse> r = ExecSync(d(), ctr(), {"sleep", "10"}, 2);
  const double took_s = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_FALSE(r.ok()) << "sleep 10 with timeout 2 returned exit code " << r->exit_code();
  EXPECT_TRUE(r.status().code() == absl::StatusCode::kDeadlineExceeded ||
              absl::StrContains(absl::AsciiStrToLower(r.status().message()), "timeout") ||
              absl::StrContains(absl::AsciiStrToLower(r.status().message()), "timed out"))
      << r.status();
  EXPECT_GE(took_s, 1.9);
  EXPECT_LE(took_s, 8.0) << "ExecSync returned " << took_s << " s after a 2 s timeout";
  // The guest's process is killed, not left to finish its 10 s.
  std::string ps;
  for (int i = 0; i < 10; ++i) {
    ps = Run({"ps"});
    if (!absl::StrContains(ps, "sleep 10")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  EXPECT_THAT(ps, ::testing::Not(HasSubstr("sleep 10")));
}

TEST_F(ExecTest, ManyExecSyncsAtOnce) {
  constexpr int kN = 16;
  std::vector<std::string> out(kN);
  std::vector<std::thread> threads;
  for (int i = 0; i < kN; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<pb::ExecSyncResponse> r = ExecSync(d(), ctr(), {"echo", absl::StrCat("n", i)});
      out[i] = r.ok() ? r->stdout() : r.status().ToString();
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kN; ++i) EXPECT_EQ(out[i], absl::StrCat("n", i, "\n"));
}

TEST_F(ExecTest, ExecReturnsAStreamingUrl) {
  absl::StatusOr<std::string> url = ExecUrl(d(), MakeExecRequest(ctr(), {"true"}, false, false));
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_THAT(*url, AnyOf(StartsWith("http://"), StartsWith("https://")));
  EXPECT_THAT(*url, HasSubstr("/exec/"));
  pb::AttachRequest attach;
  attach.set_container_id(ctr());
  attach.set_stdout(true);
  absl::StatusOr<std::string> aurl = AttachUrl(d(), attach);
  ASSERT_TRUE(aurl.ok()) << aurl.status();
  EXPECT_THAT(*aurl, HasSubstr("/attach/"));
  absl::StatusOr<std::string> purl = PortForwardUrl(d(), pods_[0].pod_id, {7000});
  ASSERT_TRUE(purl.ok()) << purl.status();
  EXPECT_THAT(*purl, HasSubstr("/portforward/"));
}

TEST_F(ExecTest, NonTtyExecStreamsStdoutStderrAndTheExitCode) {
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    auto c = OpenExec(d(), t, MakeExecRequest(ctr(), {"sh", "-c", "echo out; echo err >&2; exit 3"}, false, false));
    ASSERT_TRUE(c.ok()) << c.status();
    absl::StatusOr<RemoteCommandResult> r = (*c)->Wait(kSession);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->stdout_data, "out\n");
    EXPECT_EQ(r->stderr_data, "err\n");
    EXPECT_FALSE(r->success);
    EXPECT_EQ(r->exit_code, 3) << r->error_text;
    EXPECT_THAT(r->protocol, HasSubstr("channel.k8s.io"));
  }
}

TEST_F(ExecTest, StdinReachesTheProcessAndClosingItEndsTheProcess) {
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    auto c = OpenExec(d(), t, MakeExecRequest(ctr(), {"cat"}, false, true));
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE((*c)->WriteStdin("first line\n").ok());
    absl::StatusOr<std::string> got = (*c)->ReadStdoutUntil("first line\n", kSession);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE((*c)->WriteStdin("second\n").ok());
    ASSERT_TRUE((*c)->CloseStdin().ok());
    absl::StatusOr<RemoteCommandResult> r = (*c)->Wait(kSession);
    ASSERT_TRUE(r.ok()) << "cat did not end after stdin closed: " << r.status();
    EXPECT_EQ(r->stdout_data, "second\n");
    EXPECT_TRUE(r->success) << r->error_text;
    EXPECT_EQ(r->exit_code, 0);
  }
}

// Writes `stty size` until the pty reports `want` ("rows cols"): the resize
// and stdin travel on different streams, so the first try may beat the resize.
void ExpectSttySize(RemoteCommandClient& c, const std::string& want) {
  absl::StatusOr<std::string> got = absl::DeadlineExceededError("no try");
  for (int i = 0; i < 10 && !got.ok(); ++i) {
    ASSERT_TRUE(c.WriteStdin("stty size\n").ok());
    got = c.ReadStdoutUntil(want + "\r\n", absl::Seconds(3));
  }
  EXPECT_TRUE(got.ok()) << "stty size never printed \"" << want << "\": " << got.status();
}

TEST_F(ExecTest, TtyExecSeesEachResize) {
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    auto c = OpenExec(d(), t, MakeExecRequest(ctr(), {"sh"}, true, true));
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE((*c)->Resize(100, 40).ok());
    ExpectSttySize(**c, "40 100");
    ASSERT_TRUE((*c)->Resize(132, 50).ok());
    ExpectSttySize(**c, "50 132");
    // A tty has no stderr stream: the pty merges it into stdout.
    ASSERT_TRUE((*c)->WriteStdin("echo to-err-$((40+2)) >&2; exit 5\n").ok());
    absl::StatusOr<RemoteCommandResult> r = (*c)->Wait(kSession);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_THAT(r->stdout_data, HasSubstr("to-err-42"));
    EXPECT_EQ(r->stderr_data, "");
    EXPECT_EQ(r->exit_code, 5) << r->error_text;
  }
}

TEST_F(ExecTest, TtyExecEndsWhenStdinCloses) {
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    auto c = OpenExec(d(), t, MakeExecRequest(ctr(), {"sh"}, true, true));
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE((*c)->WriteStdin("echo up-$((1+1))\n").ok());
    ASSERT_TRUE((*c)->ReadStdoutUntil("up-2", kSession).ok());
    ASSERT_TRUE((*c)->CloseStdin().ok());
    absl::StatusOr<RemoteCommandResult> r = (*c)->Wait(absl::Seconds(30));
    EXPECT_TRUE(r.ok()) << "the tty shell did not end after stdin closed: " << r.status();
  }
}

// What UpgradeSpdyRaw answers for a URL that must be refused.
int RefusedStatus(const std::string& url) {
  int http_status = 0;
  absl::StatusOr<base::UniqueFd> fd = UpgradeSpdyRaw(url, "v4.channel.k8s.io", &http_status);
  EXPECT_FALSE(fd.ok()) << "the server upgraded a refused URL: " << url;
  return http_status;
}

TEST_F(ExecTest, AReusedTokenIsRefusedAndRunsNothing) {
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    const std::string mark = absl::StrCat("/tmp/reuse-", TransportName(t));
    absl::StatusOr<std::string> url =
        ExecUrl(d(), MakeExecRequest(ctr(), {"sh", "-c", absl::StrCat("echo ran >> ", mark)}, false, false));
    ASSERT_TRUE(url.ok()) << url.status();
    RemoteCommandOptions o;
    auto first = OpenRemoteCommand(t, *url, o);
    ASSERT_TRUE(first.ok()) << first.status();
    absl::StatusOr<RemoteCommandResult> r = (*first)->Wait(kSession);
    ASSERT_TRUE(r.ok() && r->success) << r.status();
    auto second = OpenRemoteCommand(t, *url, o);
    EXPECT_FALSE(second.ok()) << "a used token was accepted again";
    EXPECT_THAT(RefusedStatus(*url), AnyOf(404, 401));
    EXPECT_EQ(Run({"cat", mark}), "ran\n");
  }
}

TEST_F(ExecTest, AnUnknownTokenIsRefused) {
  absl::StatusOr<std::string> url = ExecUrl(d(), MakeExecRequest(ctr(), {"true"}, false, false));
  ASSERT_TRUE(url.ok()) << url.status();
  std::string forged = *url;
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  EXPECT_THAT(RefusedStatus(forged), AnyOf(404, 401));
  const std::string base = url->substr(0, url->find("/exec/"));
  EXPECT_THAT(RefusedStatus(base + "/exec/"), AnyOf(404, 401));
  EXPECT_THAT(RefusedStatus(base + "/exec/not-a-token"), AnyOf(404, 401));
}

TEST_F(ExecTest, AnExpiredTokenIsRefused) {
  const std::string mark = "/tmp/expired";
  absl::StatusOr<std::string> url =
      ExecUrl(d(), MakeExecRequest(ctr(), {"sh", "-c", absl::StrCat("echo ran >> ", mark)}, false, false));
  ASSERT_TRUE(url.ok()) << url.status();
  std::this_thread::sleep_for(std::chrono::seconds(kTokenTtlSeconds + 2));
  EXPECT_THAT(RefusedStatus(*url), AnyOf(404, 401));
  auto ws = OpenWebSocketRemoteCommand(*url, RemoteCommandOptions{});
  EXPECT_FALSE(ws.ok());
  absl::StatusOr<pb::ExecSyncResponse> r = ExecSync(d(), ctr(), {"cat", mark});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(r->exit_code(), 0) << "the expired exec ran: " << r->stdout();
}

// --- hostile SPDY clients ------------------------------------------------------

// A SPDY/3 control frame: version 3, `type`, `flags`, 24-bit length.
std::string ControlFrame(uint16_t type, uint8_t flags, const std::string& payload) {
  std::string f;
  f += static_cast<char>(0x80);
  f += static_cast<char>(0x03);
  f += static_cast<char>(type >> 8);
  f += static_cast<char>(type & 0xff);
  f += static_cast<char>(flags);
  f += static_cast<char>((payload.size() >> 16) & 0xff);
  f += static_cast<char>((payload.size() >> 8) & 0xff);
  f += static_cast<char>(payload.size() & 0xff);
  return f + payload;
}

void PutU32(std::string& s, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((v >> shift) & 0xff);
}

// SYN_STREAM for stream 1 whose header block inflates to more than `bytes`:
// small on the wire, big once decompressed (a zlib bomb in one header).
std::string SynStreamWithHugeHeaders(size_t bytes) {
  std::string block;
  PutU32(block, 2);
  PutU32(block, 10);
  block += "streamtype";
  PutU32(block, 5);
  block += "error";
  PutU32(block, 5);
  block += "x-big";
  PutU32(block, static_cast<uint32_t>(bytes));
  block += std::string(bytes, 'a');
  uLongf len = compressBound(block.size());
  std::string z(len, '\0');
  EXPECT_EQ(compress2(reinterpret_cast<Bytef*>(z.data()), &len, reinterpret_cast<const Bytef*>(block.data()),
                      block.size(), 9),
            Z_OK);
  z.resize(len);
  std::string payload;
  PutU32(payload, 1);  // stream id
  PutU32(payload, 0);  // associated stream
  payload += '\0';     // priority
  payload += '\0';     // slot
  return ControlFrame(1, 0, payload + z);
}

// Reads until the server closes `fd`; false if it is still open after `timeout`.
bool ServerCloses(int fd, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  char buf[4096];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (::poll(&p, 1, std::max(left, 1)) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return true;  // EOF or reset: closed
  }
  return false;
}

// Sends `garbage` on a fresh upgraded SPDY exec connection and checks that the
// server closes it while another session on another connection carries on.
void ExpectOnlyThatConnectionCloses(TestDaemon& d, const std::string& ctr, const std::string& garbage) {
  auto good = OpenExec(d, Transport::kSpdy, MakeExecRequest(ctr, {"cat"}, false, true));
  ASSERT_TRUE(good.ok()) << good.status();
  absl::StatusOr<std::string> url = ExecUrl(d, MakeExecRequest(ctr, {"true"}, false, false));
  ASSERT_TRUE(url.ok()) << url.status();
  int http_status = 0;
  absl::StatusOr<base::UniqueFd> raw = UpgradeSpdyRaw(*url, "v4.channel.k8s.io", &http_status);
  ASSERT_TRUE(raw.ok()) << raw.status();
  ASSERT_EQ(::send(raw->get(), garbage.data(), garbage.size(), MSG_NOSIGNAL), static_cast<ssize_t>(garbage.size()));
  EXPECT_TRUE(ServerCloses(raw->get(), std::chrono::seconds(15))) << "the server kept the hostile connection open";

  ASSERT_TRUE((*good)->WriteStdin("still here\n").ok());
  EXPECT_TRUE((*good)->ReadStdoutUntil("still here\n", kSession).ok());
  ASSERT_TRUE((*good)->CloseStdin().ok());
  absl::StatusOr<RemoteCommandResult> r = (*good)->Wait(kSession);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->success) << r->error_text;
  absl::StatusOr<pb::ExecSyncResponse> e = ExecSync(d, ctr, {"echo", "after"});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->stdout(), "after\n");
}

TEST_F(ExecTest, AMalformedSpdyFrameClosesOnlyThatConnection) {
  // SYN_STREAM needs 10 bytes of fixed fields before its header block; this one has 4.
  std::string truncated;
  PutU32(truncated, 1);
  ExpectOnlyThatConnectionCloses(d(), ctr(), ControlFrame(1, 0, truncated));
}

TEST_F(ExecTest, AFrameLongerThanTheBoundClosesOnlyThatConnection) {
  // A DATA frame header announcing 16 MiB - 1 (StreamLimits::max_frame_bytes is 1 MiB).
  std::string data_frame = {0, 0, 0, 1, 0, static_cast<char>(0xff), static_cast<char>(0xff), static_cast<char>(0xff)};
  ExpectOnlyThatConnectionCloses(d(), ctr(), data_frame + std::string(4096, 'x'));
}

TEST_F(ExecTest, AnOversizedHeaderBlockClosesOnlyThatConnection) {
  // StreamLimits::max_header_block_bytes is 64 KiB decompressed.
  ExpectOnlyThatConnectionCloses(d(), ctr(), SynStreamWithHugeHeaders(1 << 20));
}

}  // namespace
}  // namespace kvcri::testing
