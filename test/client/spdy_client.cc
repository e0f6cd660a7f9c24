// The SPDY/3.1 test clients: remotecommand and port-forward as client-go opens them, over our own frame codec and session.
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "config/base/str.h"
#include "cri/streaming/spdy_serve.h"
#include "cri/streaming/spdy_session.h"
#include "cri/streaming/stream_io.h"
#include "test/client/stream_client.h"
#include "test/client/tls_pipe.h"

namespace kvcri::testing {
namespace {

namespace sp = streaming::spdy;

constexpr absl::Duration kReplyTimeout = absl::Seconds(30);  // client-go's stream creation wait
constexpr size_t kMaxResponseHead = 64 << 10;

struct Url {
  std::string host, port, path;
  bool https = false;
};

absl::StatusOr<Url> ParseUrl(const std::string& url) {
  std::string_view rest = url;
  Url out;
  if (rest.substr(0, 8) == "https://") {
    out.https = true;
    rest.remove_prefix(8);
  } else if (rest.substr(0, 7) == "http://") {
    rest.remove_prefix(7);
  } else {
    return absl::InvalidArgumentError(base::StrCat("url \"", url, "\" is neither http:// nor https://"));
  }
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  out.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos || (authority.find(']') != std::string_view::npos && colon < authority.find(']'))) {
    return absl::InvalidArgumentError(base::StrCat("url \"", url, "\" names no port"));
  }
  std::string_view host = authority.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  out.host = std::string(host);
  out.port = std::string(authority.substr(colon + 1));
  return out;
}

absl::StatusOr<base::UniqueFd> Dial(const Url& u) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(u.host.c_str(), u.port.c_str(), &hints, &res); rc != 0) {
    return absl::UnavailableError(base::StrCat("resolve \"", u.host, "\": ", gai_strerror(rc)));
  }
  absl::Status last = absl::UnavailableError(base::StrCat("no address for \"", u.host, "\""));
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    base::UniqueFd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) continue;
    if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) == 0) {
      freeaddrinfo(res);
      return fd;
    }
    last = absl::ErrnoToStatus(errno, base::StrCat("connect to ", u.host, ":", u.port));
  }
  freeaddrinfo(res);
  return last;
}

struct Upgraded {
  base::UniqueFd fd;
  std::string leftover;
  std::string protocol;
};

// The upgrade request client-go's SPDY round tripper sends, and the 101.
absl::StatusOr<Upgraded> Upgrade(const std::string& url, const std::vector<std::string>& protocols,
                                 const std::string& tls_ca_file, int* http_status) {
  absl::StatusOr<Url> u = ParseUrl(url);
  if (!u.ok()) return u.status();
  absl::StatusOr<base::UniqueFd> fd = Dial(*u);
  if (!fd.ok()) return fd.status();
  if (u->https) {
    // The session runs over a plain fd; TLS lives on the pipe's far side.
    fd = TlsClientPipe(std::move(*fd), u->host, tls_ca_file);
    if (!fd.ok()) return fd.status();
  }
  std::string req = base::StrCat("POST ", u->path, " HTTP/1.1\r\nHost: ", u->host, ":", u->port,
                                 "\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n");
  for (const std::string& p : protocols) req += base::StrCat("X-Stream-Protocol-Version: ", p, "\r\n");
  req += "Content-Length: 0\r\n\r\n";
  for (std::string_view rest = req; !rest.empty();) {
    ssize_t n = ::send(fd->get(), rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, "send the upgrade request");
    rest.remove_prefix(static_cast<size_t>(n));
  }
  std::string head;
  size_t end = std::string::npos;
  while ((end = head.find("\r\n\r\n")) == std::string::npos) {
    if (head.size() > kMaxResponseHead) return absl::InvalidArgumentError("upgrade response head is too long");
    char buf[4096];
    ssize_t n = ::recv(fd->get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, "read the upgrade response");
    if (n == 0) return absl::UnavailableError("the server closed the connection before answering the upgrade");
    head.append(buf, static_cast<size_t>(n));
  }
  Upgraded out;
  out.leftover = head.substr(end + 4);
  head.resize(end);
  int status = 0;
  if (head.size() < 12 || head.compare(0, 5, "HTTP/") != 0 || !absl::SimpleAtoi(absl::string_view(head.data() + 9, 3), &status)) {
    return absl::InvalidArgumentError("upgrade response has no HTTP status line");
  }
  if (http_status != nullptr) *http_status = status;
  if (status != 101) return absl::FailedPreconditionError(base::StrCat("upgrade answered with HTTP ", status));
  for (size_t pos = head.find("\r\n"); pos != std::string::npos;) {
    const size_t next = head.find("\r\n", pos + 2);
    std::string line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
    const size_t colon = line.find(':');
    if (colon != std::string::npos &&
        absl::AsciiStrToLower(absl::string_view(line.data(), colon)) == "x-stream-protocol-version") {
      out.protocol = std::string(absl::StripAsciiWhitespace(absl::string_view(line).substr(colon + 1)));
    }
    pos = next;
  }
  out.fd = std::move(*fd);
  return out;
}

sp::HeaderList Headers(std::initializer_list<std::pair<std::string, std::string>> h) { return sp::HeaderList(h); }

absl::StatusOr<std::shared_ptr<sp::Stream>> OpenStream(sp::Session& session, const sp::HeaderList& headers) {
  absl::StatusOr<std::shared_ptr<sp::Stream>> s = session.Open(headers);
  if (!s.ok()) return s.status();
  if (absl::Status r = (*s)->WaitReply(kReplyTimeout); !r.ok()) return r;
  return s;
}

// Reads one stream to its end into a string, in the background.
class Collector {
 public:
  explicit Collector(std::shared_ptr<sp::Stream> s) : stream_(std::move(s)) {
    if (stream_ == nullptr) {
      done_ = true;
      return;
    }
    thread_ = std::thread([this] {
      char buf[16 << 10];
      while (true) {
        absl::StatusOr<size_t> n = stream_->Read(buf, sizeof buf);
        absl::MutexLock l(&mu_);
        if (!n.ok() || *n == 0) {
          if (!n.ok()) error_ = n.status();
          done_ = true;
          return;
        }
        data_.append(buf, *n);
      }
    });
  }
  ~Collector() {
    if (thread_.joinable()) thread_.join();
  }
  // Waits until `pred(data)` or the end or `deadline`; returns whether pred held.
  bool WaitFor(const std::function<bool(const std::string&)>& pred, absl::Time deadline) {
    absl::MutexLock l(&mu_);
    auto cond = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ || pred(data_); };
    mu_.AwaitWithDeadline(absl::Condition(&cond), deadline);
    return pred(data_);
  }
  bool WaitDone(absl::Time deadline) {
    absl::MutexLock l(&mu_);
    mu_.AwaitWithDeadline(absl::Condition(&done_), deadline);
    return done_;
  }
  std::string Take() {
    absl::MutexLock l(&mu_);
    return std::exchange(data_, "");
  }
  // Why the stream ended, once done: OK for a FIN.
  absl::Status status() {
    absl::MutexLock l(&mu_);
    return error_;
  }

 private:
  std::shared_ptr<sp::Stream> stream_;
  absl::Mutex mu_;
  std::string data_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

class SpdyRemoteCommandClient : public RemoteCommandClient {
 public:
  SpdyRemoteCommandClient(std::unique_ptr<sp::Session> session, std::string protocol)
      : session_(std::move(session)), protocol_(std::move(protocol)) {}
  ~SpdyRemoteCommandClient() override {
    session_->Close();  // wakes the collectors
    out_.reset();
    err_.reset();
    error_.reset();
  }

  absl::Status OpenStreams(const RemoteCommandOptions& o) {
    auto open = [&](const char* type) { return OpenStream(*session_, Headers({{"streamtype", type}})); };
    absl::StatusOr<std::shared_ptr<sp::Stream>> s = open("error");
    if (!s.ok()) return s.status();
    (*s)->CloseWrite().IgnoreError();  // we never write to the error stream; a failure shows on reads
    error_ = std::make_unique<Collector>(*s);
    if (o.stdin) {
      if (s = open("stdin"); !s.ok()) return s.status();
      stdin_ = *s;
    }
    if (o.stdout) {
      if (s = open("stdout"); !s.ok()) return s.status();
    }
    out_ = std::make_unique<Collector>(o.stdout ? *s : nullptr);
    if (o.stderr && !o.tty) {
      if (s = open("stderr"); !s.ok()) return s.status();
    }
    err_ = std::make_unique<Collector>(o.stderr && !o.tty ? *s : nullptr);
    if (o.tty && protocol_ != "v2.channel.k8s.io" && protocol_ != "channel.k8s.io") {
      if (s = open("resize"); !s.ok()) return s.status();
      resize_ = *s;
    }
    return absl::OkStatus();
  }

  std::string protocol() const override { return protocol_; }
  absl::Status WriteStdin(std::string_view data) override {
    if (stdin_ == nullptr) return absl::FailedPreconditionError("no stdin stream");
    return stdin_->Write(data);
  }
  absl::Status CloseStdin() override {
    if (stdin_ == nullptr) return absl::FailedPreconditionError("no stdin stream");
    return stdin_->CloseWrite();
  }
  absl::Status Resize(uint16_t width, uint16_t height) override {
    if (resize_ == nullptr) return absl::FailedPreconditionError("no resize stream (needs tty and v3+)");
    return resize_->Write(base::StrCat("{\"Width\":", width, ",\"Height\":", height, "}\n"));
  }
  absl::StatusOr<std::string> ReadStdoutUntil(std::string_view needle, absl::Duration timeout) override {
    const std::string n(needle);
    if (!out_->WaitFor([&](const std::string& d) { return d.find(n) != std::string::npos; }, absl::Now() + timeout)) {
      return absl::DeadlineExceededError(base::StrCat("stdout did not show \"", n, "\""));
    }
    return out_->Take();
  }
  absl::StatusOr<RemoteCommandResult> Wait(absl::Duration timeout) override {
    const absl::Time deadline = absl::Now() + timeout;
    for (Collector* c : {out_.get(), err_.get(), error_.get()}) {
      if (!c->WaitDone(deadline)) return absl::DeadlineExceededError("the session did not end in time");
    }
    RemoteCommandResult r;
    r.protocol = protocol_;
    r.stdout_data = out_->Take();
    r.stderr_data = err_->Take();
    r.error_text = error_->Take();
    // An error stream cut off (reset, connection gone) did not say how the
    // command ended: that is no success.
    if (absl::Status s = error_->status(); !s.ok() && r.error_text.empty()) return s;
    // client-go reads an empty error stream as success in every protocol
    // version (watchErrorStream); containerd 1.6 sends nothing for a tty exec
    // that exited 0.
    if (protocol_ != "v4.channel.k8s.io" || r.error_text.empty()) {
      r.success = r.error_text.empty();
      return r;
    }
    const nlohmann::json j = nlohmann::json::parse(r.error_text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return absl::InvalidArgumentError(base::StrCat("error stream is not JSON: ", r.error_text));
    r.success = j.value("status", "") == "Success";
    if (!r.success && j.value("reason", "") == "NonZeroExitCode") {
      for (const auto& c : j["details"]["causes"]) {
        if (c.value("reason", "") == "ExitCode") r.exit_code = std::stoi(c.value("message", "0"));
      }
    }
    return r;
  }

 private:
  std::unique_ptr<sp::Session> session_;
  std::string protocol_;
  std::shared_ptr<sp::Stream> stdin_, resize_;
  std::unique_ptr<Collector> out_, err_, error_;
};

class SpdyForwardedConnection : public ForwardedConnection {
 public:
  SpdyForwardedConnection(std::shared_ptr<sp::Session> session, std::shared_ptr<sp::Stream> error,
                          std::shared_ptr<sp::Stream> data)
      : session_(std::move(session)), error_stream_(error), error_(std::move(error)), data_(std::move(data)) {}
  ~SpdyForwardedConnection() override {
    error_stream_->Reset(sp::kRstCancel);  // ends its collector if the server never closed it
    data_->Reset(sp::kRstCancel);
  }
  absl::Status Write(std::string_view data) override { return data_->Write(data); }
  absl::Status CloseWrite() override { return data_->CloseWrite(); }
  absl::StatusOr<size_t> Read(char* buf, size_t len) override {
    absl::StatusOr<size_t> n = data_->Read(buf, len);
    if (n.ok() && *n > 0) return n;
    // At the end, what the error stream said (the server closes it after the data stream).
    error_.WaitDone(absl::Now() + absl::Seconds(5));
    std::string text = error_.Take();
    if (!text.empty()) return absl::UnavailableError(text);
    return n;
  }

 private:
  std::shared_ptr<sp::Session> session_;  // the streams point into it
  std::shared_ptr<sp::Stream> error_stream_;
  Collector error_;
  std::shared_ptr<sp::Stream> data_;
};

class SpdyPortForwardClient : public PortForwardClient {
 public:
  explicit SpdyPortForwardClient(std::shared_ptr<sp::Session> session) : session_(std::move(session)) {}
  absl::StatusOr<std::unique_ptr<ForwardedConnection>> Connect(uint16_t port) override {
    const std::string id = std::to_string(next_request_id_++);
    const std::string p = std::to_string(port);
    absl::StatusOr<std::shared_ptr<sp::Stream>> error =
        OpenStream(*session_, Headers({{"streamtype", "error"}, {"port", p}, {"requestid", id}}));
    if (!error.ok()) return error.status();
    (*error)->CloseWrite().IgnoreError();  // client-go closes it at once too; failures show on reads
    absl::StatusOr<std::shared_ptr<sp::Stream>> data =
        OpenStream(*session_, Headers({{"streamtype", "data"}, {"port", p}, {"requestid", id}}));
    if (!data.ok()) return data.status();
    return std::unique_ptr<ForwardedConnection>(new SpdyForwardedConnection(session_, *error, *data));
  }

 private:
  std::shared_ptr<sp::Session> session_;
  std::atomic<int> next_request_id_{0};
};

}  // namespace

absl::StatusOr<std::unique_ptr<RemoteCommandClient>> OpenSpdyRemoteCommand(const std::string& url,
                                                                          const RemoteCommandOptions& options) {
  std::vector<std::string> protocols = options.protocols;
  if (protocols.empty()) {
    for (const char* p : streaming::kSpdyRemoteCommandProtocols) protocols.emplace_back(p);
  }
  absl::StatusOr<Upgraded> up = Upgrade(url, protocols, options.tls_ca_file, nullptr);
  if (!up.ok()) return up.status();
  if (up->protocol.empty()) return absl::FailedPreconditionError("the server negotiated no X-Stream-Protocol-Version");
  auto session = std::make_unique<sp::Session>(std::move(up->fd), std::move(up->leftover), streaming::StreamLimits{},
                                               sp::Session::Role::kClient);
  if (absl::Status s = session->Start(); !s.ok()) return s;
  auto client = std::make_unique<SpdyRemoteCommandClient>(std::move(session), up->protocol);
  if (absl::Status s = client->OpenStreams(options); !s.ok()) return s;
  return std::unique_ptr<RemoteCommandClient>(std::move(client));
}

absl::StatusOr<std::unique_ptr<PortForwardClient>> OpenSpdyPortForward(const std::string& url,
                                                                      const std::string& tls_ca_file) {
  absl::StatusOr<Upgraded> up = Upgrade(url, {streaming::kPortForwardProtocol}, tls_ca_file, nullptr);
  if (!up.ok()) return up.status();
  auto session = std::make_shared<sp::Session>(std::move(up->fd), std::move(up->leftover), streaming::StreamLimits{},
                                               sp::Session::Role::kClient);
  if (absl::Status s = session->Start(); !s.ok()) return s;
  return std::unique_ptr<PortForwardClient>(new SpdyPortForwardClient(std::move(session)));
}

absl::StatusOr<base::UniqueFd> UpgradeSpdyRaw(const std::string& url, const std::string& protocol, int* http_status) {
  // No CA for raw upgrades: hostile-client tests use http.
  absl::StatusOr<Upgraded> up = Upgrade(url, {protocol}, "", http_status);
  if (!up.ok()) return up.status();
  return std::move(up->fd);
}

}  // namespace kvcri::testing
