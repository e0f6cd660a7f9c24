// Test clients for remotecommand and port-forward over WebSocket (the Kubernetes channel protocol), with Boost.Beast.
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/synchronization/mutex.h"
#include "config/base/str.h"
#include "test/client/stream_client.h"

namespace kvcri::testing {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

struct ParsedUrl {
  bool tls = false;
  std::string host;  // without brackets
  uint16_t port = 0;
  std::string target;  // path and query
};

absl::StatusOr<ParsedUrl> ParseUrl(const std::string& url) {
  ParsedUrl out;
  std::string_view rest = url;
  if (rest.rfind("https://", 0) == 0 || rest.rfind("wss://", 0) == 0) {
    out.tls = true;
  } else if (rest.rfind("http://", 0) != 0 && rest.rfind("ws://", 0) != 0) {
    return absl::InvalidArgumentError(base::StrCat("url \"", url, "\" is not http(s) or ws(s)"));
  }
  rest.remove_prefix(rest.find("://") + 3);
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  out.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos) return absl::InvalidArgumentError(base::StrCat("url \"", url, "\" has no port"));
  std::string_view host = authority.substr(0, colon);
  if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);
  out.host = std::string(host);
  out.port = static_cast<uint16_t>(std::stoi(std::string(authority.substr(colon + 1))));
  return out;
}

// One client WebSocket; its io_context runs on a thread of its own, every
// operation after the handshake is posted there. Messages are kept per
// channel, decoded (tests only: unbounded).
class WsCore {
 public:
  virtual ~WsCore() = default;
  // Sends one message: channel byte, then data (base64 protocols: encoded).
  virtual absl::Status Send(uint8_t channel, std::string_view data) = 0;

  std::string protocol;
  bool base64 = false;

  absl::Mutex mu;
  std::map<int, std::string> channels ABSL_GUARDED_BY(mu);
  bool closed ABSL_GUARDED_BY(mu) = false;
  std::string close_error ABSL_GUARDED_BY(mu);
  uint64_t messages ABSL_GUARDED_BY(mu) = 0;  // bumps on every message: what waiters wait for

  // Waits until another message arrives or the connection closes, at most
  // until `deadline`.
  void AwaitChange(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    struct Arg {
      WsCore* core;
      uint64_t seen;
    } arg{this, messages};
    mu.AwaitWithDeadline(absl::Condition(
                             +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                               return a->core->closed || a->core->messages != a->seen;
                             },
                             &arg),
                         deadline);
  }

 protected:
  void OnMessage(const std::string& msg) {
    if (msg.empty()) return;
    int channel = static_cast<uint8_t>(msg[0]);
    std::string data = msg.substr(1);
    if (base64) {
      channel = msg[0] - '0';
      std::string decoded;
      absl::Base64Unescape(absl::string_view(data.data(), data.size()), &decoded);
      data = decoded;
    }
    absl::MutexLock l(&mu);
    channels[channel] += data;
    ++messages;
  }
  void OnClosed(const std::string& error) {
    absl::MutexLock l(&mu);
    closed = true;
    close_error = error;
  }
};

template <class NextLayer>
class WsCoreImpl final : public WsCore {
 public:
  template <typename... Args>
  explicit WsCoreImpl(std::unique_ptr<ssl::context> ctx, Args&&... args)
      : ctx_(std::move(ctx)), ws_(ioc_, std::forward<Args>(args)...) {}

  ~WsCoreImpl() override {
    net::post(ioc_, [this] {
      beast::error_code ec;
      beast::get_lowest_layer(ws_).socket().close(ec);
    });
    work_.reset();
    if (thread_.joinable()) thread_.join();
    ioc_.run();  // the close, when the thread never started
  }

  absl::Status Handshake(const ParsedUrl& url, const std::vector<std::string>& protocols) {
    beast::error_code ec;
    tcp::endpoint ep(net::ip::make_address(url.host, ec), url.port);
    if (ec) return absl::InvalidArgumentError(base::StrCat("host \"", url.host, "\": ", ec.message()));
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(30));
    beast::get_lowest_layer(ws_).connect(ep, ec);
    if (ec) return absl::UnavailableError(base::StrCat("connect: ", ec.message()));
    if constexpr (!std::is_same_v<NextLayer, beast::tcp_stream>) {
      ws_.next_layer().set_verify_mode(ssl::verify_peer);
      ws_.next_layer().set_verify_callback(ssl::host_name_verification(url.host));
      ws_.next_layer().handshake(ssl::stream_base::client, ec);
      if (ec) return absl::UnavailableError(base::StrCat("TLS handshake: ", ec.message()));
    }
    std::string offer;
    for (const std::string& p : protocols) offer += (offer.empty() ? "" : ", ") + p;
    ws_.set_option(websocket::stream_base::decorator([offer](websocket::request_type& req) {
      if (!offer.empty()) req.set(http::field::sec_websocket_protocol, offer);
    }));
    websocket::response_type res;
    const std::string host = base::StrCat(url.host.find(':') != std::string::npos ? "[" : "", url.host,
                                          url.host.find(':') != std::string::npos ? "]" : "", ":", url.port);
    // Async: Beast 1.74's sync handshake leaves `res` empty when the server
    // declines, and the tests want its status and body.
    ws_.async_handshake(res, host, url.target, [&ec](beast::error_code e) { ec = e; });
    ioc_.run();
    ioc_.restart();
    if (ec) {
      return absl::FailedPreconditionError(
          base::StrCat("websocket upgrade failed: HTTP ", res.result_int(), ": ", res.body(), " (", ec.message(), ")"));
    }
    protocol = std::string(res[http::field::sec_websocket_protocol]);
    base64 = protocol.find("base64") != std::string::npos;
    ws_.binary(!base64);
    ws_.text(base64);
    ws_.read_message_max(64 << 20);
    beast::get_lowest_layer(ws_).expires_never();
    work_.emplace(net::make_work_guard(ioc_));
    ReadNext();
    thread_ = std::thread([this] { ioc_.run(); });
    return absl::OkStatus();
  }

  absl::Status Send(uint8_t channel, std::string_view data) override {
    std::string msg;
    if (base64) {
      msg = std::string(1, static_cast<char>('0' + channel)) +
            absl::Base64Escape(absl::string_view(data.data(), data.size()));
    } else {
      msg = std::string(1, static_cast<char>(channel)) + std::string(data);
    }
    auto done = std::make_shared<std::promise<beast::error_code>>();
    std::future<beast::error_code> result = done->get_future();
    net::post(ioc_, [this, m = std::move(msg), done]() mutable {
      queue_.push_back({std::move(m), done});
      if (queue_.size() == 1) WriteFront();
    });
    beast::error_code ec = result.get();
    if (ec) return absl::UnavailableError(base::StrCat("websocket write: ", ec.message()));
    return absl::OkStatus();
  }

 private:
  struct Pending {
    std::string msg;
    std::shared_ptr<std::promise<beast::error_code>> done;
  };

  void WriteFront() {
    ws_.async_write(net::buffer(queue_.front().msg), [this](beast::error_code ec, size_t) {
      queue_.front().done->set_value(ec);
      queue_.pop_front();
      if (!queue_.empty()) WriteFront();
    });
  }

  void ReadNext() {
    ws_.async_read(buffer_, [this](beast::error_code ec, size_t) {
      if (ec) {
        OnClosed(ec == websocket::error::closed ? "" : ec.message());
        return;
      }
      OnMessage(beast::buffers_to_string(buffer_.data()));
      buffer_.consume(buffer_.size());
      ReadNext();
    });
  }

  net::io_context ioc_;
  std::unique_ptr<ssl::context> ctx_;
  websocket::stream<NextLayer> ws_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;  // from the handshake on
  beast::flat_buffer buffer_;
  std::deque<Pending> queue_;  // the io_context thread only
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<WsCore>> Dial(const std::string& url, const std::vector<std::string>& protocols,
                                             const std::string& tls_ca_file) {
  absl::StatusOr<ParsedUrl> parsed = ParseUrl(url);
  if (!parsed.ok()) return parsed.status();
  if (!parsed->tls) {
    auto core = std::make_unique<WsCoreImpl<beast::tcp_stream>>(nullptr);
    if (absl::Status s = core->Handshake(*parsed, protocols); !s.ok()) return s;
    return std::unique_ptr<WsCore>(std::move(core));
  }
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  beast::error_code ec;
  ctx->load_verify_file(tls_ca_file, ec);
  if (ec) return absl::InvalidArgumentError(base::StrCat("CA file \"", tls_ca_file, "\": ", ec.message()));
  ssl::context& ctx_ref = *ctx;
  auto core = std::make_unique<WsCoreImpl<beast::ssl_stream<beast::tcp_stream>>>(std::move(ctx), ctx_ref);
  if (absl::Status s = core->Handshake(*parsed, protocols); !s.ok()) return s;
  return std::unique_ptr<WsCore>(std::move(core));
}

constexpr uint8_t kStdin = 0, kStdout = 1, kStderr = 2, kError = 3, kResize = 4;

class WsRemoteCommandClient final : public RemoteCommandClient {
 public:
  explicit WsRemoteCommandClient(std::unique_ptr<WsCore> core) : core_(std::move(core)) {}
  std::string protocol() const override { return core_->protocol; }
  absl::Status WriteStdin(std::string_view data) override { return core_->Send(kStdin, data); }
  absl::Status CloseStdin() override {
    if (core_->protocol != "v5.channel.k8s.io") {
      return absl::FailedPreconditionError(
          base::StrCat("protocol \"", core_->protocol, "\" cannot close stdin (v5.channel.k8s.io can)"));
    }
    return core_->Send(255, std::string_view("\0", 1));
  }
  absl::Status Resize(uint16_t width, uint16_t height) override {
    return core_->Send(kResize, nlohmann::json{{"Width", width}, {"Height", height}}.dump());
  }
  absl::StatusOr<std::string> ReadStdoutUntil(std::string_view needle, absl::Duration timeout) override {
    const absl::Time deadline = absl::Now() + timeout;
    absl::MutexLock l(&core_->mu);
    for (;;) {
      std::string& out = core_->channels[kStdout];
      if (out.find(needle) != std::string::npos) return std::exchange(out, "");
      if (core_->closed) {
        return absl::UnavailableError(base::StrCat("connection closed before stdout had \"", needle, "\": \"", out, "\""));
      }
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(base::StrCat("stdout has no \"", needle, "\": \"", out, "\""));
      }
      core_->AwaitChange(deadline);
    }
  }
  absl::StatusOr<RemoteCommandResult> Wait(absl::Duration timeout) override {
    absl::MutexLock l(&core_->mu);
    if (!core_->mu.AwaitWithTimeout(
            absl::Condition(+[](WsCore* c) ABSL_NO_THREAD_SAFETY_ANALYSIS { return c->closed; }, core_.get()),
            timeout)) {
      return absl::DeadlineExceededError("the session did not end in time");
    }
    RemoteCommandResult r;
    r.protocol = core_->protocol;
    r.stdout_data = core_->channels[kStdout];
    r.stderr_data = core_->channels[kStderr];
    r.error_text = core_->channels[kError];
    const bool v4 = r.protocol.rfind("v4.", 0) == 0 || r.protocol.rfind("v5.", 0) == 0;
    if (!v4) {
      r.success = r.error_text.empty();
      return r;
    }
    nlohmann::json j = nlohmann::json::parse(r.error_text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::DataLossError(base::StrCat("error channel is not a status: \"", r.error_text, "\""));
    }
    r.success = j.value("status", "") == "Success";
    if (!r.success && j.value("reason", "") == "NonZeroExitCode") {
      for (const auto& cause : j["details"]["causes"]) {
        if (cause.value("reason", "") == "ExitCode") r.exit_code = std::stoi(cause.value("message", "0"));
      }
    }
    return r;
  }

 private:
  std::unique_ptr<WsCore> core_;
};

// Port i's channels: 2i data, 2i+1 error; each opens with the port (2 bytes LE).
class WsForwardedConnection final : public ForwardedConnection {
 public:
  WsForwardedConnection(std::shared_ptr<WsCore> core, uint8_t index, uint16_t port)
      : core_(std::move(core)), data_(2 * index), error_(2 * index + 1), port_(port) {}
  absl::Status Write(std::string_view data) override { return core_->Send(data_, data); }
  absl::Status CloseWrite() override { return absl::OkStatus(); }  // the protocol has no half-close
  absl::StatusOr<size_t> Read(char* buf, size_t len) override {
    absl::MutexLock l(&core_->mu);
    for (;;) {
      std::string& data = core_->channels[data_];
      std::string& error = core_->channels[error_];
      if (absl::Status s = StripPort(data, data_open_); !s.ok()) return s;
      if (absl::Status s = StripPort(error, error_open_); !s.ok()) return s;
      if (data_open_ && !data.empty()) {
        size_t n = std::min(len, data.size());
        memcpy(buf, data.data(), n);
        data.erase(0, n);
        return n;
      }
      if (error_open_ && !error.empty()) return absl::UnavailableError(error);
      if (core_->closed) return 0;
      core_->AwaitChange(absl::InfiniteFuture());
    }
  }

 private:
  // The first two bytes of each channel name its port.
  absl::Status StripPort(std::string& s, bool& open) {
    if (open || s.size() < 2) return absl::OkStatus();
    uint16_t got = static_cast<uint8_t>(s[0]) | (static_cast<uint8_t>(s[1]) << 8);
    s.erase(0, 2);
    open = true;
    if (got != port_) return absl::DataLossError(base::StrCat("channel opened with port ", got, ", want ", port_));
    return absl::OkStatus();
  }

  std::shared_ptr<WsCore> core_;
  const uint8_t data_, error_;
  const uint16_t port_;
  bool data_open_ = false, error_open_ = false;
};

class WsPortForwardClient final : public PortForwardClient {
 public:
  WsPortForwardClient(std::unique_ptr<WsCore> core, std::vector<uint16_t> ports)
      : core_(std::move(core)), ports_(std::move(ports)), used_(ports_.size(), false) {}
  absl::StatusOr<std::unique_ptr<ForwardedConnection>> Connect(uint16_t port) override {
    for (size_t i = 0; i < ports_.size(); ++i) {
      if (ports_[i] == port && !used_[i]) {
        used_[i] = true;
        return std::unique_ptr<ForwardedConnection>(
            new WsForwardedConnection(core_, static_cast<uint8_t>(i), port));
      }
    }
    return absl::FailedPreconditionError(base::StrCat("port ", port, " was not given to Open (or is in use)"));
  }

 private:
  std::shared_ptr<WsCore> core_;
  std::vector<uint16_t> ports_;
  std::vector<bool> used_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RemoteCommandClient>> OpenWebSocketRemoteCommand(const std::string& url,
                                                                                const RemoteCommandOptions& options) {
  std::vector<std::string> protocols = options.protocols;
  if (protocols.empty()) protocols = {"v5.channel.k8s.io", "v4.channel.k8s.io"};
  // The streams come from the URL's token; these query parameters are what
  // kubectl sends (the server takes the token's, as kubelet does).
  absl::StatusOr<std::unique_ptr<WsCore>> core = Dial(url, protocols, options.tls_ca_file);
  if (!core.ok()) return core.status();
  return std::unique_ptr<RemoteCommandClient>(new WsRemoteCommandClient(*std::move(core)));
}

absl::StatusOr<std::unique_ptr<PortForwardClient>> OpenWebSocketPortForward(const std::string& url,
                                                                            const std::vector<uint16_t>& ports,
                                                                            const std::string& tls_ca_file) {
  std::string full = url;
  for (size_t i = 0; i < ports.size(); ++i) {
    full += base::StrCat(i == 0 && url.find('?') == std::string::npos ? "?" : "&", "port=", ports[i]);
  }
  absl::StatusOr<std::unique_ptr<WsCore>> core = Dial(full, {"v4.channel.k8s.io"}, tls_ca_file);
  if (!core.ok()) return core.status();
  return std::unique_ptr<PortForwardClient>(new WsPortForwardClient(*std::move(core), ports));
}

}  // namespace kvcri::testing
