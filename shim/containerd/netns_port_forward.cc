// NetnsPortForwarder: a listener and an iptables redirect in the Pod's netns, connections to the dispatcher (netns_port_forward.h).
#include "shim/containerd/netns_port_forward.h"

#include <arpa/inet.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cni/plugin_exec.h"
#include "config/base/log.h"
#include "config/base/netns_exec.h"
#include "config/base/str.h"
#include "cri/exec_dispatch.h"
#include "cri/streaming/stream_io.h"
#include "shim/containerd/wakeable_fd.h"

namespace kvcri::shim::containerd {

using base::StrCat;

// One accepted connection as the dispatcher's client stream.
class NetnsPortForwarder::SocketStream final : public streaming::ByteStream {
 public:
  explicit SocketStream(base::UniqueFd fd) : fd_(std::move(fd)) {}
  bool valid() const { return fd_.valid(); }
  absl::StatusOr<size_t> Read(char* buf, size_t len) override {
    absl::StatusOr<size_t> n = fd_.Read([&] { return ::recv(fd_.fd(), buf, len, MSG_DONTWAIT); });
    if (!n.ok() && !absl::IsCancelled(n.status())) {
      return absl::UnavailableError(StrCat("the client's connection failed: ", n.status().message()));
    }
    return n;
  }
  void CancelRead() override { fd_.Wake(); }
  absl::Status Write(std::string_view data) override {
    while (!data.empty()) {
      ssize_t n = ::send(fd_.fd(), data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return absl::UnavailableError(StrCat("the client's connection failed: ", std::strerror(errno)));
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }
  absl::Status CloseWrite() override {
    ::shutdown(fd_.fd(), SHUT_WR);
    return absl::OkStatus();
  }
  // The shim is going away: both directions end now.
  void Abort() {
    ::shutdown(fd_.fd(), SHUT_RDWR);
    CancelRead();
  }

 private:
  WakeableFd fd_;
};

namespace {

std::filesystem::path FindIptables() {
  for (const char* p : {"/usr/sbin/iptables", "/sbin/iptables"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return {};
}

}  // namespace

absl::StatusOr<std::unique_ptr<NetnsPortForwarder>> NetnsPortForwarder::Start(const std::filesystem::path& netns,
                                                                             std::string sandbox_id,
                                                                             cri::ExecDispatcher* dispatcher) {
  std::unique_ptr<NetnsPortForwarder> f(new NetnsPortForwarder(std::move(sandbox_id), dispatcher));
  const std::filesystem::path iptables = FindIptables();
  if (iptables.empty()) {
    return absl::FailedPreconditionError("iptables is not installed (/usr/sbin/iptables): port-forward into VM Pods "
                                         "through containerd needs it (Debian package iptables)");
  }
  absl::Status s = base::RunInNetns(netns, [&]() -> absl::Status {
    base::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      return absl::ErrnoToStatus(errno, "bind 127.0.0.1:0 in the Pod's netns");
    }
    if (::listen(fd.get(), 64) != 0) return absl::ErrnoToStatus(errno, "listen");
    socklen_t len = sizeof addr;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return absl::ErrnoToStatus(errno, "getsockname");
    }
    f->port_ = ntohs(addr.sin_port);
    f->listener_ = std::move(fd);
    // Spawned from this thread, so iptables runs in the Pod's netns.
    const std::string port = StrCat(f->port_);
    absl::StatusOr<cni::ProcessOutput> out = cni::RunProcess(
        iptables,
        {"iptables", "-w", "5", "-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.1/32", "-p", "tcp", "!", "--dport", port,
         "-m", "comment", "--comment", "kubevirt-cri port-forward to the VM", "-j", "REDIRECT", "--to-ports", port},
        {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, "", absl::Seconds(10));
    if (!out.ok()) return out.status();
    if (out->exit_code != 0) {
      return absl::FailedPreconditionError(
          StrCat("iptables could not add the port-forward redirect in the Pod's netns: ", out->stderr_data));
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  f->wake_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!f->wake_.valid()) return absl::ErrnoToStatus(errno, "eventfd");
  f->acceptor_ = std::thread([p = f.get()] { p->AcceptLoop(); });
  return f;
}

NetnsPortForwarder::~NetnsPortForwarder() {
  if (wake_.valid()) {
    const uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }
  if (acceptor_.joinable()) acceptor_.join();
  std::list<Conn> conns;
  {
    absl::MutexLock lock(&mu_);
    conns.swap(conns_);
  }
  for (Conn& c : conns) c.stream->Abort();
  for (Conn& c : conns) c.thread.join();
}

void NetnsPortForwarder::AcceptLoop() {
  while (true) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      base::LogError("port-forward listener", {{"error", std::strerror(errno)}});
      return;
    }
    if (fds[1].revents & POLLIN) return;
    base::UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) continue;  // EAGAIN, a reset before accept
    sockaddr_in orig{};
    socklen_t len = sizeof orig;
    if (::getsockopt(conn.get(), SOL_IP, SO_ORIGINAL_DST, &orig, &len) != 0) continue;
    const uint16_t port = ntohs(orig.sin_port);
    absl::MutexLock lock(&mu_);
    // Finished connections' threads are joined here; beyond the bound a new
    // one is closed at once (the client sees a reset).
    for (auto it = conns_.begin(); it != conns_.end();) {
      if (it->done.load()) {
        it->thread.join();
        it = conns_.erase(it);
      } else {
        ++it;
      }
    }
    if (conns_.size() >= kMaxConnections) {
      base::LogWarn("port-forward connection refused: too many at once", {{"port", StrCat(port)}});
      continue;
    }
    Serve(std::move(conn), port);
  }
}

void NetnsPortForwarder::Serve(base::UniqueFd conn, uint16_t port) {
  auto stream = std::make_shared<SocketStream>(std::move(conn));
  if (!stream->valid()) return;
  Conn& c = conns_.emplace_back();
  c.stream = std::move(stream);
  c.thread = std::thread([this, &c, port, stream = c.stream] {
    absl::Status s = dispatcher_->PortForward(sandbox_id_, port, *stream);
    if (!s.ok()) base::LogInfo("port-forward ended", {{"port", StrCat(port)}, {"error", std::string(s.message())}});
    stream->Abort();
    c.done = true;
  });
}

}  // namespace kvcri::shim::containerd
