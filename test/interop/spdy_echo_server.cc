// spdy_echo_server: ServeSpdyConnection behind a minimal HTTP upgrade with an echo backend, for the spdystream interop check.
//
// Prints "listening on 127.0.0.1:PORT" and serves until killed. POST /exec:
// remotecommand v4, stdin comes back on stdout, "stderr-bytes" on stderr,
// exit code 7. POST /portforward: each data stream's bytes come back as
// "port N got ..." after the client's FIN; port 7 fails "connection refused".
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>

#include "cri/streaming/spdy_serve.h"

namespace {

using namespace kvcri::streaming;

class EchoBackend : public StreamingBackend {
 public:
  CommandResult Exec(const ExecSpec&, RemoteCommandStreams& io) override {
    std::string in;
    char buf[65536];
    while (true) {
      absl::StatusOr<size_t> n = io.Stdin()->Read(buf, sizeof buf);
      if (!n.ok() || *n == 0) break;
      in.append(buf, *n);
    }
    if (absl::Status s = io.Stdout()->Write(in); !s.ok()) return {s, 0};
    if (absl::Status s = io.Stderr()->Write("stderr-bytes"); !s.ok()) return {s, 0};
    return {absl::OkStatus(), 7};
  }
  CommandResult Attach(const AttachSpec&, RemoteCommandStreams&) override {
    return {absl::UnimplementedError("no attach here"), 0};
  }
  absl::Status PortForward(const std::string&, uint16_t port, ByteStream& s) override {
    std::string in;
    char buf[4096];
    while (true) {
      absl::StatusOr<size_t> n = s.Read(buf, sizeof buf);
      if (!n.ok()) return n.status();
      if (*n == 0) break;
      in.append(buf, *n);
    }
    if (port == 7) return absl::UnavailableError("connection refused");
    if (absl::Status st = s.Write("port " + std::to_string(port) + " got " + in); !st.ok()) return st;
    return s.CloseWrite();
  }
};

void Serve(int c, EchoBackend* backend) {
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536) {
    ssize_t n = ::read(c, buf, sizeof buf);
    if (n <= 0) {
      ::close(c);
      return;
    }
    head.append(buf, static_cast<size_t>(n));
  }
  const size_t end = head.find("\r\n\r\n");
  const bool pf = head.rfind("POST /portforward", 0) == 0;
  const std::string protocol = pf ? kPortForwardProtocol : "v4.channel.k8s.io";
  const std::string reply = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                            "X-Stream-Protocol-Version: " + protocol + "\r\n\r\n";
  if (::write(c, reply.data(), reply.size()) != static_cast<ssize_t>(reply.size())) {
    ::close(c);
    return;
  }
  SpdyTarget target = SpdyExecTarget{ExecSpec{"c1", {"cat"}, false, true, true, true}, protocol};
  if (pf) target = SpdyPortForwardTarget{PortForwardSpec{"pod1", {}}};
  ServeSpdyConnection(kvcri::base::UniqueFd(c), end == std::string::npos ? "" : head.substr(end + 4), target,
                      backend, StreamLimits{});
}

}  // namespace

int main() {
  int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(l, 16) != 0 ||
      ::getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::perror("spdy_echo_server: listen on 127.0.0.1:0");
    return 1;
  }
  std::printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  std::fflush(stdout);
  EchoBackend backend;
  while (true) {
    int c = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) std::thread(Serve, c, &backend).detach();
  }
}
