// Exec, attach and port-forward test helpers: VM Pods booted in parallel, CRI streaming calls, echo round trips.
#include "test/client/exec_helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "config/base/unique_fd.h"

namespace kvcri::testing {

using Clock = std::chrono::steady_clock;

// The guest's default command line (test/guest/build-guest.sh kCmdline).
constexpr char kGuestCmdline[] = "console=ttyS0 panic=-1 quiet";

std::string TransportName(Transport t) { return t == Transport::kSpdy ? "Spdy" : "WebSocket"; }

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

void RemoveVmPods(TestDaemon& d, const std::vector<VmPod>& pods) {
  for (const VmPod& p : pods) {
    if (!p.pod_id.empty()) RemovePod(d, p.pod_id);
  }
  ExpectNoLeftovers(d);
}

bool StartVmPods(TestDaemon& d, std::vector<VmPod>& pods) {
  std::vector<char> ok(pods.size(), 0);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < pods.size(); ++i) {
    threads.emplace_back([&d, &pod = pods[i], &ok = ok[i]] {
      pb::PodSandboxConfig config = SandboxConfig(pod.name, d.log_dir());
      (*config.mutable_annotations())["kubevirt-cri.io/kernel-cmdline"] =
          absl::StrCat(kGuestCmdline, pod.cmdline_extra.empty() ? "" : " ", pod.cmdline_extra);
      pb::ContainerConfig container = VmContainerConfig("vm", kKernelImage);
      pb::LinuxContainerResources* r = container.mutable_linux()->mutable_resources();
      if (pod.memory_mib > 0) r->set_memory_limit_in_bytes(pod.memory_mib << 20);
      if (pod.cpus > 0) {
        r->set_cpu_period(100000);
        r->set_cpu_quota(pod.cpus * 100000);
      }
      if (!StartPodWithConfigs(d, config, container, &pod.pod_id, &pod.container_id)) return;
      pod.log_path = GetContainerStatus(d, pod.container_id).status().log_path();
      pb::PodSandboxStatusRequest req;
      req.set_pod_sandbox_id(pod.pod_id);
      pb::PodSandboxStatusResponse resp;
      grpc::Status s = d.runtime().PodSandboxStatus(Ctx().get(), req, &resp);
      EXPECT_TRUE(s.ok()) << pod.name << ": PodSandboxStatus: " << s.error_message();
      pod.ip = resp.status().network().ip();
      bool ready = WaitForFileContains(pod.log_path, "KUBEVIRT-CRI-GUEST-READY", std::chrono::seconds(300));
      EXPECT_TRUE(ready) << pod.name << ": no READY line in " << pod.log_path;
      ok = s.ok() && ready && !pod.ip.empty();
    });
  }
  for (std::thread& t : threads) t.join();
  return std::all_of(ok.begin(), ok.end(), [](char c) { return c != 0; });
}

absl::StatusOr<pb::ExecSyncResponse> ExecSync(TestDaemon& d, const std::string& container_id,
                                              const std::vector<std::string>& cmd, int64_t timeout_s) {
  pb::ExecSyncRequest req;
  req.set_container_id(container_id);
  for (const std::string& a : cmd) req.add_cmd(a);
  req.set_timeout(timeout_s);
  pb::ExecSyncResponse resp;
  // kubelet's gRPC deadline is the exec timeout plus its own margin.
  grpc::Status s = d.runtime().ExecSync(Ctx(std::chrono::seconds(timeout_s > 0 ? timeout_s + 30 : 120)).get(), req,
                                        &resp);
  if (!s.ok()) return FromGrpc(s);
  return resp;
}

absl::Status WaitForExec(TestDaemon& d, const std::string& container_id, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  absl::Status last = absl::DeadlineExceededError("no attempt");
  while (Clock::now() < deadline) {
    absl::StatusOr<pb::ExecSyncResponse> r = ExecSync(d, container_id, {"true"}, 10);
    if (r.ok() && r->exit_code() == 0) return absl::OkStatus();
    last = r.ok() ? absl::InternalError(absl::StrCat("`true` exited ", r->exit_code())) : r.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return last;
}

absl::StatusOr<std::string> ExecUrl(TestDaemon& d, const pb::ExecRequest& req) {
  pb::ExecResponse resp;
  grpc::Status s = d.runtime().Exec(Ctx().get(), req, &resp);
  if (!s.ok()) return FromGrpc(s);
  return resp.url();
}

absl::StatusOr<std::string> AttachUrl(TestDaemon& d, const pb::AttachRequest& req) {
  pb::AttachResponse resp;
  grpc::Status s = d.runtime().Attach(Ctx().get(), req, &resp);
  if (!s.ok()) return FromGrpc(s);
  return resp.url();
}

absl::StatusOr<std::string> PortForwardUrl(TestDaemon& d, const std::string& pod_id,
                                           const std::vector<int32_t>& ports) {
  pb::PortForwardRequest req;
  req.set_pod_sandbox_id(pod_id);
  for (int32_t p : ports) req.add_port(p);
  pb::PortForwardResponse resp;
  grpc::Status s = d.runtime().PortForward(Ctx().get(), req, &resp);
  if (!s.ok()) return FromGrpc(s);
  return resp.url();
}

absl::StatusOr<std::unique_ptr<RemoteCommandClient>> OpenRemoteCommand(Transport t, const std::string& url,
                                                                       const RemoteCommandOptions& options) {
  return t == Transport::kSpdy ? OpenSpdyRemoteCommand(url, options) : OpenWebSocketRemoteCommand(url, options);
}

// The client streams an Exec or Attach request asks for.
template <typename Request>
RemoteCommandOptions StreamsOf(const Request& req) {
  RemoteCommandOptions o;
  o.stdin = req.stdin();
  o.stdout = req.stdout();
  o.stderr = req.stderr();
  o.tty = req.tty();
  return o;
}

absl::StatusOr<std::unique_ptr<RemoteCommandClient>> OpenExec(TestDaemon& d, Transport t, const pb::ExecRequest& req) {
  absl::StatusOr<std::string> url = ExecUrl(d, req);
  if (!url.ok()) return url.status();
  return OpenRemoteCommand(t, *url, StreamsOf(req));
}

absl::StatusOr<std::unique_ptr<RemoteCommandClient>> OpenAttach(TestDaemon& d, Transport t,
                                                                const pb::AttachRequest& req) {
  absl::StatusOr<std::string> url = AttachUrl(d, req);
  if (!url.ok()) return url.status();
  return OpenRemoteCommand(t, *url, StreamsOf(req));
}

pb::ExecRequest MakeExecRequest(const std::string& container_id, const std::vector<std::string>& cmd, bool tty,
                                bool stdin) {
  pb::ExecRequest req;
  req.set_container_id(container_id);
  for (const std::string& a : cmd) req.add_cmd(a);
  req.set_tty(tty);
  req.set_stdin(stdin);
  req.set_stdout(true);
  req.set_stderr(!tty);  // kubelet: a tty merges stderr into stdout
  return req;
}

namespace {

class TcpConnection : public ForwardedConnection {
 public:
  explicit TcpConnection(base::UniqueFd fd) : fd_(std::move(fd)) {}
  absl::Status Write(std::string_view data) override {
    while (!data.empty()) {
      ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return absl::ErrnoToStatus(errno, "send");
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }
  absl::Status CloseWrite() override {
    if (::shutdown(fd_.get(), SHUT_WR) < 0) return absl::ErrnoToStatus(errno, "shutdown");
    return absl::OkStatus();
  }
  absl::StatusOr<size_t> Read(char* buf, size_t len) override {
    for (;;) {
      ssize_t n = ::recv(fd_.get(), buf, len, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return absl::ErrnoToStatus(errno, "recv");
      return static_cast<size_t>(n);
    }
  }

 private:
  base::UniqueFd fd_;
};

// Seeded xorshift64 bytes: both sides of a round trip know the stream
// without holding 10 MiB of it.
class ByteSource {
 public:
  explicit ByteSource(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  void Fill(char* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      state_ ^= state_ << 13;
      state_ ^= state_ >> 7;
      state_ ^= state_ << 17;
      p[i] = static_cast<char>(state_);
    }
  }

 private:
  uint64_t state_;
};

class Fnv1a {
 public:
  void Add(const char* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h_ = (h_ ^ static_cast<unsigned char>(p[i])) * 0x100000001b3ull;
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardedConnection>> DialTcp(const std::string& ip, uint16_t port) {
  base::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("ip \"", ip, "\" is not IPv4"));
  }
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("connect ", ip, ":", port));
  }
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return std::make_unique<TcpConnection>(std::move(fd));
}

absl::Status EchoRoundTrip(ForwardedConnection& conn, size_t bytes, uint64_t seed, HalfClose half_close) {
  constexpr size_t kChunk = 64 << 10;
  Fnv1a sent;
  absl::Status write_status;
  std::thread writer([&] {
    ByteSource src(seed);
    std::string chunk(kChunk, '\0');
    for (size_t off = 0; off < bytes && write_status.ok(); off += kChunk) {
      size_t n = std::min(kChunk, bytes - off);
      src.Fill(chunk.data(), n);
      sent.Add(chunk.data(), n);
      write_status = conn.Write(std::string_view(chunk.data(), n));
    }
    if (write_status.ok()) write_status = conn.CloseWrite();
  });
  Fnv1a got;
  size_t received = 0;
  absl::Status read_status;
  std::string buf(kChunk, '\0');
  // Without half-close nothing ends the stream: stop once all came back.
  while (half_close == HalfClose::kSupported || received < bytes) {
    absl::StatusOr<size_t> n = conn.Read(buf.data(), buf.size());
    if (!n.ok()) {
      read_status = n.status();
      break;
    }
    if (*n == 0) break;
    got.Add(buf.data(), *n);
    received += *n;
  }
  writer.join();
  if (!write_status.ok()) return write_status;
  if (!read_status.ok()) return read_status;
  if (received != bytes) return absl::DataLossError(absl::StrCat("sent ", bytes, " bytes, ", received, " came back"));
  if (got.value() != sent.value()) return absl::DataLossError(absl::StrCat("checksums differ over ", bytes, " bytes"));
  return absl::OkStatus();
}

absl::Status ConcurrentEcho(int n, size_t bytes,
                            const std::function<absl::StatusOr<std::unique_ptr<ForwardedConnection>>(int)>& connect,
                            HalfClose half_close) {
  // Connected one after another (a client need not open streams from many
  // threads), then all copy at once.
  std::vector<std::unique_ptr<ForwardedConnection>> conns;
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<std::unique_ptr<ForwardedConnection>> c = connect(i);
    if (!c.ok()) return absl::Status(c.status().code(), absl::StrCat("connect ", i, ": ", c.status().message()));
    conns.push_back(std::move(*c));
  }
  std::vector<absl::Status> results(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      results[static_cast<size_t>(i)] = EchoRoundTrip(*conns[static_cast<size_t>(i)], bytes, static_cast<uint64_t>(i) + 1, half_close);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < n; ++i) {
    const absl::Status& s = results[static_cast<size_t>(i)];
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat("connection ", i, ": ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace kvcri::testing
