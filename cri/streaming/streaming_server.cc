// The streaming server: listener, connection threads, HTTP routing of /exec, /attach and /portforward, SPDY and WebSocket upgrades.
#include "cri/streaming/streaming_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <map>
#include <thread>
#include <vector>

#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "absl/base/thread_annotations.h"
#include "config/base/str.h"
#include <strings.h>
#include "absl/synchronization/mutex.h"
#include "config/base/clock.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/tcp_listen.h"
#include "config/config.h"
#include "cri/streaming/request_cache.h"
#include "cri/streaming/spdy_serve.h"
#include "cri/streaming/tls_pump.h"
#include "cri/streaming/websocket_session.h"

namespace kvcri::streaming {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;

// kubelet accepts Go's default of 1 MiB; what kubelet and crictl send is a
// few KiB (the apiserver's proxy adds its headers), so 64 KiB is plenty and
// keeps what a client can make a connection hold small.
constexpr size_t kMaxRequestHeaderBytes = 64 << 10;
// The request line and headers must arrive within this (a slow-loris client
// would otherwise hold a connection slot).
constexpr int kRequestTimeoutSeconds = 30;
// At most this many WebSocket port-forward ports per request: two channels
// each, and a channel is one byte below the v5 close message (255).
constexpr size_t kMaxWebSocketPorts = 127;

using Request = http::request<http::empty_body>;

// Debian's Abseil has its own string_view, so splitting and comparing
// std::string_view is done here.
std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    size_t i = s.find(sep);
    out.push_back(s.substr(0, i));
    if (i == std::string_view::npos) return out;
    s.remove_prefix(i + 1);
  }
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view Sv(beast::string_view s) { return std::string_view(s.data(), s.size()); }

std::string Join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += base::StrCat(i ? sep : std::string_view(), v[i]);
  return out;
}

// The Go-style list of one header's values: each line, and commas within.
std::vector<std::string> HeaderValues(const Request& req, std::string_view name) {
  std::vector<std::string> out;
  auto range = req.equal_range(beast::string_view(name.data(), name.size()));
  for (auto it = range.first; it != range.second; ++it) {
    for (std::string_view v : Split(Sv(it->value()), ',')) {
      v = Trim(v);
      if (!v.empty()) out.emplace_back(v);
    }
  }
  return out;
}

bool HasToken(const Request& req, http::field field, std::string_view token) {
  for (std::string_view v : Split(Sv(req[field]), ',')) {
    if (EqualsIgnoreCase(Trim(v), token)) return true;
  }
  return false;
}

bool IsSpdyUpgrade(const Request& req) {
  return HasToken(req, http::field::connection, "upgrade") &&
         EqualsIgnoreCase(Trim(Sv(req[http::field::upgrade])), "SPDY/3.1");
}

// The client's offers (in its order) against ours, as k8s httpstream.Handshake.
std::string NegotiateSpdy(const std::vector<std::string>& offers, const std::vector<std::string>& ours) {
  for (const std::string& offer : offers) {
    for (const std::string& p : ours) {
      if (p == offer) return p;
    }
  }
  return "";
}

// ?port=80&port=8080,9090 as kubelet's portforward.NewV4Options reads it.
absl::StatusOr<std::vector<uint16_t>> ParsePorts(std::string_view query) {
  std::vector<uint16_t> ports;
  bool any = false;
  for (std::string_view kv : Split(query, '&')) {
    size_t eq = kv.find('=');
    std::pair<std::string_view, std::string_view> p(kv.substr(0, eq),
                                                    eq == std::string_view::npos ? std::string_view() : kv.substr(eq + 1));
    if (p.first != "port") continue;
    any = true;
    if (p.second.empty()) return absl::InvalidArgumentError("query parameter \"port\" cannot be empty");
    for (std::string_view one : Split(p.second, ',')) {
      uint32_t port = 0;
      bool digits = !one.empty() && one.size() <= 5;
      for (char ch : one) {
        digits = digits && ch >= '0' && ch <= '9';
        if (digits) port = port * 10 + static_cast<uint32_t>(ch - '0');
      }
      if (!digits || port > 65535) {
        return absl::InvalidArgumentError(base::StrCat("unable to parse \"", p.second, "\" as a port"));
      }
      if (port < 1) return absl::InvalidArgumentError(base::StrCat("port \"", p.second, "\" must be > 0"));
      if (ports.size() >= kMaxWebSocketPorts) {
        return absl::InvalidArgumentError(base::StrCat("more than ", kMaxWebSocketPorts, " ports requested"));
      }
      ports.push_back(static_cast<uint16_t>(port));
    }
  }
  if (!any) return absl::InvalidArgumentError("query parameter \"port\" is required");
  return ports;
}

class StreamingServerImpl final : public StreamingServer {
 public:
  StreamingServerImpl(const StreamingServerOptions& options, StreamingBackend* backend,
                      std::unique_ptr<TlsContext> tls, base::UniqueFd listen_fd, base::UniqueFd wake_fd,
                      std::string base_url)
      : options_(options),
        backend_(backend),
        tls_(std::move(tls)),
        clock_(options.clock != nullptr ? options.clock : &real_clock_),
        cache_(options.token_ttl, options.max_pending_tokens, clock_),
        listen_fd_(std::move(listen_fd)),
        wake_fd_(std::move(wake_fd)),
        base_url_(std::move(base_url)) {
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~StreamingServerImpl() override { Shutdown(); }

  absl::StatusOr<std::string> PrepareExec(const ExecSpec& spec) override { return Prepare("exec", spec); }
  absl::StatusOr<std::string> PrepareAttach(const AttachSpec& spec) override { return Prepare("attach", spec); }
  absl::StatusOr<std::string> PreparePortForward(const PortForwardSpec& spec) override {
    return Prepare("portforward", spec);
  }
  std::string BaseUrl() const override { return base_url_; }

  void Shutdown() override {
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
      stopping_ = true;
      // Every connection's sockets: reads and writes fail, so sessions see
      // their client gone and the backend is told (OnClientGone).
      for (auto& [id, conn] : conns_) {
        for (const base::UniqueFd& fd : conn.shutdown_fds) ::shutdown(fd.get(), SHUT_RDWR);
      }
    }
    Wake();
    if (accept_thread_.joinable()) accept_thread_.join();
    std::map<uint64_t, Conn> conns;
    {
      absl::MutexLock l(&mu_);
      conns.swap(conns_);
    }
    for (auto& [id, conn] : conns) conn.thread.join();
    listen_fd_.Reset();
  }

 private:
  struct Conn {
    std::thread thread;
    std::vector<base::UniqueFd> shutdown_fds;  // dups: shutdown(2) reaches the socket, never a reused fd
    bool done = false;
  };

  template <typename Spec>
  absl::StatusOr<std::string> Prepare(std::string_view route, const Spec& spec) {
    absl::StatusOr<std::string> token = cache_.Insert(spec);
    if (!token.ok()) return token.status();
    return base::StrCat(base_url_, "/", route, "/", *token);
  }

  void Wake() {
    uint64_t one = 1;
    ssize_t n = ::write(wake_fd_.get(), &one, sizeof(one));
    (void)n;  // a full eventfd counter still wakes the loop
  }

  void AcceptLoop() {
    for (;;) {
      pollfd p[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
      if (poll(p, 2, -1) < 0 && errno != EINTR) {
        base::LogError("streaming server poll failed", {{"error", strerror(errno)}});
        return;
      }
      if (p[1].revents & POLLIN) {
        uint64_t n;
        ssize_t r = ::read(wake_fd_.get(), &n, sizeof(n));
        (void)r;
      }
      ReapFinished();
      {
        absl::MutexLock l(&mu_);
        if (stopping_) return;
      }
      if (!(p[0].revents & POLLIN)) continue;
      sockaddr_storage peer{};
      socklen_t len = sizeof(peer);
      base::UniqueFd fd(accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
      if (!fd.valid()) {
        if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
          base::LogWarn("streaming server accept failed", {{"error", strerror(errno)}});
          // EMFILE and friends: do not spin on a listen queue we cannot serve.
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) absl::SleepFor(absl::Milliseconds(100));
        }
        continue;
      }
      StartConnection(std::move(fd), peer.ss_family);
    }
  }

  void ReapFinished() {
    std::vector<std::thread> finished;
    {
      absl::MutexLock l(&mu_);
      for (auto it = conns_.begin(); it != conns_.end();) {
        if (it->second.done) {
          finished.push_back(std::move(it->second.thread));
          it = conns_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (std::thread& t : finished) t.join();
  }

  void StartConnection(base::UniqueFd fd, int family) {
    absl::MutexLock l(&mu_);
    if (conns_.size() >= options_.max_connections) {
      RefuseBusy(fd.get());
      return;
    }
    base::UniqueFd dup_fd(fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!dup_fd.valid()) {
      base::LogWarn("streaming server dup failed", {{"error", strerror(errno)}});
      return;
    }
    const uint64_t id = next_id_++;
    Conn& conn = conns_[id];
    conn.shutdown_fds.push_back(std::move(dup_fd));
    conn.thread = std::thread([this, id, family, f = std::move(fd)]() mutable {
      ServeConnection(id, std::move(f), family);
      absl::MutexLock l(&mu_);
      auto it = conns_.find(id);  // gone when Shutdown already took the map to join it
      if (it != conns_.end()) {
        it->second.done = true;
        it->second.shutdown_fds.clear();
      }
      Wake();
    });
  }

  // Over max_connections: 503 without a thread. Over TLS the client cannot
  // read plain HTTP, so it just sees the connection closed.
  void RefuseBusy(int fd) {
    base::LogWarn("streaming connection refused: max_connections reached",
                  {{"max_connections", std::to_string(options_.max_connections)}});
    if (tls_ == nullptr) {
      static constexpr std::string_view kBusy =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
          "Content-Length: 32\r\nConnection: close\r\n\r\ntoo many streaming connections\r\n";
      ssize_t n = ::send(fd, kBusy.data(), kBusy.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      (void)n;
      ::shutdown(fd, SHUT_WR);
      // What the client already sent, read away: closing with unread data
      // would reset the connection before the client reads the 503.
      char buf[4096];
      for (int i = 0; i < 16 && ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0; ++i) {
      }
    }
  }

  void ServeConnection(uint64_t id, base::UniqueFd fd, int family) {
    std::thread pump;
    if (tls_ != nullptr) {
      int pair[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        base::LogWarn("streaming server socketpair failed", {{"error", strerror(errno)}});
        return;
      }
      base::UniqueFd pump_end(pair[0]), http_end(pair[1]);
      {
        absl::MutexLock l(&mu_);
        base::UniqueFd dup_fd(fcntl(http_end.get(), F_DUPFD_CLOEXEC, 0));
        auto it = conns_.find(id);
        if (stopping_ || !dup_fd.valid() || it == conns_.end()) return;
        it->second.shutdown_fds.push_back(std::move(dup_fd));
      }
      pump = std::thread([this, tls = std::move(fd), plain = std::move(pump_end)]() mutable {
        tls_->Pump(std::move(tls), std::move(plain), kRequestTimeoutSeconds * 1000);
      });
      fd = std::move(http_end);
      family = AF_UNIX;
    }
    ServeHttp(std::move(fd), family);
    if (pump.joinable()) pump.join();
  }

  // One request, then the upgraded session (or an error response).
  void ServeHttp(base::UniqueFd fd, int family) {
    net::io_context ioc(1);
    HttpStream stream(ioc);
    beast::error_code ec;
    stream.socket().assign(net::generic::stream_protocol(family, family == AF_UNIX ? 0 : IPPROTO_TCP), fd.Release(),
                           ec);
    if (ec) return;
    beast::flat_buffer buffer;
    http::request_parser<http::empty_body> parser;
    parser.header_limit(kMaxRequestHeaderBytes);
    stream.expires_after(std::chrono::seconds(kRequestTimeoutSeconds));
    http::async_read(stream, buffer, parser, [&](beast::error_code e, size_t) { ec = e; });
    ioc.run();
    ioc.restart();
    stream.expires_never();
    if (ec) {
      if (ec == http::error::header_limit) {
        Respond(stream, http::status::request_header_fields_too_large, "request headers too large");
      } else if (ec != http::error::end_of_stream && ec != net::error::eof && ec != beast::error::timeout &&
                 ec != net::error::connection_reset) {
        Respond(stream, http::status::bad_request, "malformed request");
      }
      return;
    }
    Request& req = parser.get();
    std::string_view target = Sv(req.target());
    const size_t q = target.find('?');
    std::pair<std::string_view, std::string_view> path_query(
        target.substr(0, q), q == std::string_view::npos ? std::string_view() : target.substr(q + 1));
    std::vector<std::string_view> parts = Split(path_query.first, '/');
    // "/exec/<token>" splits into "", "exec", "<token>".
    if (parts.size() != 3 || !parts[0].empty() || parts[2].empty() ||
        (parts[1] != "exec" && parts[1] != "attach" && parts[1] != "portforward")) {
      Respond(stream, http::status::not_found, "404 page not found");
      return;
    }
    if (req.method() != http::verb::get && req.method() != http::verb::post) {
      Respond(stream, http::status::method_not_allowed, "method not allowed");
      return;
    }
    // Consumed before anything else is checked: a token is good for one try.
    std::optional<StreamRequest> request = cache_.Consume(parts[2]);
    const std::string_view route = parts[1];
    if (!request || (route == "exec") != std::holds_alternative<ExecSpec>(*request) ||
        (route == "attach") != std::holds_alternative<AttachSpec>(*request)) {
      Respond(stream, http::status::not_found, "404 page not found");
      return;
    }
    if (websocket::is_upgrade(req)) {
      // Beast's accept cannot take bytes read past the request; a client
      // must wait for the 101 before it sends frames, so refuse one that did.
      if (buffer.size() != 0) {
        Respond(stream, http::status::bad_request, "data sent before the WebSocket upgrade completed");
        return;
      }
      ServeWebSocket(std::move(stream), ioc, req, path_query.second, std::move(*request));
      return;
    }
    ServeSpdyUpgrade(stream, buffer, req, std::move(*request));
  }

  void ServeWebSocket(HttpStream stream, net::io_context& ioc, Request& req, std::string_view query,
                      StreamRequest request) {
    std::vector<std::string> offers = HeaderValues(req, "Sec-WebSocket-Protocol");
    const bool port_forward = std::holds_alternative<PortForwardSpec>(request);
    std::optional<WsChannelProtocol> protocol =
        port_forward ? NegotiatePortForwardProtocol(offers) : NegotiateRemoteCommandProtocol(offers);
    if (!protocol) {
      // Also what the tunneling dialer (SPDY/3.1+portforward.k8s.io) gets:
      // client-go then falls back to SPDY (docs/exec.md).
      Respond(stream, http::status::forbidden,
              base::StrCat("requested protocol(s) are not supported: [", Join(offers, " "), "]; supports [",
                           port_forward ? PortForwardWsProtocols() : RemoteCommandWsProtocols(), "]"));
      return;
    }
    std::vector<uint16_t> ports;
    if (port_forward) {
      absl::StatusOr<std::vector<uint16_t>> parsed = ParsePorts(query);
      if (!parsed.ok()) {
        Respond(stream, http::status::bad_request, std::string(base::Sv(parsed.status().message())));
        return;
      }
      ports = *std::move(parsed);
      const PortForwardSpec& spec = std::get<PortForwardSpec>(request);
      for (uint16_t port : ports) {
        if (!spec.ports.empty() && std::find(spec.ports.begin(), spec.ports.end(), port) == spec.ports.end()) {
          Respond(stream, http::status::bad_request, base::StrCat("port ", port, " is not in the PortForward request"));
          return;
        }
      }
    }
    WsStream ws(std::move(stream));
    websocket::stream_base::timeout timeouts;
    timeouts.handshake_timeout = std::chrono::seconds(kRequestTimeoutSeconds);
    timeouts.idle_timeout = std::chrono::seconds(options_.limits.idle_timeout_seconds);
    timeouts.keep_alive_pings = false;
    ws.set_option(timeouts);
    const std::string chosen = protocol->name;
    ws.set_option(websocket::stream_base::decorator([chosen](websocket::response_type& res) {
      if (!chosen.empty()) res.set(http::field::sec_websocket_protocol, chosen);
    }));
    beast::error_code ec;
    ws.async_accept(req, [&](beast::error_code e) { ec = e; });
    ioc.run();
    ioc.restart();
    if (ec) {
      base::LogDebug("websocket handshake failed", {{"error", ec.message()}});
      return;
    }
    if (port_forward) {
      ServeWebSocketPortForward(ws, ioc, *protocol, std::get<PortForwardSpec>(request).pod_sandbox_id, ports,
                                backend_, options_.limits);
    } else if (std::holds_alternative<ExecSpec>(request)) {
      ServeWebSocketRemoteCommand(ws, ioc, *protocol, std::get<ExecSpec>(request), backend_, options_.limits);
    } else {
      ServeWebSocketRemoteCommand(ws, ioc, *protocol, std::get<AttachSpec>(request), backend_, options_.limits);
    }
  }

  void ServeSpdyUpgrade(HttpStream& stream, beast::flat_buffer& buffer, Request& req, StreamRequest request) {
    const bool port_forward = std::holds_alternative<PortForwardSpec>(request);
    std::vector<std::string> ours;
    if (port_forward) {
      ours.push_back(kPortForwardProtocol);
    } else {
      for (const char* p : kSpdyRemoteCommandProtocols) ours.push_back(p);
    }
    std::vector<std::string> offers = HeaderValues(req, "X-Stream-Protocol-Version");
    if (offers.empty()) {
      Respond(stream, http::status::bad_request, "unable to upgrade: X-Stream-Protocol-Version is required");
      return;
    }
    std::string chosen = NegotiateSpdy(offers, ours);
    if (chosen.empty()) {
      Respond(stream, http::status::forbidden,
              base::StrCat("unable to upgrade: unable to negotiate protocol: client supports [",
                           Join(offers, " "), "], server accepts [", Join(ours, " "), "]"),
              &ours);
      return;
    }
    if (!IsSpdyUpgrade(req)) {
      Respond(stream, http::status::bad_request, "unable to upgrade: missing upgrade headers in request");
      return;
    }
    const std::string response = base::StrCat(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ",
        chosen, "\r\n\r\n");
    beast::error_code ec;
    net::write(stream.socket(), net::buffer(response), ec);
    if (ec) return;
    std::string already_read = beast::buffers_to_string(buffer.data());
    // ServeSpdyConnection gets an fd of its own, blocking as a plain fd is
    // (asio made the shared file description non-blocking).
    base::UniqueFd fd(fcntl(stream.socket().native_handle(), F_DUPFD_CLOEXEC, 0));
    stream.close();
    if (!fd.valid()) return;
    int flags = fcntl(fd.get(), F_GETFL);
    if (flags >= 0) fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    SpdyTarget target;
    if (port_forward) {
      target = SpdyPortForwardTarget{std::get<PortForwardSpec>(std::move(request))};
    } else if (std::holds_alternative<ExecSpec>(request)) {
      target = SpdyExecTarget{std::get<ExecSpec>(std::move(request)), chosen};
    } else {
      target = SpdyAttachTarget{std::get<AttachSpec>(std::move(request)), chosen};
    }
    ServeSpdyConnection(std::move(fd), std::move(already_read), target, backend_, options_.limits);
  }

  // A plain-text response, then the connection ends.
  void Respond(HttpStream& stream, http::status status, std::string body,
               const std::vector<std::string>* accepted_protocols = nullptr) {
    http::response<http::string_body> res{status, 11};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.set(http::field::connection, "close");
    if (accepted_protocols != nullptr) {
      for (const std::string& p : *accepted_protocols) res.insert("X-Accepted-Stream-Protocol-Versions", p);
    }
    res.body() = std::move(body) + "\n";
    res.prepare_payload();
    beast::error_code ec;
    http::write(stream.socket(), res, ec);
    stream.socket().shutdown(net::socket_base::shutdown_send, ec);
  }

  const StreamingServerOptions options_;
  StreamingBackend* const backend_;
  const std::unique_ptr<TlsContext> tls_;
  base::RealClock real_clock_;
  base::Clock* const clock_;
  RequestCache cache_;
  base::UniqueFd listen_fd_;
  const base::UniqueFd wake_fd_;
  const std::string base_url_;
  std::thread accept_thread_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Conn> conns_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<StreamingServer>> StreamingServer::Start(const StreamingServerOptions& options,
                                                                        StreamingBackend* backend) {
  absl::StatusOr<config::HostPort> hp = config::ParseHostPort(options.address);
  if (!hp.ok()) return hp.status();
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("streaming: tls_cert_file and tls_key_file must be set together");
  }
  if (options.max_connections < 1) return absl::InvalidArgumentError("streaming: max_connections must be >= 1");
  if (options.token_ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("streaming: token_ttl must be > 0");
  std::unique_ptr<TlsContext> tls;
  if (!options.tls_cert_file.empty()) {
    absl::StatusOr<std::unique_ptr<TlsContext>> loaded = TlsContext::Load(options.tls_cert_file, options.tls_key_file);
    if (!loaded.ok()) return loaded.status();
    tls = *std::move(loaded);
  }
  ASSIGN_OR_RETURN(base::TcpListener listener,
                   base::ListenTcp(hp->host, hp->port, options.address, "streaming", 128));
  base::UniqueFd wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return absl::ErrnoToStatus(errno, "eventfd for the streaming server");
  std::string base_url = base::StrCat(tls ? "https://" : "http://", listener.authority);
  base::LogInfo("streaming server listening", {{"url", base_url}});
  return std::unique_ptr<StreamingServer>(
      new StreamingServerImpl(options, backend, std::move(tls), std::move(listener.fd), std::move(wake),
                              std::move(base_url)));
}

}  // namespace kvcri::streaming
