// The channel protocol of Kubernetes' wsstream over Beast WebSocket, and the remotecommand and port-forward sessions on it.
#include "cri/streaming/websocket_session.h"

#include <deque>
#include <functional>
#include <memory>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "config/base/log.h"

namespace kvcri::streaming {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

constexpr uint8_t kStdinChannel = 0;
constexpr uint8_t kStdoutChannel = 1;
constexpr uint8_t kStderrChannel = 2;
constexpr uint8_t kErrorChannel = 3;
constexpr uint8_t kResizeChannel = 4;
constexpr uint8_t kCloseMessage = 255;  // v5: "no more input on channel <next byte>"

// A channel's input from the client, in message order.
struct Inbound {
  bool readable = false;
  std::deque<std::string> chunks;
  size_t bytes = 0;
  bool eof = false;
  bool cancelled = false;  // CancelRead: the backend reads no more; input is dropped
};

// One WebSocket connection's channels. The socket is driven by the io_context
// on the connection's thread; backend threads only queue output and take
// input, under mu_, and wake that thread with net::post.
class WsChannelConn {
 public:
  WsChannelConn(WsStream& ws, net::io_context& ioc, const WsChannelProtocol& protocol, std::vector<bool> readable,
                const StreamLimits& limits)
      : ws_(ws),
        ioc_(ioc),
        protocol_(protocol),
        limits_(limits),
        out_limit_(std::max<size_t>(limits.receive_window, limits.max_frame_bytes)),
        work_(net::make_work_guard(ioc)) {
    in_.resize(readable.size());
    for (size_t i = 0; i < readable.size(); ++i) in_[i].readable = readable[i];
    ws_.read_message_max(limits.max_frame_bytes);
    ws_.binary(!protocol.base64);
    ws_.text(protocol.base64);
  }

  // Before ioc.run(): the read loop.
  void Start() { ReadNext(); }

  // Queues `data` for `channel` (split into messages within the frame bound),
  // blocking while the output queue is full. An empty `data` sends a message
  // holding only the channel (what kubelet sends to say the streams are up).
  absl::Status Send(uint8_t channel, std::string_view data) {
    // Base64 grows 3 bytes to 4; keep each message within max_frame_bytes.
    const size_t room = limits_.max_frame_bytes > 8 ? limits_.max_frame_bytes - 1 : 1;
    const size_t piece_max = protocol_.base64 ? std::max<size_t>(3, room / 4 * 3) : room;
    do {
      std::string_view piece = data.substr(0, piece_max);
      data.remove_prefix(piece.size());
      std::string msg;
      if (protocol_.base64) {
        msg = absl::StrCat(std::string(1, static_cast<char>('0' + channel)), absl::Base64Escape(absl::string_view(piece.data(), piece.size())));
      } else {
        msg.reserve(piece.size() + 1);
        msg.push_back(static_cast<char>(channel));
        msg.append(piece);
      }
      {
        absl::MutexLock l(&mu_);
        while (!gone_ && out_bytes_ > 0 && out_bytes_ + msg.size() > out_limit_) cv_.Wait(&mu_);
        if (gone_) return absl::UnavailableError("the client's connection is gone");
        out_bytes_ += msg.size();
        out_.push_back(std::move(msg));
      }
      net::post(ioc_, [this] { StartWrite(); });
    } while (!data.empty());
    return absl::OkStatus();
  }

  // Bytes of `channel`'s input: at least one, 0 at its end, an error once the
  // connection is gone.
  absl::StatusOr<size_t> Read(uint8_t channel, char* buf, size_t len) {
    if (len == 0) return 0;
    size_t n = 0;
    {
      absl::MutexLock l(&mu_);
      Inbound& in = in_[channel];
      while (in.bytes == 0 && !in.eof && !in.cancelled && !gone_) cv_.Wait(&mu_);
      if (in.cancelled) return absl::CancelledError("reading this channel was cancelled");
      if (in.bytes == 0) {
        if (in.eof) return 0;
        return absl::UnavailableError("the client's connection is gone");
      }
      while (n < len && !in.chunks.empty()) {
        std::string& front = in.chunks.front();
        size_t take = std::min(len - n, front.size());
        memcpy(buf + n, front.data(), take);
        n += take;
        if (take == front.size()) {
          in.chunks.pop_front();
        } else {
          front.erase(0, take);
        }
      }
      in.bytes -= n;
    }
    net::post(ioc_, [this] { MaybeResume(); });
    return n;
  }

  // One whole message of `channel`; nullopt at its end or once gone.
  std::optional<std::string> NextMessage(uint8_t channel) {
    std::string msg;
    {
      absl::MutexLock l(&mu_);
      Inbound& in = in_[channel];
      while (in.chunks.empty() && !in.eof && !in.cancelled && !gone_) cv_.Wait(&mu_);
      if (in.cancelled || in.chunks.empty()) return std::nullopt;
      msg = std::move(in.chunks.front());
      in.chunks.pop_front();
      in.bytes -= msg.size();
    }
    net::post(ioc_, [this] { MaybeResume(); });
    return msg;
  }

  // Wakes blocked and fails later reads of `channel` (Read: Cancelled,
  // NextMessage: nullopt); what is buffered or still arrives is dropped, so
  // the read loop is never paused on it.
  void CancelRead(uint8_t channel) {
    {
      absl::MutexLock l(&mu_);
      if (channel >= in_.size()) return;
      Inbound& in = in_[channel];
      if (in.cancelled) return;
      in.cancelled = true;
      in.chunks.clear();
      in.bytes = 0;
      cv_.SignalAll();
    }
    net::post(ioc_, [this] { MaybeResume(); });
  }

  void OnGone(std::function<void()> cb) {
    {
      absl::MutexLock l(&mu_);
      if (!gone_) {
        gone_callbacks_.push_back(std::move(cb));
        return;
      }
    }
    cb();
  }

  // After what is queued, a normal close.
  void Finish() {
    net::post(ioc_, [this] {
      closing_ = true;
      StartWrite();
    });
  }

  // The connection thread, once ioc.run() returned: whatever ended it, the
  // session's threads must see the connection gone.
  void MarkGone() { Gone(); }

 private:
  void ReadNext() {
    ws_.async_read(rbuf_, [this](beast::error_code ec, size_t) { OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec) {
      if (ec != websocket::error::closed) base::LogDebug("websocket read ended", {{"error", ec.message()}});
      Gone();
      return;
    }
    std::string msg = beast::buffers_to_string(rbuf_.data());
    rbuf_.consume(rbuf_.size());
    if (!HandleMessage(msg)) {
      // A malformed message ends this connection only.
      beast::error_code ignored;
      beast::get_lowest_layer(ws_).socket().shutdown(net::socket_base::shutdown_both, ignored);
      Gone();
      return;
    }
    absl::MutexLock l(&mu_);
    if (OverWindow()) {
      paused_ = true;  // resumed by Read/NextMessage once the backend took some
      return;
    }
    ReadNext();
  }

  bool OverWindow() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const Inbound& in : in_) {
      if (in.bytes >= limits_.receive_window) return true;
    }
    return false;
  }

  void MaybeResume() {
    absl::MutexLock l(&mu_);
    if (!paused_ || gone_ || OverWindow()) return;
    paused_ = false;
    ReadNext();
  }

  // False for a message that breaks the protocol.
  bool HandleMessage(std::string_view msg) {
    if (msg.empty()) return true;  // kubelet skips empty messages
    uint8_t channel = static_cast<uint8_t>(msg[0]);
    std::string decoded;
    std::string_view data = msg.substr(1);
    if (protocol_.base64) {
      if (msg[0] < '0' || msg[0] > '9') return false;
      channel = static_cast<uint8_t>(msg[0] - '0');
      if (!absl::Base64Unescape(absl::string_view(data.data(), data.size()), &decoded)) return false;
      data = decoded;
    }
    absl::MutexLock l(&mu_);
    if (protocol_.v5 && channel == kCloseMessage) {
      if (data.size() != 1) return false;
      uint8_t target = static_cast<uint8_t>(data[0]);
      if (target < in_.size() && in_[target].readable) {
        in_[target].eof = true;
        cv_.SignalAll();
      }
      return true;
    }
    // kubelet ignores messages for channels that take no input.
    if (channel >= in_.size() || !in_[channel].readable || in_[channel].eof || in_[channel].cancelled) return true;
    if (data.empty()) return true;
    in_[channel].bytes += data.size();
    in_[channel].chunks.emplace_back(data);
    cv_.SignalAll();
    return true;
  }

  void StartWrite() {
    std::string* front = nullptr;
    {
      absl::MutexLock l(&mu_);
      if (writing_ || gone_) return;
      if (out_.empty()) {
        if (!closing_ || close_started_) return;
        close_started_ = true;
      } else {
        writing_ = true;
        front = &out_.front();  // stays put: the deque only grows at its back meanwhile
      }
    }
    if (front == nullptr) {
      ws_.async_close(websocket::close_code::normal, [this](beast::error_code) { Gone(); });
      return;
    }
    ws_.async_write(net::buffer(*front), [this](beast::error_code ec, size_t) {
      {
        absl::MutexLock l(&mu_);
        out_bytes_ -= out_.front().size();
        out_.pop_front();
        writing_ = false;
        cv_.SignalAll();
      }
      if (ec) {
        Gone();
        return;
      }
      StartWrite();
    });
  }

  void Gone() {
    std::vector<std::function<void()>> callbacks;
    {
      absl::MutexLock l(&mu_);
      if (gone_) return;
      gone_ = true;
      callbacks.swap(gone_callbacks_);
      cv_.SignalAll();
    }
    // Nothing more to wait for. stop(), not just the work guard: Beast's
    // idle timer would keep ioc.run() going for idle_timeout after a client
    // that vanished without a close frame.
    work_.reset();
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().shutdown(net::socket_base::shutdown_both, ignored);
    ioc_.stop();
    for (auto& cb : callbacks) cb();
  }

  WsStream& ws_;
  net::io_context& ioc_;
  const WsChannelProtocol protocol_;
  const StreamLimits limits_;
  const size_t out_limit_;
  net::executor_work_guard<net::io_context::executor_type> work_;
  beast::flat_buffer rbuf_;
  // The io_context thread only.
  bool writing_ = false;
  bool closing_ = false;
  bool close_started_ = false;

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::vector<Inbound> in_ ABSL_GUARDED_BY(mu_);
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::string> out_ ABSL_GUARDED_BY(mu_);
  size_t out_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void()>> gone_callbacks_ ABSL_GUARDED_BY(mu_);
};

class ChannelReader : public ByteReader {
 public:
  ChannelReader(WsChannelConn& conn, uint8_t channel) : conn_(conn), channel_(channel) {}
  absl::StatusOr<size_t> Read(char* buf, size_t len) override { return conn_.Read(channel_, buf, len); }
  void CancelRead() override { conn_.CancelRead(channel_); }

 private:
  WsChannelConn& conn_;
  const uint8_t channel_;
};

class ChannelWriter : public ByteWriter {
 public:
  ChannelWriter(WsChannelConn& conn, uint8_t channel) : conn_(conn), channel_(channel) {}
  absl::Status Write(std::string_view data) override {
    if (data.empty()) return absl::OkStatus();  // an empty message means "streams are up", not data
    return conn_.Send(channel_, data);
  }
  // The channel protocol has no per-channel end from the server: quiet it is.
  absl::Status CloseWrite() override { return absl::OkStatus(); }

 private:
  WsChannelConn& conn_;
  const uint8_t channel_;
};

class WsRemoteCommandStreams : public RemoteCommandStreams {
 public:
  WsRemoteCommandStreams(WsChannelConn& conn, bool stdin, bool stdout, bool stderr, bool tty)
      : conn_(conn),
        stdin_(conn, kStdinChannel),
        stdout_(conn, kStdoutChannel),
        stderr_(conn, kStderrChannel),
        has_stdin_(stdin),
        has_stdout_(stdout),
        has_stderr_(stderr && !tty),
        tty_(tty) {}
  ByteReader* Stdin() override { return has_stdin_ ? &stdin_ : nullptr; }
  ByteWriter* Stdout() override { return has_stdout_ ? &stdout_ : nullptr; }
  ByteWriter* Stderr() override { return has_stderr_ ? &stderr_ : nullptr; }
  std::optional<TerminalSize> NextResize() override {
    if (!tty_ || resize_ended_) return std::nullopt;
    std::optional<std::string> msg = conn_.NextMessage(kResizeChannel);
    if (!msg) return std::nullopt;
    absl::StatusOr<TerminalSize> size = ParseTerminalSize(*msg);
    if (!size.ok()) {
      // As kubelet: a resize stream that says something else ends there.
      base::LogWarn("websocket resize message refused", {{"error", std::string(size.status().message())}});
      resize_ended_ = true;
      return std::nullopt;
    }
    return *size;
  }
  void StopReading() override {
    conn_.CancelRead(kStdinChannel);
    conn_.CancelRead(kResizeChannel);
  }
  void OnClientGone(std::function<void()> cb) override { conn_.OnGone(std::move(cb)); }

 private:
  WsChannelConn& conn_;
  ChannelReader stdin_;
  ChannelWriter stdout_, stderr_;
  const bool has_stdin_, has_stdout_, has_stderr_, tty_;
  bool resize_ended_ = false;  // NextResize is called from one thread
};

class PortStream : public ByteStream {
 public:
  PortStream(WsChannelConn& conn, uint8_t data_channel) : reader_(conn, data_channel), writer_(conn, data_channel) {}
  absl::StatusOr<size_t> Read(char* buf, size_t len) override { return reader_.Read(buf, len); }
  void CancelRead() override { reader_.CancelRead(); }
  absl::Status Write(std::string_view data) override { return writer_.Write(data); }
  absl::Status CloseWrite() override { return writer_.CloseWrite(); }

 private:
  ChannelReader reader_;
  ChannelWriter writer_;
};

const WsChannelProtocol kRemoteCommandProtocols[] = {
    {"v5.channel.k8s.io", false, true, true},        {"v4.channel.k8s.io", false, false, true},
    {"v4.base64.channel.k8s.io", true, false, true}, {"channel.k8s.io", false, false, false},
    {"base64.channel.k8s.io", true, false, false},
};
const WsChannelProtocol kPortForwardProtocols[] = {
    {"v4.channel.k8s.io", false, false, false},
    {"v4.base64.channel.k8s.io", true, false, false},
};

template <size_t N>
std::optional<WsChannelProtocol> Negotiate(const std::vector<std::string>& offers,
                                           const WsChannelProtocol (&ours)[N]) {
  if (offers.empty()) return WsChannelProtocol{"", false, false, false};
  for (const std::string& offer : offers) {
    for (const WsChannelProtocol& p : ours) {
      if (p.name == offer) return p;
    }
  }
  return std::nullopt;
}

template <size_t N>
std::string Names(const WsChannelProtocol (&ours)[N]) {
  std::vector<std::string> names;
  for (const WsChannelProtocol& p : ours) names.push_back(p.name);
  return absl::StrJoin(names, ", ");
}

}  // namespace

std::optional<WsChannelProtocol> NegotiateRemoteCommandProtocol(const std::vector<std::string>& offers) {
  return Negotiate(offers, kRemoteCommandProtocols);
}
std::optional<WsChannelProtocol> NegotiatePortForwardProtocol(const std::vector<std::string>& offers) {
  return Negotiate(offers, kPortForwardProtocols);
}
std::string RemoteCommandWsProtocols() { return Names(kRemoteCommandProtocols); }
std::string PortForwardWsProtocols() { return Names(kPortForwardProtocols); }

void ServeWebSocketRemoteCommand(WsStream& ws, net::io_context& ioc, const WsChannelProtocol& protocol,
                                 const RemoteCommandTarget& target, StreamingBackend* backend,
                                 const StreamLimits& limits) {
  bool in = false, out = false, err = false, tty = false;
  std::visit([&](const auto& spec) { in = spec.stdin, out = spec.stdout, err = spec.stderr, tty = spec.tty; }, target);
  // Input channels: stdin when asked for, resize with a tty; kubelet ignores
  // the rest, and so do we (they would only fill a buffer nobody reads).
  std::vector<bool> readable = {in, false, false, false, tty};
  WsChannelConn conn(ws, ioc, protocol, readable, limits);
  conn.Start();
  std::thread session([&] {
    WsRemoteCommandStreams streams(conn, in, out, err, tty);
    // kubelet's "the streams are up": an empty message on the lowest
    // channel the client will read.
    uint8_t first = out ? kStdoutChannel : (err && !tty) ? kStderrChannel : kErrorChannel;
    if (conn.Send(first, "").ok()) {
      CommandResult result = std::holds_alternative<ExecSpec>(target)
                                 ? backend->Exec(std::get<ExecSpec>(target), streams)
                                 : backend->Attach(std::get<AttachSpec>(target), streams);
      std::string status = protocol.status_json ? StatusJson(result) : LegacyErrorText(result);
      if (!status.empty()) conn.Send(kErrorChannel, status).IgnoreError();  // the client may be gone
    }
    conn.Finish();
  });
  ioc.run();
  conn.MarkGone();
  session.join();
}

void ServeWebSocketPortForward(WsStream& ws, net::io_context& ioc, const WsChannelProtocol& protocol,
                               const std::string& pod_sandbox_id, const std::vector<uint16_t>& ports,
                               StreamingBackend* backend, const StreamLimits& limits) {
  std::vector<bool> readable;
  for (size_t i = 0; i < ports.size(); ++i) {
    readable.push_back(true);   // data
    readable.push_back(false);  // error
  }
  WsChannelConn conn(ws, ioc, protocol, readable, limits);
  conn.Start();
  std::thread session([&] {
    std::vector<std::thread> forwards;
    for (size_t i = 0; i < ports.size(); ++i) {
      const uint8_t data_channel = static_cast<uint8_t>(2 * i), error_channel = static_cast<uint8_t>(2 * i + 1);
      const char port_le[2] = {static_cast<char>(ports[i] & 0xff), static_cast<char>(ports[i] >> 8)};
      if (!conn.Send(data_channel, std::string_view(port_le, 2)).ok() ||
          !conn.Send(error_channel, std::string_view(port_le, 2)).ok()) {
        break;
      }
      forwards.emplace_back([&, i, data_channel, error_channel] {
        PortStream stream(conn, data_channel);
        absl::Status st = backend->PortForward(pod_sandbox_id, ports[i], stream);
        if (!st.ok()) {
          conn.Send(error_channel, absl::StrCat("error forwarding port ", ports[i], " to pod ", pod_sandbox_id, ": ",
                                                st.message()))
              .IgnoreError();  // the client may be gone
          stream.CancelRead();  // later input on this port is dropped, not left to fill the window
        }
      });
    }
    for (std::thread& t : forwards) t.join();
    conn.Finish();
  });
  ioc.run();
  conn.MarkGone();
  session.join();
}

}  // namespace kvcri::streaming
