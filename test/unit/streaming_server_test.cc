// The streaming server with a fake backend: tokens, routing and refusals, WebSocket exec/attach/port-forward, HTTPS, bounds.
#include "cri/streaming/streaming_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <cstdlib>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/synchronization/notification.h"
#include "config/base/clock.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"
#include "cri/streaming/request_cache.h"
#include "cri/streaming/streaming_config.h"
#include "test/client/stream_client.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::streaming {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Commands the fake understands (cmd[0]):
//   echo OUT ERR CODE  writes OUT to stdout, ERR to stderr, exits CODE
//   cat                copies stdin to stdout until its end
//   resize N           writes "WxH\n" for N resize events
//   fail               the command cannot run
//   hang               blocks until the client is gone
class FakeBackend : public StreamingBackend {
 public:
  CommandResult Exec(const ExecSpec& spec, RemoteCommandStreams& streams) override {
    calls_.fetch_add(1);
    const std::vector<std::string>& cmd = spec.cmd;
    if (cmd.empty()) return {absl::InvalidArgumentError("no command"), 0};
    if (cmd[0] == "echo" && cmd.size() == 4) {
      if (streams.Stdout()) {
        EXPECT_TRUE(streams.Stdout()->Write(cmd[1]).ok());
      }
      if (streams.Stderr()) {
        EXPECT_TRUE(streams.Stderr()->Write(cmd[2]).ok());
      }
      return {absl::OkStatus(), std::atoi(cmd[3].c_str())};
    }
    if (cmd[0] == "cat") {
      char buf[4096];
      for (;;) {
        absl::StatusOr<size_t> n = streams.Stdin()->Read(buf, sizeof(buf));
        if (!n.ok()) return {n.status(), 0};
        if (*n == 0) break;
        if (absl::Status s = streams.Stdout()->Write(std::string_view(buf, *n)); !s.ok()) return {s, 0};
      }
      return {absl::OkStatus(), 0};
    }
    if (cmd[0] == "resize" && cmd.size() == 2) {
      for (int i = 0; i < std::atoi(cmd[1].c_str()); ++i) {
        std::optional<TerminalSize> size = streams.NextResize();
        if (!size) return {absl::OkStatus(), 3};
        EXPECT_TRUE(streams.Stdout()->Write(base::StrCat(size->width, "x", size->height, "\n")).ok());
      }
      return {absl::OkStatus(), 0};
    }
    if (cmd[0] == "hang") {
      absl::Notification gone;
      streams.OnClientGone([&] { gone.Notify(); });
      started_.Notify();
      gone.WaitForNotification();
      saw_client_gone_ = true;
      return {absl::CancelledError("client gone"), 0};
    }
    return {absl::InternalError("the command cannot run"), 0};
  }
  CommandResult Attach(const AttachSpec& spec, RemoteCommandStreams& streams) override {
    calls_.fetch_add(1);
    EXPECT_TRUE(streams.Stdout()->Write(base::StrCat("console of ", spec.container_id)).ok());
    return {absl::OkStatus(), 0};
  }
  absl::Status PortForward(const std::string& pod, uint16_t port, ByteStream& stream) override {
    calls_.fetch_add(1);
    if (port == 81) return absl::UnavailableError("connection refused");
    if (absl::Status s = stream.Write(base::StrCat("hello from ", pod, ":", port, "\n")); !s.ok()) return s;
    char buf[1024];
    for (;;) {
      absl::StatusOr<size_t> n = stream.Read(buf, sizeof(buf));
      if (!n.ok() || *n == 0) return absl::OkStatus();
      if (absl::Status s = stream.Write(base::StrCat(port, ">", std::string_view(buf, *n))); !s.ok()) return s;
    }
  }

  std::atomic<int> calls_{0};
  absl::Notification started_;
  std::atomic<bool> saw_client_gone_{false};
};

ExecSpec Exec(std::vector<std::string> cmd, bool stdin = false, bool tty = false) {
  ExecSpec s;
  s.container_id = "c1";
  s.cmd = std::move(cmd);
  s.stdin = stdin;
  s.stdout = true;
  s.stderr = !tty;
  s.tty = tty;
  return s;
}

testing::RemoteCommandOptions Opts(std::vector<std::string> protocols, bool stdin = false, bool tty = false) {
  testing::RemoteCommandOptions o;
  o.protocols = std::move(protocols);
  o.stdin = stdin;
  o.tty = tty;
  o.stderr = !tty;
  return o;
}

uint16_t PortOf(const std::string& base_url) {
  return static_cast<uint16_t>(std::stoi(base_url.substr(base_url.rfind(':') + 1)));
}

// Sends `request` as is and returns all the server answered (until it closed).
std::string RawHttp(uint16_t port, const std::string& request) {
  base::UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return "connect failed";
  timeval tv{10, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  for (size_t off = 0; off < request.size();) {
    ssize_t n = send(fd.get(), request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer (and close) before reading it all
    off += static_cast<size_t>(n);
  }
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = recv(fd.get(), buf, sizeof(buf), 0)) > 0;) {
    out.append(buf, static_cast<size_t>(n));
    // An upgraded connection stays open (the server waits 10 s for the
    // client's streams): its response ends with its header.
    if (out.starts_with("HTTP/1.1 101") && out.find("\r\n\r\n") != std::string::npos) break;
  }
  return out;
}

std::string PathOf(const std::string& url) { return url.substr(url.find('/', url.find("//") + 2)); }

class StreamingServerTest : public ::testing::Test {
 protected:
  void StartServer(StreamingServerOptions options = {}) {
    options.clock = &clock_;
    absl::StatusOr<std::unique_ptr<StreamingServer>> s = StreamingServer::Start(options, &backend_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
  }
  void SetUp() override { StartServer(); }

  base::ManualClock clock_;
  FakeBackend backend_;
  std::unique_ptr<StreamingServer> server_;
};

TEST(RequestCache, TokensAreUrlSafeRandomAndSingleUse) {
  base::ManualClock clock;
  RequestCache cache(absl::Minutes(1), 10, &clock);
  absl::StatusOr<std::string> a = cache.Insert(ExecSpec{});
  absl::StatusOr<std::string> b = cache.Insert(AttachSpec{});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_EQ(a->size(), 32u);  // 24 random bytes
  EXPECT_EQ(a->find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), std::string::npos);
  std::optional<StreamRequest> got = cache.Consume(*b);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(std::holds_alternative<AttachSpec>(*got));
  EXPECT_FALSE(cache.Consume(*b).has_value());
  EXPECT_FALSE(cache.Consume("no-such-token").has_value());
}

TEST(RequestCache, TokensExpireAfterTheTtl) {
  base::ManualClock clock;
  RequestCache cache(absl::Seconds(60), 10, &clock);
  absl::StatusOr<std::string> early = cache.Insert(ExecSpec{});
  absl::StatusOr<std::string> late = cache.Insert(ExecSpec{});
  ASSERT_TRUE(early.ok() && late.ok());
  clock.Advance(absl::Seconds(59));
  EXPECT_TRUE(cache.Consume(*early).has_value());
  clock.Advance(absl::Seconds(1));
  EXPECT_FALSE(cache.Consume(*late).has_value());
}

TEST(RequestCache, AFullCacheSweepsExpiredTokensThenRefuses) {
  base::ManualClock clock;
  RequestCache cache(absl::Seconds(60), 2, &clock);
  ASSERT_TRUE(cache.Insert(ExecSpec{}).ok());
  clock.Advance(absl::Seconds(30));
  absl::StatusOr<std::string> second = cache.Insert(ExecSpec{});
  ASSERT_TRUE(second.ok());
  absl::StatusOr<std::string> third = cache.Insert(ExecSpec{});
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  clock.Advance(absl::Seconds(30));  // the first has expired: its slot is free
  third = cache.Insert(ExecSpec{});
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(cache.PendingForTest(), 2u);
  EXPECT_TRUE(cache.Consume(*second).has_value());
}

TEST_F(StreamingServerTest, UrlsPointAtTheBoundLoopbackPort) {
  EXPECT_THAT(server_->BaseUrl(), StartsWith("http://127.0.0.1:"));
  EXPECT_NE(PortOf(server_->BaseUrl()), 0);
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"echo", "", "", "0"}));
  ASSERT_TRUE(url.ok());
  EXPECT_THAT(*url, StartsWith(server_->BaseUrl() + "/exec/"));
}

TEST_F(StreamingServerTest, ExecOverWebSocketV5CopiesStdinAndClosesIt) {
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"cat"}, /*stdin=*/true));
  ASSERT_TRUE(url.ok());
  auto client = testing::OpenWebSocketRemoteCommand(*url, Opts({}, /*stdin=*/true));
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->protocol(), "v5.channel.k8s.io");
  ASSERT_TRUE((*client)->WriteStdin("hello ").ok());
  ASSERT_TRUE((*client)->WriteStdin("world").ok());
  absl::StatusOr<std::string> seen = (*client)->ReadStdoutUntil("hello world", absl::Seconds(10));
  ASSERT_TRUE(seen.ok()) << seen.status();
  ASSERT_TRUE((*client)->WriteStdin("!").ok());
  ASSERT_TRUE((*client)->CloseStdin().ok());
  absl::StatusOr<testing::RemoteCommandResult> r = (*client)->Wait(absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->success) << r->error_text;
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_data, "!");
  EXPECT_THAT(r->error_text, HasSubstr("\"status\":\"Success\""));
}

TEST_F(StreamingServerTest, ExecOverWebSocketV5ReportsStderrAndTheExitCode) {
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"echo", "out", "err", "1"}));
  ASSERT_TRUE(url.ok());
  auto client = testing::OpenWebSocketRemoteCommand(*url, Opts({}));
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<testing::RemoteCommandResult> r = (*client)->Wait(absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->success);
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_EQ(r->stdout_data, "out");
  EXPECT_EQ(r->stderr_data, "err");
  EXPECT_THAT(r->error_text, HasSubstr("NonZeroExitCode"));
}

TEST_F(StreamingServerTest, ExecOverWebSocketV4) {
  for (int code : {0, 1}) {
    absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"echo", "o", "e", std::to_string(code)}));
    ASSERT_TRUE(url.ok());
    auto client = testing::OpenWebSocketRemoteCommand(*url, Opts({"v4.channel.k8s.io"}));
    ASSERT_TRUE(client.ok()) << client.status();
    EXPECT_EQ((*client)->protocol(), "v4.channel.k8s.io");
    // v4 has no stdin close message.
    EXPECT_EQ((*client)->CloseStdin().code(), absl::StatusCode::kFailedPrecondition);
    absl::StatusOr<testing::RemoteCommandResult> r = (*client)->Wait(absl::Seconds(10));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->success, code == 0);
    EXPECT_EQ(r->exit_code, code);
    EXPECT_EQ(r->stdout_data, "o");
    EXPECT_EQ(r->stderr_data, "e");
  }
}

TEST_F(StreamingServerTest, ExecOverTheBase64AndLegacyProtocols) {
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"echo", "b64 out", "b64 err", "0"}));
  ASSERT_TRUE(url.ok());
  auto client = testing::OpenWebSocketRemoteCommand(*url, Opts({"v4.base64.channel.k8s.io"}));
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<testing::RemoteCommandResult> r = (*client)->Wait(absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->success);
  EXPECT_EQ(r->stdout_data, "b64 out");
  EXPECT_EQ(r->stderr_data, "b64 err");

  // channel.k8s.io: the error channel carries only a failure's text.
  url = server_->PrepareExec(Exec({"fail"}));
  ASSERT_TRUE(url.ok());
  client = testing::OpenWebSocketRemoteCommand(*url, Opts({"channel.k8s.io"}));
  ASSERT_TRUE(client.ok()) << client.status();
  r = (*client)->Wait(absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->success);
  EXPECT_THAT(r->error_text, HasSubstr("the command cannot run"));
}

TEST_F(StreamingServerTest, ResizeEventsReachTheBackendWithATty) {
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"resize", "2"}, false, /*tty=*/true));
  ASSERT_TRUE(url.ok());
  auto client = testing::OpenWebSocketRemoteCommand(*url, Opts({}, false, /*tty=*/true));
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->Resize(80, 24).ok());
  ASSERT_TRUE((*client)->Resize(132, 50).ok());
  absl::StatusOr<testing::RemoteCommandResult> r = (*client)->Wait(absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->success) << r->error_text;
  EXPECT_EQ(r->stdout_data, "80x24\n132x50\n");
  EXPECT_EQ(r->stderr_data, "");
}

TEST_F(StreamingServerTest, AttachOverWebSocket) {
  AttachSpec spec;
  spec.container_id = "ctr-7";
  spec.stdout = true;
  absl::StatusOr<std::string> url = server_->PrepareAttach(spec);
  ASSERT_TRUE(url.ok());
  EXPECT_THAT(*url, HasSubstr("/attach/"));
  testing::RemoteCommandOptions o = Opts({});
  o.stderr = false;
  auto client = testing::OpenWebSocketRemoteCommand(*url, o);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<testing::RemoteCommandResult> r = (*client)->Wait(absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "console of ctr-7");
}

TEST_F(StreamingServerTest, ATokenIsGoodForOneConnection) {
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"echo", "x", "", "0"}));
  ASSERT_TRUE(url.ok());
  {
    auto client = testing::OpenWebSocketRemoteCommand(*url, Opts({}));
    ASSERT_TRUE(client.ok()) << client.status();
    ASSERT_TRUE((*client)->Wait(absl::Seconds(10)).ok());
  }
  auto again = testing::OpenWebSocketRemoteCommand(*url, Opts({}));
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("HTTP 404"));
  EXPECT_EQ(backend_.calls_.load(), 1);
}

TEST_F(StreamingServerTest, AnExpiredTokenIs404AndNothingRuns) {
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"echo", "x", "", "0"}));
  ASSERT_TRUE(url.ok());
  clock_.Advance(absl::Minutes(1));
  auto client = testing::OpenWebSocketRemoteCommand(*url, Opts({}));
  ASSERT_FALSE(client.ok());
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("HTTP 404"));
  EXPECT_EQ(backend_.calls_.load(), 0);
}

TEST_F(StreamingServerTest, UnknownTokensRoutesAndMismatchedRoutesAre404) {
  const uint16_t port = PortOf(server_->BaseUrl());
  EXPECT_THAT(RawHttp(port, "GET /exec/nosuchtoken HTTP/1.1\r\nHost: x\r\n\r\n"), StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(RawHttp(port, "GET /logs/x HTTP/1.1\r\nHost: x\r\n\r\n"), StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(RawHttp(port, "GET /exec/a/b HTTP/1.1\r\nHost: x\r\n\r\n"), StartsWith("HTTP/1.1 404"));
  // An exec token is no attach token (and is spent by the try).
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"echo", "x", "", "0"}));
  ASSERT_TRUE(url.ok());
  std::string path = PathOf(*url);
  path.replace(0, 5, "/attach");
  EXPECT_THAT(RawHttp(port, "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"), StartsWith("HTTP/1.1 404"));
  EXPECT_EQ(backend_.calls_.load(), 0);
}

TEST_F(StreamingServerTest, MalformedRequestsAre400AndOtherMethods405) {
  const uint16_t port = PortOf(server_->BaseUrl());
  EXPECT_THAT(RawHttp(port, "NOT HTTP AT ALL\r\n\r\n"), StartsWith("HTTP/1.1 400"));
  EXPECT_THAT(RawHttp(port, "GET /exec/x HTTP/1.1\r\nBad Header\r\n\r\n"), StartsWith("HTTP/1.1 400"));
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"echo", "x", "", "0"}));
  ASSERT_TRUE(url.ok());
  EXPECT_THAT(RawHttp(port, "DELETE " + PathOf(*url) + " HTTP/1.1\r\nHost: x\r\n\r\n"), StartsWith("HTTP/1.1 405"));
  // Neither WebSocket nor SPDY: kubelet's "missing upgrade headers".
  url = server_->PrepareExec(Exec({"echo", "x", "", "0"}));
  ASSERT_TRUE(url.ok());
  std::string r = RawHttp(port, "POST " + PathOf(*url) +
                                    " HTTP/1.1\r\nHost: x\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n");
  EXPECT_THAT(r, StartsWith("HTTP/1.1 400"));
  EXPECT_THAT(r, HasSubstr("missing upgrade headers"));
  EXPECT_EQ(backend_.calls_.load(), 0);
}

TEST_F(StreamingServerTest, OversizedRequestHeadersAreRefused) {
  std::string big = "GET /exec/x HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(100 << 10, 'a') + "\r\n\r\n";
  EXPECT_THAT(RawHttp(PortOf(server_->BaseUrl()), big), StartsWith("HTTP/1.1 431"));
}

TEST_F(StreamingServerTest, SpdyUpgradeNegotiatesTheProtocolAsKubeletDoes) {
  const uint16_t port = PortOf(server_->BaseUrl());
  auto upgrade = [&](const std::string& path, const std::string& offers) {
    std::string req = "POST " + path + " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n";
    if (!offers.empty()) req += "X-Stream-Protocol-Version: " + offers + "\r\n";
    return RawHttp(port, req + "\r\n");
  };
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"echo", "x", "", "0"}));
  ASSERT_TRUE(url.ok());
  std::string r = upgrade(PathOf(*url), "v9.channel.k8s.io");
  EXPECT_THAT(r, StartsWith("HTTP/1.1 403"));
  EXPECT_THAT(r, HasSubstr("unable to upgrade: unable to negotiate protocol: client supports [v9.channel.k8s.io]"));
  EXPECT_THAT(r, HasSubstr("X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io"));

  url = server_->PrepareExec(Exec({"echo", "x", "", "0"}));
  ASSERT_TRUE(url.ok());
  EXPECT_THAT(upgrade(PathOf(*url), ""), StartsWith("HTTP/1.1 400"));

  // The client's order decides among what both speak.
  url = server_->PrepareExec(Exec({"echo", "x", "", "0"}));
  ASSERT_TRUE(url.ok());
  r = upgrade(PathOf(*url), "v3.channel.k8s.io, v4.channel.k8s.io");
  EXPECT_THAT(r, StartsWith("HTTP/1.1 101 Switching Protocols\r\n"));
  EXPECT_THAT(r, HasSubstr("Upgrade: SPDY/3.1\r\n"));
  EXPECT_THAT(r, HasSubstr("X-Stream-Protocol-Version: v3.channel.k8s.io\r\n"));

  PortForwardSpec pf;
  pf.pod_sandbox_id = "pod1";
  url = server_->PreparePortForward(pf);
  ASSERT_TRUE(url.ok());
  r = upgrade(PathOf(*url), "portforward.k8s.io");
  EXPECT_THAT(r, StartsWith("HTTP/1.1 101"));
  EXPECT_THAT(r, HasSubstr("X-Stream-Protocol-Version: portforward.k8s.io\r\n"));
}

TEST_F(StreamingServerTest, PortForwardOverWebSocketWithTwoPorts) {
  PortForwardSpec pf;
  pf.pod_sandbox_id = "pod1";
  absl::StatusOr<std::string> url = server_->PreparePortForward(pf);
  ASSERT_TRUE(url.ok());
  auto client = testing::OpenWebSocketPortForward(*url, {80, 8080});
  ASSERT_TRUE(client.ok()) << client.status();
  auto a = (*client)->Connect(80);
  auto b = (*client)->Connect(8080);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE((*client)->Connect(9999).ok());
  auto read_until = [](testing::ForwardedConnection& c, std::string_view want) {
    std::string got;
    char buf[256];
    while (got.find(want) == std::string::npos) {
      absl::StatusOr<size_t> n = c.Read(buf, sizeof(buf));
      if (!n.ok() || *n == 0) break;
      got.append(buf, *n);
    }
    return got;
  };
  EXPECT_EQ(read_until(**a, "\n"), "hello from pod1:80\n");
  EXPECT_EQ(read_until(**b, "\n"), "hello from pod1:8080\n");
  ASSERT_TRUE((*b)->Write("ping").ok());
  ASSERT_TRUE((*a)->Write("pong").ok());
  EXPECT_EQ(read_until(**a, "pong"), "80>pong");
  EXPECT_EQ(read_until(**b, "ping"), "8080>ping");
}

TEST_F(StreamingServerTest, PortForwardErrorsArriveOnThePortsErrorChannel) {
  PortForwardSpec pf;
  pf.pod_sandbox_id = "pod1";
  absl::StatusOr<std::string> url = server_->PreparePortForward(pf);
  ASSERT_TRUE(url.ok());
  auto client = testing::OpenWebSocketPortForward(*url, {81});
  ASSERT_TRUE(client.ok()) << client.status();
  auto c = (*client)->Connect(81);
  ASSERT_TRUE(c.ok());
  char buf[64];
  absl::StatusOr<size_t> n = (*c)->Read(buf, sizeof(buf));
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(std::string(n.status().message()), HasSubstr("error forwarding port 81 to pod pod1: connection refused"));
}

TEST_F(StreamingServerTest, PortForwardRefusesBadPortsAndTheTunnelingProtocol) {
  PortForwardSpec pf;
  pf.pod_sandbox_id = "pod1";
  pf.ports = {80};
  absl::StatusOr<std::string> url = server_->PreparePortForward(pf);
  ASSERT_TRUE(url.ok());
  auto client = testing::OpenWebSocketPortForward(*url, {8080});
  ASSERT_FALSE(client.ok());
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("HTTP 400"));
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("port 8080 is not in the PortForward request"));

  const uint16_t port = PortOf(server_->BaseUrl());
  auto ws_request = [](const std::string& path, const std::string& protocol) {
    return "GET " + path +
           " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: " +
           protocol + "\r\n\r\n";
  };
  pf.ports.clear();
  url = server_->PreparePortForward(pf);
  ASSERT_TRUE(url.ok());
  EXPECT_THAT(RawHttp(port, ws_request(PathOf(*url), "v4.channel.k8s.io")), HasSubstr("port\" is required"));
  for (const char* bad : {"?port=0", "?port=65536", "?port=http", "?port="}) {
    url = server_->PreparePortForward(pf);
    ASSERT_TRUE(url.ok());
    EXPECT_THAT(RawHttp(port, ws_request(PathOf(*url) + bad, "v4.channel.k8s.io")), StartsWith("HTTP/1.1 400"))
        << bad;
  }
  // client-go's tunneling dialer: refused with a non-101, so it falls back to SPDY.
  url = server_->PreparePortForward(pf);
  ASSERT_TRUE(url.ok());
  EXPECT_THAT(RawHttp(port, ws_request(PathOf(*url) + "?port=80", "SPDY/3.1+portforward.k8s.io")),
              StartsWith("HTTP/1.1 403"));
  EXPECT_EQ(backend_.calls_.load(), 0);
}

TEST_F(StreamingServerTest, MaxConnectionsAnswers503) {
  server_.reset();
  StreamingServerOptions options;
  options.max_connections = 1;
  StartServer(options);
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"hang"}));
  ASSERT_TRUE(url.ok());
  auto client = testing::OpenWebSocketRemoteCommand(*url, Opts({}));
  ASSERT_TRUE(client.ok()) << client.status();
  backend_.started_.WaitForNotification();
  std::string r = RawHttp(PortOf(server_->BaseUrl()), "GET /exec/x HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(r, StartsWith("HTTP/1.1 503"));
}

TEST_F(StreamingServerTest, ShutdownEndsSessionsAndTellsTheBackend) {
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"hang"}));
  ASSERT_TRUE(url.ok());
  auto client = testing::OpenWebSocketRemoteCommand(*url, Opts({}));
  ASSERT_TRUE(client.ok()) << client.status();
  backend_.started_.WaitForNotification();
  server_->Shutdown();
  EXPECT_TRUE(backend_.saw_client_gone_.load());
  // The client sees its connection end (cut: no status on the error channel).
  absl::StatusOr<testing::RemoteCommandResult> r = (*client)->Wait(absl::Seconds(10));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  server_->Shutdown();  // idempotent
}

TEST_F(StreamingServerTest, AnOversizedWebSocketMessageEndsThatConnectionOnly) {
  server_.reset();
  StreamingServerOptions options;
  options.limits.max_frame_bytes = 1024;
  StartServer(options);
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"cat"}, /*stdin=*/true));
  ASSERT_TRUE(url.ok());
  auto client = testing::OpenWebSocketRemoteCommand(*url, Opts({}, /*stdin=*/true));
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->WriteStdin("small").ok());
  ASSERT_TRUE((*client)->ReadStdoutUntil("small", absl::Seconds(10)).ok());
  (*client)->WriteStdin(std::string(4096, 'x')).IgnoreError();  // the server may cut us off meanwhile
  absl::StatusOr<testing::RemoteCommandResult> r = (*client)->Wait(absl::Seconds(10));
  EXPECT_NE(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  if (r.ok()) {
    EXPECT_FALSE(r->success);
  }
  // The server still serves others.
  url = server_->PrepareExec(Exec({"echo", "still here", "", "0"}));
  ASSERT_TRUE(url.ok());
  auto other = testing::OpenWebSocketRemoteCommand(*url, Opts({}));
  ASSERT_TRUE(other.ok()) << other.status();
  r = (*other)->Wait(absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "still here");
}

TEST_F(StreamingServerTest, FramesSentBeforeTheWebSocketUpgradeAreRefused) {
  absl::StatusOr<std::string> url = server_->PrepareExec(Exec({"echo", "x", "", "0"}));
  ASSERT_TRUE(url.ok());
  std::string req = "GET " + PathOf(*url) +
                    " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\x82\x81";
  EXPECT_THAT(RawHttp(PortOf(server_->BaseUrl()), req), StartsWith("HTTP/1.1 400"));
  EXPECT_EQ(backend_.calls_.load(), 0);
}

class StreamingServerTlsTest : public testing::ScratchDirTest {};

TEST_F(StreamingServerTlsTest, ExecOverHttpsWithACertificateMadeNow) {
  const std::string cert = (dir_ / "cert.pem").string(), key = (dir_ / "key.pem").string();
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=kvcri-test "
                          "-addext subjectAltName=IP:127.0.0.1 -keyout " +
                          key + " -out " + cert + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl (Debian's openssl package) must be installed: " << cmd;
  FakeBackend backend;
  StreamingServerOptions options;
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  absl::StatusOr<std::unique_ptr<StreamingServer>> server = StreamingServer::Start(options, &backend);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT((*server)->BaseUrl(), StartsWith("https://127.0.0.1:"));
  absl::StatusOr<std::string> url = (*server)->PrepareExec(Exec({"echo", "secret", "", "0"}));
  ASSERT_TRUE(url.ok());
  testing::RemoteCommandOptions o = Opts({});
  o.tls_ca_file = cert;
  auto client = testing::OpenWebSocketRemoteCommand(*url, o);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<testing::RemoteCommandResult> r = (*client)->Wait(absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->success);
  EXPECT_EQ(r->stdout_data, "secret");

  // Plain HTTP to the TLS port gets nowhere.
  url = (*server)->PrepareExec(Exec({"echo", "x", "", "0"}));
  ASSERT_TRUE(url.ok());
  EXPECT_THAT(RawHttp(PortOf((*server)->BaseUrl()), "GET " + PathOf(*url) + " HTTP/1.1\r\n\r\n"),
              ::testing::Not(HasSubstr("HTTP/1.1 101")));

  // Refused at start: a key without a certificate, a key of another certificate.
  StreamingServerOptions half;
  half.tls_key_file = key;
  EXPECT_EQ(StreamingServer::Start(half, &backend).status().code(), absl::StatusCode::kInvalidArgument);
  const std::string other_key = (dir_ / "other.pem").string();
  ASSERT_EQ(std::system(("openssl genrsa -out " + other_key + " 2048 >/dev/null 2>&1").c_str()), 0);
  StreamingServerOptions mismatched = options;
  mismatched.tls_key_file = other_key;
  absl::StatusOr<std::unique_ptr<StreamingServer>> bad = StreamingServer::Start(mismatched, &backend);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("mismatch"));
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr(other_key));
}

TEST(StreamingConfig, OptionsFromConfigCheckTheTlsFiles) {
  config::StreamingConfig cfg;
  absl::StatusOr<StreamingServerOptions> o = StreamingOptionsFromConfig(cfg);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->address, "127.0.0.1:0");
  EXPECT_EQ(o->token_ttl, absl::Seconds(60));
  EXPECT_EQ(o->max_connections, 256u);
  cfg.tls_cert_file = "/nonexistent/cert.pem";
  cfg.tls_key_file = "/nonexistent/key.pem";
  o = StreamingOptionsFromConfig(cfg);
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(o.status().message()), HasSubstr("streaming.tls_cert_file"));
  cfg.tls_key_file.clear();
  o = StreamingOptionsFromConfig(cfg);
  EXPECT_THAT(std::string(o.status().message()), HasSubstr("must be set together"));
}

TEST(StreamingServerStart, RefusesABadAddress) {
  FakeBackend backend;
  for (const char* bad : {"localhost:0", "127.0.0.1", "[::1:0", "127.0.0.1:99999"}) {
    StreamingServerOptions o;
    o.address = bad;
    EXPECT_EQ(StreamingServer::Start(o, &backend).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace kvcri::streaming
