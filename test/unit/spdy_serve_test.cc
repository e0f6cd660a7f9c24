// Unit tests of the SPDY/3.1 session and ServeSpdyConnection over socketpairs with a fake backend: exec, attach, port-forward, flow control, hostile peers.
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <cerrno>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/strings/match.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/streaming/spdy_serve.h"
#include "cri/streaming/spdy_session.h"
#include "test/client/stream_client.h"
#include "test/client/tls_pipe.h"

namespace kvcri::streaming {
namespace {

using spdy::Frame;
using spdy::FrameType;
using spdy::HeaderList;
using spdy::Session;
using spdy::Stream;

// Commands: {"echo", "<exit>"}: stdin to stdout and stderr with prefixes;
// {"resize"}: one line per resize; {"block"}: reads nothing until released;
// {"big", "<n>"}: n bytes of stdout; {"fail"}: an error status.
class FakeBackend : public StreamingBackend {
 public:
  CommandResult Exec(const ExecSpec& spec, RemoteCommandStreams& io) override {
    const std::string cmd = spec.cmd.empty() ? "" : spec.cmd[0];
    if (cmd == "fail") return {absl::UnavailableError("guest agent is not connected"), 0};
    if (cmd == "block") {
      started.Notify();
      release.WaitForNotification();
    }
    if (cmd == "wait_gone") {
      auto gone = std::make_shared<absl::Notification>();
      io.OnClientGone([gone] { gone->Notify(); });
      started.Notify();
      returned_after_gone = gone->WaitForNotificationWithTimeout(absl::Seconds(10));
      return {};
    }
    if (cmd == "big") {
      std::string chunk(4096, 'b');
      for (int left = std::stoi(spec.cmd[1]); left > 0; left -= 4096) {
        if (!io.Stdout()->Write(std::string_view(chunk).substr(0, std::min(left, 4096))).ok()) break;
      }
      return {};
    }
    if (cmd == "resize") {
      while (std::optional<TerminalSize> s = io.NextResize()) {
        io.Stdout()->Write(base::StrCat(s->width, "x", s->height, "\n")).IgnoreError();
      }
      return {};
    }
    std::string in;
    char buf[8192];
    while (io.Stdin() != nullptr) {
      absl::StatusOr<size_t> n = io.Stdin()->Read(buf, sizeof buf);
      if (!n.ok() || *n == 0) break;
      in.append(buf, *n);
    }
    stdin_bytes = in.size();
    if (io.Stdout() != nullptr) io.Stdout()->Write("out:" + in.substr(0, 64)).IgnoreError();
    if (io.Stderr() != nullptr) io.Stderr()->Write("err:" + in.substr(0, 64)).IgnoreError();
    return {absl::OkStatus(), spec.cmd.size() > 1 ? std::stoi(spec.cmd[1]) : 0};
  }
  CommandResult Attach(const AttachSpec& spec, RemoteCommandStreams& io) override {
    io.Stdout()->Write("attached:" + spec.container_id).IgnoreError();
    return {};
  }
  absl::Status PortForward(const std::string& pod, uint16_t port, ByteStream& s) override {
    if (port == 7) return absl::UnavailableError("connection refused");
    std::string in;
    char buf[4096];
    while (true) {
      absl::StatusOr<size_t> n = s.Read(buf, sizeof buf);
      if (!n.ok()) return n.status();
      if (*n == 0) break;
      in.append(buf, *n);
    }
    // Half-close: our answer comes after the client closed its side.
    RETURN_IF_ERROR(s.Write(base::StrCat(pod, ":", port, ":", in)));
    return s.CloseWrite();
  }
  absl::Notification started, release;
  std::atomic<size_t> stdin_bytes{0};
  std::atomic<bool> returned_after_gone{false};
};

std::pair<base::UniqueFd, base::UniqueFd> SocketPair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  return {base::UniqueFd(sv[0]), base::UniqueFd(sv[1])};
}

// ServeSpdyConnection on one end, our client session on the other.
struct Served {
  Served(SpdyTarget target, StreamingBackend* backend, StreamLimits limits = {}) {
    auto [a, b] = SocketPair();
    server = std::thread([fd = std::move(a), target, backend, limits]() mutable {
      ServeSpdyConnection(std::move(fd), "", target, backend, limits);
    });
    client = std::make_unique<Session>(std::move(b), "", limits, Session::Role::kClient);
    EXPECT_TRUE(client->Start().ok());
  }
  ~Served() {
    client->Close();
    server.join();
  }
  std::shared_ptr<Stream> Open(HeaderList h) {
    auto s = client->Open(h);
    EXPECT_TRUE(s.ok()) << s.status();
    EXPECT_TRUE((*s)->WaitReply(absl::Seconds(10)).ok());
    return *s;
  }
  std::thread server;
  std::unique_ptr<Session> client;
};

std::string ReadAll(ByteReader& r) {
  std::string out;
  char buf[16384];
  while (true) {
    absl::StatusOr<size_t> n = r.Read(buf, sizeof buf);
    if (!n.ok() || *n == 0) return out;
    out.append(buf, *n);
  }
}

SpdyTarget ExecTarget(std::vector<std::string> cmd, std::string protocol, bool in, bool tty = false) {
  ExecSpec spec{"c1", std::move(cmd), tty, in, true, !tty};
  return SpdyExecTarget{spec, std::move(protocol)};
}

TEST(SpdyServe, ExecV4CarriesStdinStdoutStderrAndTheExitCode) {
  FakeBackend backend;
  Served s(ExecTarget({"echo", "3"}, "v4.channel.k8s.io", true), &backend);
  auto error = s.Open({{"streamtype", "error"}});
  auto in = s.Open({{"streamtype", "stdin"}});
  auto out = s.Open({{"streamtype", "stdout"}});
  auto err = s.Open({{"streamtype", "stderr"}});
  ASSERT_TRUE(in->Write("hello").ok());
  ASSERT_TRUE(in->CloseWrite().ok());
  EXPECT_EQ(ReadAll(*out), "out:hello");
  EXPECT_EQ(ReadAll(*err), "err:hello");
  const std::string status = ReadAll(*error);
  EXPECT_EQ(status, StatusJson({absl::OkStatus(), 3}));
  EXPECT_NE(status.find("NonZeroExitCode"), std::string::npos);
}

TEST(SpdyServe, ExecV2WritesOnlyFailuresAsText) {
  FakeBackend backend;
  {
    Served s(ExecTarget({"fail"}, "v2.channel.k8s.io", false), &backend);
    auto error = s.Open({{"streamtype", "error"}});
    auto out = s.Open({{"streamtype", "stdout"}});
    auto err = s.Open({{"streamtype", "stderr"}});
    EXPECT_EQ(ReadAll(*error), "guest agent is not connected");
    EXPECT_EQ(ReadAll(*out), "");
  }
  {
    Served s(ExecTarget({"echo", "0"}, "v2.channel.k8s.io", false), &backend);
    auto error = s.Open({{"streamtype", "error"}});
    auto out = s.Open({{"streamtype", "stdout"}});
    auto err = s.Open({{"streamtype", "stderr"}});
    EXPECT_EQ(ReadAll(*out), "out:");
    EXPECT_EQ(ReadAll(*error), "");  // success: v2 clients learn nothing more
  }
}

TEST(SpdyServe, TtyResizesReachTheBackend) {
  FakeBackend backend;
  Served s(ExecTarget({"resize"}, "v4.channel.k8s.io", true, /*tty=*/true), &backend);
  auto error = s.Open({{"streamtype", "error"}});
  auto in = s.Open({{"streamtype", "stdin"}});
  auto out = s.Open({{"streamtype", "stdout"}});
  auto resize = s.Open({{"streamtype", "resize"}});
  ASSERT_TRUE(resize->Write("{\"Width\":80,\"Height\":24}\n{\"Width\":100,").ok());
  ASSERT_TRUE(resize->Write("\"Height\":40}\n").ok());
  ASSERT_TRUE(resize->CloseWrite().ok());
  EXPECT_EQ(ReadAll(*out), "80x24\n100x40\n");
  EXPECT_EQ(ReadAll(*error), StatusJson({}));
}

TEST(SpdyServe, AttachRuns) {
  FakeBackend backend;
  Served s(SpdyAttachTarget{AttachSpec{"c9", false, false, true, false}, "v3.channel.k8s.io"}, &backend);
  auto error = s.Open({{"streamtype", "error"}});
  auto out = s.Open({{"streamtype", "stdout"}});
  EXPECT_EQ(ReadAll(*out), "attached:c9");
  EXPECT_EQ(ReadAll(*error), "");
}

TEST(SpdyServe, ClientGoingAwayCancelsTheBackend) {
  FakeBackend backend;
  {
    Served s(ExecTarget({"wait_gone"}, "v4.channel.k8s.io", false), &backend);
    auto error = s.Open({{"streamtype", "error"}});
    auto out = s.Open({{"streamtype", "stdout"}});
    auto err = s.Open({{"streamtype", "stderr"}});
    ASSERT_TRUE(backend.started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  }  // the client hangs up; the server thread is joined here
  EXPECT_TRUE(backend.returned_after_gone.load());
}

TEST(SpdyServe, MissingStreamsTimeOutOnTheErrorStream) {
  FakeBackend backend;
  StreamLimits limits;
  limits.stream_creation_timeout_seconds = 1;
  Served s(ExecTarget({"echo"}, "v4.channel.k8s.io", true), &backend, limits);
  auto error = s.Open({{"streamtype", "error"}});
  const std::string status = ReadAll(*error);
  EXPECT_NE(status.find("timed out waiting for client to create streams"), std::string::npos) << status;
}

TEST(SpdyServe, UnexpectedStreamTypeEndsTheSession) {
  FakeBackend backend;
  Served s(ExecTarget({"echo"}, "v4.channel.k8s.io", false), &backend);
  auto error = s.Open({{"streamtype", "error"}});
  auto bogus = s.client->Open({{"streamtype", "bogus"}});
  ASSERT_TRUE(bogus.ok());
  const std::string status = ReadAll(*error);
  EXPECT_NE(status.find("unexpected stream of streamtype \\\"bogus\\\""), std::string::npos) << status;
}

TEST(SpdyServe, LargeOutputFlowsThroughWindowUpdates) {
  FakeBackend backend;
  Served s(ExecTarget({"big", "1048576"}, "v4.channel.k8s.io", false), &backend);
  auto error = s.Open({{"streamtype", "error"}});
  auto out = s.Open({{"streamtype", "stdout"}});
  auto err = s.Open({{"streamtype", "stderr"}});
  EXPECT_EQ(ReadAll(*out).size(), 1048576u);
  EXPECT_EQ(ReadAll(*error), StatusJson({}));
}

// A peer speaking raw frames, for what our client session would never do.
struct RawPeer {
  explicit RawPeer(base::UniqueFd f) : fd(std::move(f)) {
    enc = std::move(*spdy::HeaderEncoder::Create());
    dec = std::move(*spdy::HeaderDecoder::Create(64 << 10));
  }
  void Send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return;  // the server hung up: tests check what it sent
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }
  std::string Syn(uint32_t id, const HeaderList& h, uint8_t flags = 0) {
    return spdy::EncodeSynStream(id, 0, 0, flags, *enc->Encode(h));
  }
  // The next frame; nullopt at EOF or after `timeout`.
  std::optional<Frame> Next(absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      auto f = parser.Next();
      if (!f.ok()) return std::nullopt;
      if (f->has_value()) {
        if ((*f)->type == FrameType::kSynReply) {
          EXPECT_TRUE(dec->Decode((*f)->payload).ok());
        }
        return **f;
      }
      pollfd p{fd.get(), POLLIN, 0};
      const int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (ms <= 0 || ::poll(&p, 1, ms) <= 0) return std::nullopt;
      char buf[65536];
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n <= 0) return std::nullopt;
      parser.Feed(std::string_view(buf, static_cast<size_t>(n)));
    }
  }
  // Frames until one of `type` (returned) or EOF (nullopt).
  std::optional<Frame> Until(FrameType type) {
    while (std::optional<Frame> f = Next()) {
      if (f->type == type) return f;
    }
    return std::nullopt;
  }
  base::UniqueFd fd;
  std::unique_ptr<spdy::HeaderEncoder> enc;
  std::unique_ptr<spdy::HeaderDecoder> dec;
  spdy::FrameParser parser{1 << 24};
};

struct RawServed {
  RawServed(SpdyTarget target, StreamingBackend* backend, StreamLimits limits = {}) {
    auto [a, b] = SocketPair();
    server = std::thread([fd = std::move(a), target, backend, limits]() mutable {
      ServeSpdyConnection(std::move(fd), "", target, backend, limits);
    });
    peer = std::make_unique<RawPeer>(std::move(b));
  }
  ~RawServed() {
    ::shutdown(peer->fd.get(), SHUT_RDWR);
    server.join();
  }
  std::thread server;
  std::unique_ptr<RawPeer> peer;
};

TEST(SpdyServe, MalformedFrameEndsThatConnectionOnly) {
  FakeBackend backend;
  {
    RawServed bad(ExecTarget({"echo"}, "v4.channel.k8s.io", false), &backend);
    bad.peer->Send(spdy::EncodeControl(2, 1, 0, std::string(12, '\0')));  // SPDY/2
    std::optional<Frame> goaway = bad.peer->Until(FrameType::kGoAway);
    ASSERT_TRUE(goaway.has_value());
    EXPECT_EQ(goaway->status, spdy::kGoAwayProtocolError);
    EXPECT_FALSE(bad.peer->Next().has_value());  // then EOF
  }
  // The process serves the next connection as before.
  Served good(ExecTarget({"echo", "0"}, "v4.channel.k8s.io", false), &backend);
  auto error = good.Open({{"streamtype", "error"}});
  auto out = good.Open({{"streamtype", "stdout"}});
  auto err = good.Open({{"streamtype", "stderr"}});
  EXPECT_EQ(ReadAll(*out), "out:");
  EXPECT_EQ(ReadAll(*error), StatusJson({}));
}

TEST(SpdyServe, OversizedHeaderBlockEndsTheConnection) {
  FakeBackend backend;
  StreamLimits limits;
  limits.max_header_block_bytes = 1024;
  RawServed s(ExecTarget({"echo"}, "v4.channel.k8s.io", false), &backend, limits);
  s.peer->Send(s.peer->Syn(1, {{"streamtype", "error"}, {"x", std::string(4096, 'a')}}));
  std::optional<Frame> goaway = s.peer->Until(FrameType::kGoAway);
  ASSERT_TRUE(goaway.has_value());
  EXPECT_EQ(goaway->status, spdy::kGoAwayProtocolError);
  EXPECT_FALSE(s.peer->Until(FrameType::kSynReply).has_value());
}

TEST(SpdyServe, OversizedFrameEndsTheConnection) {
  FakeBackend backend;
  StreamLimits limits;
  limits.max_frame_bytes = 4096;
  RawServed s(ExecTarget({"echo"}, "v4.channel.k8s.io", true), &backend, limits);
  s.peer->Send(spdy::EncodeData(1, 0, std::string(5000, 'x')));
  std::optional<Frame> goaway = s.peer->Until(FrameType::kGoAway);
  ASSERT_TRUE(goaway.has_value());
  EXPECT_EQ(goaway->status, spdy::kGoAwayProtocolError);
}

TEST(SpdyServe, SpeaksOnlyAfterTheClientThenAdvertisesItsWindowAndAnswersPing) {
  FakeBackend backend;
  StreamLimits limits;
  limits.receive_window = 128 << 10;
  RawServed s(ExecTarget({"echo"}, "v4.channel.k8s.io", true), &backend, limits);
  // Nothing before the client spoke: client-go would lose it in the buffer it
  // read the 101 with.
  EXPECT_FALSE(s.peer->Next(absl::Milliseconds(300)).has_value());
  s.peer->Send(spdy::EncodePing(5));
  std::optional<Frame> settings = s.peer->Next();
  ASSERT_TRUE(settings.has_value() && settings->type == FrameType::kSettings);
  bool window = false;
  for (const spdy::Setting& x : settings->settings) {
    if (x.id == spdy::kSettingInitialWindowSize) window = x.value == (128u << 10);
  }
  EXPECT_TRUE(window);
  std::optional<Frame> pong = s.peer->Until(FrameType::kPing);
  ASSERT_TRUE(pong.has_value());
  EXPECT_EQ(pong->ping_id, 5u);
}

TEST(SpdyServe, BackendThatDoesNotReadHoldsTheClientAtTheWindow) {
  FakeBackend backend;
  StreamLimits limits;
  limits.receive_window = 64 << 10;
  Served s(ExecTarget({"block"}, "v4.channel.k8s.io", true), &backend, limits);
  auto error = s.Open({{"streamtype", "error"}});
  auto in = s.Open({{"streamtype", "stdin"}});
  auto out = s.Open({{"streamtype", "stdout"}});
  auto err = s.Open({{"streamtype", "stderr"}});
  ASSERT_TRUE(backend.started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  std::atomic<size_t> sent{0};
  std::thread writer([&] {
    const std::string chunk(4096, 'i');
    for (int i = 0; i < 256; ++i) {  // 1 MiB
      if (!in->Write(chunk).ok()) return;
      sent += chunk.size();
    }
    in->CloseWrite().IgnoreError();
  });
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_LE(sent.load(), 64u << 10);  // the server gave no more credit than one window
  EXPECT_GE(sent.load(), 60u << 10);
  backend.release.Notify();
  writer.join();
  EXPECT_EQ(sent.load(), 1u << 20);
  EXPECT_EQ(ReadAll(*out), "out:" + std::string(64, 'i'));
  EXPECT_EQ(ReadAll(*error), StatusJson({}));
  EXPECT_EQ(backend.stdin_bytes.load(), 1u << 20);
}

TEST(SpdySession, PeerWithoutFlowControlMeetsBackpressure) {
  // client-go's spdystream ignores windows: the server stops reading
  // instead of buffering past the window.
  StreamLimits limits;
  limits.receive_window = 64 << 10;
  auto [a, b] = SocketPair();
  Session server(std::move(a), "", limits, Session::Role::kServer);
  ASSERT_TRUE(server.Start().ok());
  RawPeer peer(std::move(b));
  peer.Send(peer.Syn(1, {{"streamtype", "stdin"}}));
  auto stream = server.Accept(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(stream.ok());
  std::thread flood([&] {
    for (int i = 0; i < 64; ++i) peer.Send(spdy::EncodeData(1, 0, std::string(16 << 10, 'f')));  // 1 MiB
    peer.Send(spdy::EncodeData(1, spdy::kFlagFin, ""));
  });
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_LE(server.buffered_bytes(), 64u << 10);
  EXPECT_GT(server.buffered_bytes(), 0u);
  EXPECT_EQ(ReadAll(**stream).size(), 1u << 20);  // nothing lost
  flood.join();
}

// A backend whose work ended cancels the read it is blocked in; what the
// peer still sends is dropped without stalling the connection.
TEST(SpdySession, CancelReadWakesABlockedReaderAndDropsLaterData) {
  StreamLimits limits;
  limits.receive_window = 64 << 10;
  auto [a, b] = SocketPair();
  Session server(std::move(a), "", limits, Session::Role::kServer);
  ASSERT_TRUE(server.Start().ok());
  RawPeer peer(std::move(b));
  peer.Send(peer.Syn(1, {{"streamtype", "stdin"}}));
  auto stream = server.Accept(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(stream.ok());
  absl::Notification read_returned;
  absl::Status read_status;
  std::thread reader([&] {
    char buf[64];
    read_status = (*stream)->Read(buf, sizeof buf).status();
    read_returned.Notify();
  });
  EXPECT_FALSE(read_returned.WaitForNotificationWithTimeout(absl::Milliseconds(200)));
  (*stream)->CancelRead();
  EXPECT_TRUE(read_returned.WaitForNotificationWithTimeout(absl::Seconds(5)));
  reader.join();
  EXPECT_EQ(read_status.code(), absl::StatusCode::kCancelled);
  // 1 MiB after the cancel: dropped, not buffered, and the connection keeps
  // taking frames (the reader thread is not stuck on a full buffer).
  for (int i = 0; i < 64; ++i) peer.Send(spdy::EncodeData(1, 0, std::string(16 << 10, 'x')));
  peer.Send(peer.Syn(3, {{"streamtype", "stdout"}}));
  auto next = server.Accept(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(server.buffered_bytes(), 0u);
  char buf[8];
  EXPECT_EQ((*stream)->Read(buf, sizeof buf).status().code(), absl::StatusCode::kCancelled);
  (*stream)->CancelRead();  // idempotent
}

TEST(SpdySession, FlowControllingPeerThatOverrunsTheWindowIsReset) {
  StreamLimits limits;
  limits.receive_window = 64 << 10;
  auto [a, b] = SocketPair();
  Session server(std::move(a), "", limits, Session::Role::kServer);
  ASSERT_TRUE(server.Start().ok());
  RawPeer peer(std::move(b));
  peer.Send(spdy::EncodeSettings(0, {{0, spdy::kSettingInitialWindowSize, 1 << 20}}));  // it speaks flow control
  peer.Send(peer.Syn(1, {{"streamtype", "stdin"}}));
  auto stream = server.Accept(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(stream.ok());
  for (int i = 0; i < 5; ++i) peer.Send(spdy::EncodeData(1, 0, std::string(16 << 10, 'f')));  // 80 KiB
  std::optional<Frame> rst = peer.Until(FrameType::kRstStream);
  ASSERT_TRUE(rst.has_value());
  EXPECT_EQ(rst->stream_id, 1u);
  EXPECT_EQ(rst->status, spdy::kRstFlowControlError);
  char c;
  EXPECT_TRUE(absl::IsCancelled((*stream)->Read(&c, 1).status()));
  EXPECT_FALSE(server.gone());  // a stream error, not a connection error
}

// containerd's streaming server writes an exec's exit status on the error
// stream and resets it right after: what came first must still be read.
TEST(SpdySession, DataBeforeThePeersResetIsStillDelivered) {
  auto [a, b] = SocketPair();
  Session server(std::move(a), "", StreamLimits{}, Session::Role::kServer);
  ASSERT_TRUE(server.Start().ok());
  RawPeer peer(std::move(b));
  peer.Send(peer.Syn(1, {{"streamtype", "error"}}));
  auto stream = server.Accept(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(stream.ok());
  peer.Send(spdy::EncodeData(1, spdy::kFlagFin, "status"));
  peer.Send(spdy::EncodeRstStream(1, spdy::kRstCancel));
  absl::SleepFor(absl::Milliseconds(100));  // both frames handled before the first read
  char buf[16];
  absl::StatusOr<size_t> n = (*stream)->Read(buf, sizeof buf);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(std::string(buf, *n), "status");
  absl::StatusOr<size_t> end = (*stream)->Read(buf, sizeof buf);
  EXPECT_TRUE(!end.ok() || *end == 0) << "the stream ends after its data";
}

TEST(SpdySession, FlowControllingPeerThatOverrunsTheSessionWindowGetsGoAway) {
  StreamLimits limits;
  limits.receive_window = 64 << 10;  // the session window too
  auto [a, b] = SocketPair();
  Session server(std::move(a), "", limits, Session::Role::kServer);
  ASSERT_TRUE(server.Start().ok());
  RawPeer peer(std::move(b));
  peer.Send(spdy::EncodeWindowUpdate(0, 1));  // it speaks flow control
  peer.Send(peer.Syn(1, {{"streamtype", "stdin"}}));
  peer.Send(spdy::EncodeData(1, 0, std::string(70 << 10, 'f')));
  std::optional<Frame> goaway = peer.Until(FrameType::kGoAway);
  ASSERT_TRUE(goaway.has_value());
  EXPECT_EQ(goaway->status, spdy::kGoAwayProtocolError);
  EXPECT_EQ(goaway->stream_id, 1u);  // the last stream we accepted
  EXPECT_FALSE(peer.Next().has_value());
  EXPECT_TRUE(server.gone());
  EXPECT_NE(server.error().message().find("session window"), std::string::npos) << server.error();
}

TEST(SpdySession, SendsToAPeerWithoutFlowControlPastTheWindow) {
  // No WINDOW_UPDATE ever comes (spdystream): after the grace we send anyway.
  auto [a, b] = SocketPair();
  Session server(std::move(a), "", {}, Session::Role::kServer);
  ASSERT_TRUE(server.Start().ok());
  RawPeer peer(std::move(b));
  peer.Send(peer.Syn(1, {{"streamtype", "stdout"}}));
  auto stream = server.Accept(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(stream.ok());
  std::thread writer([&] {
    EXPECT_TRUE((*stream)->Write(std::string(200 << 10, 'o')).ok());
    EXPECT_TRUE((*stream)->CloseWrite().ok());
  });
  size_t got = 0;
  while (std::optional<Frame> f = peer.Next()) {
    if (f->type != FrameType::kData) continue;
    got += f->payload.size();
    if (f->flags & spdy::kFlagFin) break;
  }
  writer.join();
  EXPECT_EQ(got, 200u << 10);
}

TEST(SpdySession, RefusesStreamsPastTheLimit) {
  StreamLimits limits;
  limits.max_streams = 2;
  auto [a, b] = SocketPair();
  Session server(std::move(a), "", limits, Session::Role::kServer);
  ASSERT_TRUE(server.Start().ok());
  RawPeer peer(std::move(b));
  std::string three;  // in order: the frames share one zlib stream
  for (uint32_t id : {1, 3, 5}) three += peer.Syn(id, {{"a", std::to_string(id)}});
  peer.Send(three);
  std::optional<Frame> rst = peer.Until(FrameType::kRstStream);
  ASSERT_TRUE(rst.has_value());
  EXPECT_EQ(rst->stream_id, 5u);
  EXPECT_EQ(rst->status, spdy::kRstRefusedStream);
}

TEST(SpdySession, IdleConnectionIsClosed) {
  StreamLimits limits;
  limits.idle_timeout_seconds = 1;
  auto [a, b] = SocketPair();
  Session server(std::move(a), "", limits, Session::Role::kServer);
  ASSERT_TRUE(server.Start().ok());
  RawPeer peer(std::move(b));
  std::optional<Frame> goaway = peer.Until(FrameType::kGoAway);
  ASSERT_TRUE(goaway.has_value());
  EXPECT_FALSE(peer.Next().has_value());  // EOF: the server closed after the GOAWAY
  EXPECT_TRUE(server.gone());
  EXPECT_TRUE(absl::IsDeadlineExceeded(server.error()));
}

SpdyTarget ForwardTarget(std::vector<int32_t> ports = {}) {
  return SpdyPortForwardTarget{PortForwardSpec{"pod1", std::move(ports)}};
}

struct PfPair {
  std::shared_ptr<Stream> error, data;
};

PfPair OpenPair(Served& s, const std::string& port, const std::string& id) {
  PfPair p;
  p.error = s.Open({{"streamtype", "error"}, {"port", port}, {"requestid", id}});
  EXPECT_TRUE(p.error->CloseWrite().ok());
  p.data = s.Open({{"streamtype", "data"}, {"port", port}, {"requestid", id}});
  return p;
}

TEST(SpdyServe, PortForwardServesConcurrentRequestsWithHalfClose) {
  FakeBackend backend;
  Served s(ForwardTarget(), &backend);
  PfPair a = OpenPair(s, "80", "0");
  PfPair b = OpenPair(s, "8080", "1");
  ASSERT_TRUE(a.data->Write("aaa").ok());
  ASSERT_TRUE(b.data->Write("bbb").ok());
  ASSERT_TRUE(a.data->Write("AAA").ok());
  // Closing our side first: the answer still comes back on the open half.
  ASSERT_TRUE(b.data->CloseWrite().ok());
  EXPECT_EQ(ReadAll(*b.data), "pod1:8080:bbb");
  ASSERT_TRUE(a.data->CloseWrite().ok());
  EXPECT_EQ(ReadAll(*a.data), "pod1:80:aaaAAA");
  EXPECT_EQ(ReadAll(*a.error), "");
  EXPECT_EQ(ReadAll(*b.error), "");
}

TEST(SpdyServe, PortForwardErrorsGoToTheErrorStream) {
  FakeBackend backend;
  Served s(ForwardTarget({80, 7}), &backend);
  PfPair refused = OpenPair(s, "7", "0");
  EXPECT_EQ(ReadAll(*refused.error), "error forwarding port 7 to pod pod1: connection refused");
  PfPair other = OpenPair(s, "81", "1");
  EXPECT_NE(ReadAll(*other.error).find("port 81 is not among the ports of this request"), std::string::npos);
  PfPair bad = OpenPair(s, "http", "2");
  EXPECT_NE(ReadAll(*bad.error).find("invalid port header \"http\""), std::string::npos);
  EXPECT_EQ(ReadAll(*bad.data), "");
}

// The test client over TCP against a minimal upgrade responder.
class UpgradeServer {
 public:
  // With `cert_file` and `key_file`: https.
  UpgradeServer(SpdyTarget target, StreamingBackend* backend, std::string cert_file = "", std::string key_file = "") {
    listen_ = base::UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_.get(), 4), 0);
    socklen_t len = sizeof addr;
    ::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&addr), &len);
    url_ = base::StrCat(cert_file.empty() ? "http" : "https", "://127.0.0.1:", ntohs(addr.sin_port), "/exec/token");
    thread_ = std::thread([this, target, backend, cert_file, key_file] {
      base::UniqueFd c(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c.valid()) return;
      if (!cert_file.empty()) {
        absl::StatusOr<base::UniqueFd> plain = testing::TlsServerPipe(std::move(c), cert_file, key_file);
        if (!plain.ok()) return;  // the client's handshake failed: its test checks that
        c = std::move(*plain);
      }
      std::string head;
      char buf[4096];
      while (head.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c.get(), buf, sizeof buf);
        if (n <= 0) return;
        head.append(buf, static_cast<size_t>(n));
      }
      request = head.substr(0, head.find("\r\n\r\n"));
      std::string leftover = head.substr(head.find("\r\n\r\n") + 4);
      std::string protocol = std::holds_alternative<SpdyPortForwardTarget>(target) ? kPortForwardProtocol
                                                                                    : "v4.channel.k8s.io";
      std::string reply = base::StrCat("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n",
                                       "X-Stream-Protocol-Version: ", protocol, "\r\n\r\n");
      EXPECT_EQ(::write(c.get(), reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
      ServeSpdyConnection(std::move(c), std::move(leftover), target, backend, {});
    });
  }
  ~UpgradeServer() {
    ::shutdown(listen_.get(), SHUT_RDWR);
    thread_.join();
  }
  const std::string& url() const { return url_; }
  std::string request;

 private:
  base::UniqueFd listen_;
  std::string url_;
  std::thread thread_;
};

TEST(SpdyTestClient, ExecThroughTheUpgrade) {
  FakeBackend backend;
  UpgradeServer server(ExecTarget({"echo", "5"}, "v4.channel.k8s.io", true), &backend);
  testing::RemoteCommandOptions o;
  o.stdin = true;
  auto client = testing::OpenSpdyRemoteCommand(server.url(), o);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->protocol(), "v4.channel.k8s.io");
  ASSERT_TRUE((*client)->WriteStdin("ping").ok());
  ASSERT_TRUE((*client)->CloseStdin().ok());
  auto r = (*client)->Wait(absl::Seconds(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "out:ping");
  EXPECT_EQ(r->stderr_data, "err:ping");
  EXPECT_EQ(r->exit_code, 5);
  EXPECT_FALSE(r->success);
  EXPECT_NE(server.request.find("Upgrade: SPDY/3.1"), std::string::npos);
  EXPECT_NE(server.request.find("X-Stream-Protocol-Version: channel.k8s.io"), std::string::npos);
}

TEST(SpdyTestClient, PortForwardThroughTheUpgrade) {
  FakeBackend backend;
  UpgradeServer server(ForwardTarget(), &backend);
  auto client = testing::OpenSpdyPortForward(server.url());
  ASSERT_TRUE(client.ok()) << client.status();
  auto one = (*client)->Connect(22);
  auto two = (*client)->Connect(7);
  ASSERT_TRUE(one.ok() && two.ok());
  ASSERT_TRUE((*one)->Write("x").ok());
  ASSERT_TRUE((*one)->CloseWrite().ok());
  char buf[64];
  auto n = (*one)->Read(buf, sizeof buf);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(std::string(buf, *n), "pod1:22:x");
  auto e = (*two)->Read(buf, sizeof buf);
  EXPECT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("connection refused"), std::string::npos) << e.status();
}

// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`.
void WriteSelfSignedCert(const std::string& dir) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  ASSERT_NE(key, nullptr);
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("kvcri test"), -1, -1,
                             0);
  X509_set_issuer_name(x, name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_subject_alt_name, "IP:127.0.0.1"},
                            std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
    ASSERT_NE(ext, nullptr);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  ASSERT_GT(X509_sign(x, key, EVP_sha256()), 0);
  FILE* f = std::fopen((dir + "/cert.pem").c_str(), "w");
  PEM_write_X509(f, x);
  std::fclose(f);
  f = std::fopen((dir + "/key.pem").c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(x);
  EVP_PKEY_free(key);
}

TEST(SpdyTestClient, ExecOverHttps) {
  char tmpl[] = "/tmp/spdy-tls-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  WriteSelfSignedCert(dir);
  FakeBackend backend;
  UpgradeServer server(ExecTarget({"echo", "0"}, "v4.channel.k8s.io", true), &backend, dir + "/cert.pem",
                       dir + "/key.pem");
  testing::RemoteCommandOptions o;
  o.stdin = true;
  o.tls_ca_file = dir + "/cert.pem";
  auto client = testing::OpenSpdyRemoteCommand(server.url(), o);
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->WriteStdin("over tls").ok());
  ASSERT_TRUE((*client)->CloseStdin().ok());
  auto r = (*client)->Wait(absl::Seconds(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "out:over tls");
  EXPECT_TRUE(r->success);
  std::filesystem::remove_all(dir);
}

TEST(SpdyTestClient, HttpsRefusesAServerItsCaDidNotSign) {
  char a[] = "/tmp/spdy-tls-XXXXXX", b[] = "/tmp/spdy-tls-XXXXXX";
  ASSERT_NE(::mkdtemp(a), nullptr);
  ASSERT_NE(::mkdtemp(b), nullptr);
  WriteSelfSignedCert(a);
  WriteSelfSignedCert(b);
  FakeBackend backend;
  UpgradeServer server(ForwardTarget(), &backend, std::string(a) + "/cert.pem", std::string(a) + "/key.pem");
  auto c = testing::OpenSpdyPortForward(server.url(), std::string(b) + "/cert.pem");
  EXPECT_TRUE(absl::IsUnavailable(c.status())) << c.status();
  EXPECT_NE(c.status().message().find("TLS handshake"), std::string::npos) << c.status();
  std::filesystem::remove_all(a);
  std::filesystem::remove_all(b);
}

TEST(SpdyTestClient, RawUpgradeReportsTheHttpStatus) {
  base::UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(l.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(l.get(), 1), 0);
  socklen_t len = sizeof addr;
  ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  std::thread server([&] {
    base::UniqueFd c(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
    char buf[4096];
    ASSERT_GT(::read(c.get(), buf, sizeof buf), 0);
    const std::string reply = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    ASSERT_EQ(::write(c.get(), reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
  });
  int status = 0;
  auto fd = testing::UpgradeSpdyRaw(base::StrCat("http://127.0.0.1:", ntohs(addr.sin_port), "/exec/used-token"),
                                    "v4.channel.k8s.io", &status);
  server.join();
  EXPECT_FALSE(fd.ok());
  EXPECT_EQ(status, 404);
  EXPECT_NE(fd.status().message().find("HTTP 404"), std::string::npos) << fd.status();
}

TEST(SpdyTestClient, HttpsWithoutACaIsRefusedClearly) {
  FakeBackend backend;
  UpgradeServer server(ForwardTarget(), &backend, "/nonexistent/cert.pem", "/nonexistent/key.pem");
  auto c = testing::OpenSpdyPortForward(server.url());
  EXPECT_TRUE(absl::IsInvalidArgument(c.status())) << c.status();
}

}  // namespace
}  // namespace kvcri::streaming
