// Port-forward plumbing: TCP dial to the Pod IP, the kvcri-agent connection adapter, and the two-way copy with half-close.
#include "cri/port_forward.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "config/base/str.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "config/base/unique_fd.h"

namespace kvcri::cri {
namespace {

// Bytes moved per read; the streaming server and the agent bound what they
// buffer themselves, so this is the copy's only memory.
constexpr size_t kCopyChunk = 32 << 10;

class TcpPodConnection : public PodConnection {
 public:
  explicit TcpPodConnection(base::UniqueFd fd) : fd_(std::move(fd)) {}
  absl::StatusOr<size_t> Read(char* buf, size_t len) override {
    for (;;) {
      ssize_t n = ::recv(fd_.get(), buf, len, 0);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, "read from the Pod");
    }
  }
  absl::Status Write(std::string_view data) override {
    while (!data.empty()) {
      ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return absl::ErrnoToStatus(errno, "write to the Pod");
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }
  absl::Status CloseWrite() override {
    if (::shutdown(fd_.get(), SHUT_WR) < 0 && errno != ENOTCONN) {
      return absl::ErrnoToStatus(errno, "half-close toward the Pod");
    }
    return absl::OkStatus();
  }
  void Abort() override { ::shutdown(fd_.get(), SHUT_RDWR); }

 private:
  const base::UniqueFd fd_;
};

class AgentPodConnection : public PodConnection {
 public:
  explicit AgentPodConnection(std::unique_ptr<runtime::agent::PortConnection> conn) : conn_(std::move(conn)) {}
  absl::StatusOr<size_t> Read(char* buf, size_t len) override { return conn_->Read(buf, len); }
  absl::Status Write(std::string_view data) override { return conn_->Write(data); }
  absl::Status CloseWrite() override { return conn_->CloseWrite(); }
  // The agent's connection has no abort short of its destructor; the
  // half-close makes the guest's peer see EOF, which ends a well-behaved
  // service's side too.
  void Abort() override { conn_->CloseWrite().IgnoreError(); }

 private:
  const std::unique_ptr<runtime::agent::PortConnection> conn_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PodConnection>> DialPodTcp(const std::string& ip, uint16_t port,
                                                          absl::Duration timeout) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(*v4);
  } else if (::inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof(*v6);
  } else {
    return absl::InvalidArgumentError(base::StrCat("Pod IP \"", ip, "\" is not an IP address"));
  }
  const std::string where = ss.ss_family == AF_INET6 ? base::StrCat("[", ip, "]:", port) : base::StrCat(ip, ":", port);
  base::UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket(AF_INET)");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&ss), len) < 0) {
    if (errno != EINPROGRESS) {
      return absl::UnavailableError(base::StrCat("connect to ", where, ": ", std::strerror(errno)));
    }
    pollfd p{fd.get(), POLLOUT, 0};
    int rc;
    do {
      rc = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) return absl::UnavailableError(base::StrCat("connect to ", where, ": timed out after ", absl::FormatDuration(timeout)));
    int err = 0;
    socklen_t errlen = sizeof(err);
    if (rc < 0 || ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &errlen) < 0) err = errno;
    if (err != 0) return absl::UnavailableError(base::StrCat("connect to ", where, ": ", std::strerror(err)));
  }
  // Blocking from here: each direction has a thread of its own.
  int flags = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &flags, sizeof(flags));
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK) < 0) return absl::ErrnoToStatus(errno, "fcntl");
  return std::make_unique<TcpPodConnection>(std::move(fd));
}

std::unique_ptr<PodConnection> WrapAgentPort(std::unique_ptr<runtime::agent::PortConnection> conn) {
  return std::make_unique<AgentPodConnection>(std::move(conn));
}

absl::Status CopyBothWays(streaming::ByteStream& client, PodConnection& pod) {
  // containerd's and CRI-O's wait for the second direction (1 s).
  constexpr absl::Duration kOtherDirectionGrace = absl::Seconds(1);
  absl::Mutex mu;
  absl::Status first_error;  // guarded by mu
  bool closing = false;      // guarded by mu: errors of our own close are not the pair's
  absl::Notification up_done;
  auto fail = [&](absl::Status s) {
    {
      absl::MutexLock l(&mu);
      if (first_error.ok() && !closing) first_error = std::move(s);
    }
    pod.Abort();
    client.CancelRead();
  };
  std::thread up([&] {
    struct Done {
      absl::Notification* n;
      ~Done() { n->Notify(); }
    } done{&up_done};
    std::vector<char> buf(kCopyChunk);
    for (;;) {
      absl::StatusOr<size_t> n = client.Read(buf.data(), buf.size());
      if (!n.ok()) {
        // Our own CancelRead after the other direction failed: not news.
        if (!absl::IsCancelled(n.status())) fail(absl::Status(n.status().code(), base::StrCat("client stream: ", n.status().message())));
        return;
      }
      if (*n == 0) {
        if (absl::Status s = pod.CloseWrite(); !s.ok()) fail(s);
        return;
      }
      if (absl::Status s = pod.Write(std::string_view(buf.data(), *n)); !s.ok()) {
        fail(s);
        return;
      }
    }
  });
  std::vector<char> buf(kCopyChunk);
  for (;;) {
    absl::StatusOr<size_t> n = pod.Read(buf.data(), buf.size());
    if (!n.ok()) {
      fail(n.status());
      break;
    }
    if (*n == 0) {
      if (absl::Status s = client.CloseWrite(); !s.ok()) fail(absl::Status(s.code(), base::StrCat("client stream: ", s.message())));
      break;
    }
    if (absl::Status s = client.Write(std::string_view(buf.data(), *n)); !s.ok()) {
      fail(absl::Status(s.code(), base::StrCat("client stream: ", s.message())));
      break;
    }
  }
  // The Pod's side has ended. A client that does not half-close (curl
  // reading an HTTP/1.0 answer to its end) would wait for us forever, and
  // client-go closes the local connection only once the stream pair ends:
  // as containerd and CRI-O do, the other direction gets a second, then
  // both end.
  if (!up_done.WaitForNotificationWithTimeout(kOtherDirectionGrace)) {
    {
      absl::MutexLock l(&mu);
      closing = true;
    }
    client.CancelRead();
    pod.Abort();
  }
  up.join();
  absl::MutexLock l(&mu);
  return first_error;
}

}  // namespace kvcri::cri
