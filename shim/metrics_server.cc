// MetricsServer: a listening socket, one serving thread, Beast's HTTP/1.1 request parser and response writer.
#include "shim/metrics_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cerrno>
#include <cstring>
#include <sstream>
#include <thread>

#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/tcp_listen.h"
#include "config/base/unique_fd.h"
#include "config/config.h"

namespace kvcri::shim {
namespace {

namespace http = boost::beast::http;
using base::StrCat;

constexpr size_t kMaxRequestHeaderBytes = 8 << 10;
constexpr int kConnectionSeconds = 5;

class MetricsServerImpl final : public MetricsServer {
 public:
  MetricsServerImpl(base::UniqueFd listen_fd, std::string base_url, base::MetricsRegistry* registry,
                    std::function<void()> before_scrape, base::UniqueFd wake_read, base::UniqueFd wake_write)
      : listen_fd_(std::move(listen_fd)),
        base_url_(std::move(base_url)),
        registry_(registry),
        before_scrape_(std::move(before_scrape)),
        wake_read_(std::move(wake_read)),
        wake_write_(std::move(wake_write)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~MetricsServerImpl() override {
    char c = 0;
    if (::write(wake_write_.get(), &c, 1) < 0) base::LogWarn("metrics server wake-up failed", {{"error", strerror(errno)}});
    thread_.join();
  }
  std::string BaseUrl() const override { return base_url_; }

 private:
  void Loop() {
    for (;;) {
      pollfd p[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        base::LogError("metrics server poll failed", {{"error", strerror(errno)}});
        return;
      }
      if (p[1].revents != 0) return;
      base::UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!fd.valid()) continue;  // the peer went away first, or out of fds: try the next
      timeval tv{kConnectionSeconds, 0};
      setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      Serve(fd.get());
    }
  }

  void Serve(int fd) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(kMaxRequestHeaderBytes);
    parser.eager(true);
    std::string pending;
    char buf[4096];
    boost::beast::error_code ec;
    while (!parser.is_header_done()) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // closed or timed out before a whole request
      pending.append(buf, static_cast<size_t>(n));
      size_t used = parser.put(boost::asio::buffer(pending), ec);
      if (ec == http::error::need_more) {
        ec = {};
        pending.erase(0, used);
        continue;
      }
      if (ec) {
        Reply(fd, http::status::bad_request, "text/plain", StrCat(ec.message(), "\n"), 11);
        return DrainBeforeClose(fd);
      }
      pending.erase(0, used);
    }
    const auto& req = parser.get();
    if (req.target() != "/metrics") return Reply(fd, http::status::not_found, "text/plain", "try /metrics\n", req.version());
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      return Reply(fd, http::status::method_not_allowed, "text/plain", "GET only\n", req.version());
    }
    if (before_scrape_) before_scrape_();
    Reply(fd, http::status::ok, "text/plain; version=0.0.4; charset=utf-8", registry_->Expose(), req.version(),
          req.method() == http::verb::head);
  }

  // Closing with unread input sends a reset, which can destroy the answer
  // before the client reads it: end our side, then read what the client
  // still sends, bounded in bytes and time.
  static void DrainBeforeClose(int fd) {
    ::shutdown(fd, SHUT_WR);
    timeval tv{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[4096];
    for (size_t total = 0; total < (64u << 10);) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      total += static_cast<size_t>(n);
    }
  }

  static void Reply(int fd, http::status status, std::string_view type, std::string body, unsigned version,
                    bool head_only = false) {
    http::response<http::string_body> res(status, version);
    res.set(http::field::content_type, std::string(type));
    res.set(http::field::connection, "close");
    res.body() = std::move(body);
    res.prepare_payload();
    std::ostringstream out;
    if (head_only) {
      out << res.base();  // the header alone, Content-Length as for GET
    } else {
      out << res;
    }
    const std::string wire = out.str();
    for (size_t off = 0; off < wire.size();) {
      ssize_t n = ::send(fd, wire.data() + off, wire.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // the scraper left
      off += static_cast<size_t>(n);
    }
  }

  const base::UniqueFd listen_fd_;
  const std::string base_url_;
  base::MetricsRegistry* const registry_;
  const std::function<void()> before_scrape_;
  const base::UniqueFd wake_read_, wake_write_;
  std::thread thread_;  // last: started once every member exists
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& address,
                                                                    base::MetricsRegistry* registry,
                                                                    std::function<void()> before_scrape) {
  absl::StatusOr<config::HostPort> hp = config::ParseHostPort(address);
  if (!hp.ok()) return absl::InvalidArgumentError(StrCat("metrics.address: ", hp.status().message()));
  ASSIGN_OR_RETURN(base::TcpListener listener, base::ListenTcp(hp->host, hp->port, address, "metrics", 16));
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "metrics server pipe");
  return std::unique_ptr<MetricsServer>(new MetricsServerImpl(std::move(listener.fd), StrCat("http://", listener.authority),
                                                              registry, std::move(before_scrape),
                                                              base::UniqueFd(wake[0]), base::UniqueFd(wake[1])));
}

}  // namespace kvcri::shim
