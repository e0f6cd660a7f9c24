// kvcri-agent, the guest side of exec and port-forward: serves the host's sessions over the virtio-serial channel in one poll loop.
//
// A static executable with no dependency beyond libc (and libutil's openpty),
// so one file runs in any Linux guest. Single-threaded: every fd is
// non-blocking and polled; processes are reaped through a signalfd.
//
// Sessions belong to the host connection, like a dropped SSH session's: when
// the host goes away (daemon restart, VM migration of the socket) every
// process still running for it is killed and the agent waits for the next
// host. Usage:
//   kvcri-agent [--channel PATH]   the virtio-serial port (default below)
//   kvcri-agent --listen PATH      a unix socket instead, one host at a time (tests)
// As PID 1 (the Pod micro-VM's /init) it first sets the guest up (guest_init.h).
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <utmp.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/agent/agent_protocol.h"
#include "runtime/agent/guest/guest_init.h"

namespace kvcri::runtime::agent {
namespace {

constexpr char kChannelName[] = "io.kubevirt-cri.agent.0";  // agent_client.h's kAgentChannelName
constexpr char kDefaultChannel[] = "/dev/virtio-ports/io.kubevirt-cri.agent.0";
// 2: SPAWN (detached processes for micro-VM containers).
constexpr char kAgentVersion[] = "kvcri-agent 2";
constexpr size_t kMaxGuestSessions = 1024;
// Detached processes (SPAWN) alive at once.
constexpr size_t kMaxWorkloads = 1024;
constexpr size_t kReadChunk = 64 << 10;
// A host that takes no bytes for this long is gone.
constexpr int kWriteTimeoutMs = 30000;
// How often to look for a host while the virtio port reports hang-up.
constexpr int kHostPollMs = 250;
// After a tty's stdin closed while its line discipline was canonical: how
// often, and how many times, to look whether it went raw since.
constexpr int kEofCheckMs = 200;
constexpr int kEofChecks = 50;

int64_t MonotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void Logf(const char* fmt, const char* arg) {
  fprintf(stderr, "kvcri-agent: ");
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
}

// /dev/vportNpM of the virtio-serial port called `name`, from sysfs: guests
// without udev (an initramfs with busybox) have no /dev/virtio-ports/ links.
std::string PortByName(const char* name) {
  DIR* d = opendir("/sys/class/virtio-ports");
  if (d == nullptr) return {};
  std::string found;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string base = std::string("/sys/class/virtio-ports/") + e->d_name;
    FILE* f = fopen((base + "/name").c_str(), "re");
    if (f == nullptr) continue;
    char buf[128] = {};
    bool match = fgets(buf, sizeof(buf), f) != nullptr && strcspn(buf, "\n") == strlen(name) &&
                 strncmp(buf, name, strlen(name)) == 0;
    fclose(f);
    if (match) {
      found = std::string("/dev/") + e->d_name;
      break;
    }
  }
  closedir(d);
  return found;
}

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }
void SetCloexec(int fd) { fcntl(fd, F_SETFD, FD_CLOEXEC); }
void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

std::string ErrnoText(std::string_view what, int err) {
  std::string s(what);
  s += ": ";
  s += strerror(err);
  return s;
}

struct Session {
  enum class Kind { kExec, kPort } kind = Kind::kExec;
  uint32_t id = 0;

  // exec. With a tty, in_fd and out_fd are the same pty master.
  pid_t pid = -1;
  bool reaped = false;
  bool tty = false;
  int in_fd = -1, out_fd = -1, err_fd = -1;
  bool stdin_close_requested = false;
  char last_in = '\n';
  // A tty whose stdin closed in canonical mode: looks left, and when next.
  int eof_checks_left = 0;
  int64_t eof_check_at_ms = 0;

  // port
  int sock = -1;
  bool connecting = false;
  bool sock_failed = false;
  bool rd_eof = false;  // the guest-side peer closed its write half (SHUT_WR sent)
  bool shut_wr_requested = false;  // the host half-closed: shutdown once pending is written

  // Toward the process / socket: bytes received from the host, not yet
  // written, and bytes taken but not yet credited back.
  std::string pending;
  uint32_t outstanding = 0;
  uint32_t uncredited = 0;
  // Toward the host: credit left for stdout (or DATA) and stderr.
  uint32_t credit_out = 0, credit_err = 0;

  StreamId in_stream() const { return kind == Kind::kExec ? StreamId::kStdin : StreamId::kToGuest; }
  int write_fd() const { return kind == Kind::kExec ? in_fd : (connecting ? -1 : sock); }
};

class Agent {
 public:
  Agent(std::string channel, std::string listen_path) : channel_(std::move(channel)), listen_path_(std::move(listen_path)) {}
  int Run();

 private:
  bool Open();
  void OnHostGone(const char* why);
  void ProtocolError(const std::string& why);
  void ReadHost();
  void HandleFrame(const Frame& f);
  bool Send(FrameType type, uint32_t session, std::string_view payload);
  void StartExec(uint32_t id, const ExecMsg& m);
  void StartSpawn(uint32_t id, const SpawnMsg& m);
  // A SPAWNed process was reaped: its exit file, written whole then renamed.
  void WriteExitFile(const std::string& path, const std::string& oom_cgroup, int status);
  void StartConnect(uint32_t id, uint16_t port);
  void FinishConnect(Session* s);
  void KillSession(Session* s);
  void ReadOutput(Session* s, bool err);
  void ReadSocket(Session* s);
  void WritePending(Session* s);
  void AfterPendingWritten(Session* s);
  void CheckPendingEofs();
  void CreditBack(Session* s, bool force);
  void Reap();
  void TeardownSessions();

  std::string channel_, listen_path_;
  int listen_fd_ = -1;
  int conn_fd_ = -1;
  int sigchld_fd_ = -1;
  bool connected_ = false;  // said HELLO with this host
  bool deaf_ = false;       // a bad frame arrived: ignore input until the host hangs up
  bool port_hup_ = false;   // virtio port: no host attached right now
  bool write_failed_ = false;  // a frame could not be sent: the host is gone
  uint32_t window_ = 256 << 10;
  uint32_t max_payload_ = 64 << 10;
  std::unique_ptr<FrameDecoder> decoder_;
  std::map<uint32_t, std::unique_ptr<Session>> sessions_;
  // SPAWNed processes by pid: their exit files. Not sessions: a new host
  // (HELLO) tears sessions down, never these.
  struct Workload {
    std::string exit_path, oom_cgroup;
  };
  std::map<pid_t, Workload> workloads_;
  std::string out_;  // frames being written, reused
};

bool Agent::Open() {
  if (!listen_path_.empty()) {
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    // Bound under a temporary name and renamed once listening: whoever waits
    // for the path to appear must never find a socket that refuses connections.
    const std::string bound = listen_path_ + ".tmp";
    if (bound.size() >= sizeof(addr.sun_path)) {
      Logf("listen path too long: %s", listen_path_.c_str());
      return false;
    }
    memcpy(addr.sun_path, bound.c_str(), bound.size());
    unlink(bound.c_str());
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(listen_fd_, 4) != 0 ||
        rename(bound.c_str(), listen_path_.c_str()) != 0) {
      Logf("cannot listen on %s", ErrnoText(listen_path_, errno).c_str());
      unlink(bound.c_str());
      return false;
    }
    return true;
  }
  // The port may appear a little after boot (module load, udev): wait for it.
  for (int tries = 0;; ++tries) {
    conn_fd_ = open(channel_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (conn_fd_ < 0 && channel_ == kDefaultChannel) {
      std::string dev = PortByName(kChannelName);
      if (!dev.empty()) conn_fd_ = open(dev.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    }
    if (conn_fd_ >= 0) break;
    if (tries == 0) Logf("waiting for %s", ErrnoText(channel_, errno).c_str());
    usleep(500 * 1000);
  }
  decoder_ = std::make_unique<FrameDecoder>(kMaxPayloadCeiling);
  return true;
}

bool Agent::Send(FrameType type, uint32_t session, std::string_view payload) {
  if (conn_fd_ < 0 || deaf_ || write_failed_) return false;
  out_.clear();
  AppendFrame(&out_, type, session, payload);
  size_t off = 0;
  while (off < out_.size()) {
    ssize_t n = write(conn_fd_, out_.data() + off, out_.size() - off);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{conn_fd_, POLLOUT, 0};
      if (poll(&p, 1, kWriteTimeoutMs) > 0 && !(p.revents & (POLLERR | POLLNVAL))) continue;
    }
    // Handled by the poll loop: callers still hold session pointers that
    // ending the sessions here would free under them.
    write_failed_ = true;
    return false;
  }
  return true;
}

void Agent::TeardownSessions() {
  for (auto& [id, s] : sessions_) KillSession(s.get());
  sessions_.clear();
}

void Agent::OnHostGone(const char* why) {
  if (connected_ || !sessions_.empty()) Logf("host connection ended (%s); ending its sessions", why);
  TeardownSessions();
  connected_ = false;
  deaf_ = false;
  write_failed_ = false;
  if (!listen_path_.empty()) {
    CloseFd(&conn_fd_);
  } else {
    // The port stays open; a new host is noticed when bytes arrive again.
    port_hup_ = true;
  }
  decoder_ = std::make_unique<FrameDecoder>(kMaxPayloadCeiling);
}

void Agent::ProtocolError(const std::string& why) {
  Logf("protocol error from host: %s", why.c_str());
  Send(FrameType::kError, 0, why);
  TeardownSessions();
  connected_ = false;
  if (!listen_path_.empty()) {
    OnHostGone("protocol error");
  } else {
    // A virtio port cannot be hung up from this side: ignore everything
    // until the host disconnects, so the next host starts on a frame boundary.
    deaf_ = true;
  }
}

void Agent::KillSession(Session* s) {
  if (s->pid > 0 && !s->reaped) kill(-s->pid, SIGKILL);  // its process group: setsid made pgid == pid
  if (s->in_fd == s->out_fd) s->in_fd = -1;
  CloseFd(&s->in_fd);
  CloseFd(&s->out_fd);
  CloseFd(&s->err_fd);
  CloseFd(&s->sock);
}

void Agent::ReadHost() {
  char buf[kReadChunk];
  ssize_t n = read(conn_fd_, buf, sizeof(buf));
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    OnHostGone(n == 0 ? "end of stream" : strerror(errno));
    return;
  }
  port_hup_ = false;
  if (deaf_) return;
  decoder_->Feed(std::string_view(buf, static_cast<size_t>(n)));
  Frame f;
  while (!deaf_ && conn_fd_ >= 0 && decoder_->Next(&f)) HandleFrame(f);
  if (decoder_->failed() && !deaf_ && conn_fd_ >= 0) ProtocolError(decoder_->error());
}

void Agent::HandleFrame(const Frame& f) {
  if (f.type == FrameType::kHello) {
    HelloMsg h;
    if (!DecodeHello(f.payload, &h) || f.session != 0) return ProtocolError("bad HELLO");
    // A new host (or the same one again): whatever ran before is not its.
    TeardownSessions();
    window_ = std::clamp<uint32_t>(h.window, 4096, 64u << 20);
    max_payload_ = std::clamp<uint32_t>(h.max_payload, 1024, kMaxPayloadCeiling);
    connected_ = true;
    HelloMsg reply;
    reply.agent = kAgentVersion;
    Send(FrameType::kHello, 0, EncodeHello(reply));
    return;
  }
  if (!connected_) return ProtocolError(std::string(FrameTypeName(f.type)) + " before HELLO");
  if (f.type == FrameType::kExec || f.type == FrameType::kConnect || f.type == FrameType::kSpawn) {
    if (f.session == 0 || sessions_.count(f.session)) return ProtocolError("session id reused");
    if (sessions_.size() >= kMaxGuestSessions) {
      Send(FrameType::kError, f.session, "too many sessions");
      return;
    }
    if (f.type == FrameType::kExec) {
      ExecMsg m;
      if (!DecodeExec(f.payload, &m)) return ProtocolError("bad EXEC");
      StartExec(f.session, m);
    } else if (f.type == FrameType::kSpawn) {
      SpawnMsg m;
      if (!DecodeSpawn(f.payload, &m)) return ProtocolError("bad SPAWN");
      StartSpawn(f.session, m);
    } else {
      uint16_t port = 0;
      if (!DecodeU16(f.payload, &port)) return ProtocolError("bad CONNECT");
      StartConnect(f.session, port);
    }
    return;
  }
  auto it = sessions_.find(f.session);
  // The session may have ended on our side a moment ago; the host's frames
  // for it are late, not wrong, except for CLOSE, which is always answered.
  if (it == sessions_.end()) {
    if (f.type == FrameType::kClose) Send(FrameType::kClose, f.session, {});
    return;
  }
  Session* s = it->second.get();
  switch (f.type) {
    case FrameType::kStdin:
    case FrameType::kData: {
      if ((f.type == FrameType::kStdin) != (s->kind == Session::Kind::kExec)) return ProtocolError("data of the wrong kind");
      if (f.payload.size() > window_ - s->outstanding) return ProtocolError("host overran the window");
      s->outstanding += static_cast<uint32_t>(f.payload.size());
      if (s->write_fd() < 0 || s->sock_failed) {
        // Nobody reads it any more: drop it, but hand the credit back.
        s->uncredited += static_cast<uint32_t>(f.payload.size());
        CreditBack(s, true);
        return;
      }
      s->pending += f.payload;
      WritePending(s);
      return;
    }
    case FrameType::kStdinClose:
    case FrameType::kShutWr:
      if (s->kind == Session::Kind::kExec) {
        s->stdin_close_requested = true;
      } else {
        s->shut_wr_requested = true;
      }
      if (s->pending.empty()) AfterPendingWritten(s);
      return;
    case FrameType::kResize: {
      ResizeMsg r;
      if (!DecodeResize(f.payload, &r)) return ProtocolError("bad RESIZE");
      if (s->tty && s->out_fd >= 0) {
        winsize ws{};
        ws.ws_col = r.width;
        ws.ws_row = r.height;
        ioctl(s->out_fd, TIOCSWINSZ, &ws);  // the kernel sends SIGWINCH to the foreground group
      }
      return;
    }
    case FrameType::kSignal: {
      uint32_t sig = 0;
      if (!DecodeU32(f.payload, &sig)) return ProtocolError("bad SIGNAL");
      if (s->pid > 0 && !s->reaped && sig >= 1 && sig < 65) kill(-s->pid, static_cast<int>(sig));
      return;
    }
    case FrameType::kWindow: {
      WindowMsg w;
      if (!DecodeWindow(f.payload, &w)) return ProtocolError("bad WINDOW");
      uint32_t* credit = (w.stream == StreamId::kStderr) ? &s->credit_err : &s->credit_out;
      if (w.bytes > window_ - *credit) return ProtocolError("host credit beyond the window");
      *credit += w.bytes;
      return;
    }
    case FrameType::kClose:
      KillSession(s);
      sessions_.erase(it);
      Send(FrameType::kClose, f.session, {});
      return;
    default:
      return ProtocolError(std::string("unexpected ") + FrameTypeName(f.type) + " from host");
  }
}

void Agent::StartExec(uint32_t id, const ExecMsg& m) {
  auto s = std::make_unique<Session>();
  s->id = id;
  s->tty = m.tty;
  s->credit_out = s->credit_err = window_;
  int child_in = -1, child_out = -1, child_err = -1, pty_slave = -1;
  auto fail = [&](const std::string& why) {
    for (int* fd : {&child_in, &child_out, &child_err, &pty_slave}) CloseFd(fd);
    KillSession(s.get());
    Send(FrameType::kError, id, why);
  };
  if (m.tty) {
    winsize ws{};
    ws.ws_col = m.width ? m.width : 80;
    ws.ws_row = m.height ? m.height : 24;
    int master = -1;
    if (openpty(&master, &pty_slave, nullptr, nullptr, &ws) != 0) return fail(ErrnoText("openpty", errno));
    SetCloexec(master);
    SetCloexec(pty_slave);
    SetNonBlocking(master);
    s->in_fd = s->out_fd = master;
  } else {
    int p[2];
    if (m.stdin) {
      if (pipe2(p, O_CLOEXEC) != 0) return fail(ErrnoText("pipe", errno));
      child_in = p[0];
      s->in_fd = p[1];
    } else {
      child_in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (pipe2(p, O_CLOEXEC) != 0) return fail(ErrnoText("pipe", errno));
    s->out_fd = p[0];
    child_out = p[1];
    if (pipe2(p, O_CLOEXEC) != 0) return fail(ErrnoText("pipe", errno));
    s->err_fd = p[0];
    child_err = p[1];
    for (int fd : {s->in_fd, s->out_fd, s->err_fd}) {
      if (fd >= 0) SetNonBlocking(fd);
    }
  }
  int errp[2];
  if (pipe2(errp, O_CLOEXEC) != 0) return fail(ErrnoText("pipe", errno));
  // Everything the child needs is built before fork: after it only
  // async-signal-safe calls.
  std::vector<std::string> env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"};
  if (m.tty) env.push_back("TERM=xterm");
  for (const std::string& e : m.env) {
    size_t eq = e.find('=');
    std::string_view key(e.data(), eq == std::string::npos ? e.size() : eq + 1);
    std::erase_if(env, [&](const std::string& have) { return have.starts_with(key); });
    env.push_back(e);
  }
  std::vector<char*> argv, envp;
  for (const std::string& a : m.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) {
    close(errp[0]);
    close(errp[1]);
    return fail(ErrnoText("fork", errno));
  }
  if (pid == 0) {
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    signal(SIGPIPE, SIG_DFL);
    if (m.tty) {
      if (login_tty(pty_slave) != 0) _exit(126);  // setsid, controlling tty, fds 0-2
    } else {
      setsid();  // its own process group, so SIGNAL reaches its children too
      dup2(child_in, 0);
      dup2(child_out, 1);
      dup2(child_err, 2);
    }
    if (chdir("/") != 0) _exit(126);
    execvpe(argv[0], argv.data(), envp.data());
    int err = errno;
    ssize_t ignored = write(errp[1], &err, sizeof(err));
    (void)ignored;
    _exit(127);
  }
  close(errp[1]);
  for (int* fd : {&child_in, &child_out, &child_err, &pty_slave}) CloseFd(fd);
  int err = 0;
  ssize_t got;
  do {
    got = read(errp[0], &err, sizeof(err));  // returns 0 once exec closed the pipe
  } while (got < 0 && errno == EINTR);
  close(errp[0]);
  if (got == sizeof(err)) {
    waitpid(pid, nullptr, 0);
    KillSession(s.get());
    Send(FrameType::kError, id, ErrnoText("exec \"" + m.argv[0] + "\"", err));
    return;
  }
  s->pid = pid;
  Send(FrameType::kStarted, id, EncodeU32(static_cast<uint32_t>(pid)));
  sessions_[id] = std::move(s);
}

void Agent::StartSpawn(uint32_t id, const SpawnMsg& m) {
  // The session only carries the answer; CLOSE frees it, nothing else.
  auto s = std::make_unique<Session>();
  s->id = id;
  s->reaped = true;
  if (workloads_.size() >= kMaxWorkloads) {
    Send(FrameType::kError, id, "too many spawned processes");
    sessions_[id] = std::move(s);
    return;
  }
  std::vector<std::string> env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  for (const std::string& e : m.env) env.push_back(e);
  std::vector<char*> argv, envp;
  for (const std::string& a : m.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const char* cwd = m.cwd.empty() ? "/" : m.cwd.c_str();
  int errp[2];
  if (pipe2(errp, O_CLOEXEC) != 0) {
    Send(FrameType::kError, id, ErrnoText("pipe", errno));
    sessions_[id] = std::move(s);
    return;
  }
  pid_t pid = fork();
  if (pid == 0) {
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    signal(SIGPIPE, SIG_DFL);
    setsid();
    auto fail = [&](int stage) {
      int err[2] = {stage, errno};
      ssize_t ignored = write(errp[1], err, sizeof(err));
      (void)ignored;
      _exit(127);
    };
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int out = open(m.stdout_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (out < 0) fail(1);
    int err = open(m.stderr_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (err < 0) fail(2);
    if (in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) fail(3);
    if (chdir(cwd) != 0) fail(4);
    execvpe(argv[0], argv.data(), envp.data());
    fail(5);
  }
  close(errp[1]);
  if (pid < 0) {
    close(errp[0]);
    Send(FrameType::kError, id, ErrnoText("fork", errno));
    sessions_[id] = std::move(s);
    return;
  }
  int err[2] = {0, 0};
  ssize_t got;
  do {
    got = read(errp[0], err, sizeof(err));  // 0 once exec closed the pipe
  } while (got < 0 && errno == EINTR);
  close(errp[0]);
  if (got == sizeof(err)) {
    waitpid(pid, nullptr, 0);
    static const char* kStage[] = {"", "open stdout file", "open stderr file", "set up stdio", "chdir", "exec"};
    const char* stage = err[0] >= 1 && err[0] <= 5 ? kStage[err[0]] : "spawn";
    std::string what = std::string(stage) + " \"" + (err[0] == 1   ? m.stdout_path
                                                       : err[0] == 2 ? m.stderr_path
                                                       : err[0] == 4 ? std::string(cwd)
                                                                     : m.argv[0]) + "\"";
    Send(FrameType::kError, id, ErrnoText(what, err[1]));
    sessions_[id] = std::move(s);
    return;
  }
  workloads_[pid] = Workload{m.exit_path, m.oom_cgroup};
  Send(FrameType::kStarted, id, EncodeU32(static_cast<uint32_t>(pid)));
  sessions_[id] = std::move(s);
}

// "oom_kill N" of a cgroup v2 memory.events (hierarchical: a removed
// child's kills are counted in its parent); 0 when unreadable.
uint32_t OomKills(const std::string& cgroup) {
  FILE* f = fopen((cgroup + "/memory.events").c_str(), "re");
  if (f == nullptr) return 0;
  char key[64];
  unsigned long long v = 0;
  uint32_t kills = 0;
  while (fscanf(f, "%63s %llu", key, &v) == 2) {
    if (strcmp(key, "oom_kill") == 0) kills = static_cast<uint32_t>(std::min<unsigned long long>(v, 999999999));
  }
  fclose(f);
  return kills;
}

void Agent::WriteExitFile(const std::string& path, const std::string& oom_cgroup, int status) {
  ExitFile e;
  e.signaled = WIFSIGNALED(status);
  e.value = static_cast<uint32_t>(e.signaled ? WTERMSIG(status) : WEXITSTATUS(status));
  if (!oom_cgroup.empty()) {
    e.oom_kills = OomKills(oom_cgroup);
    rmdir(oom_cgroup.c_str());  // empty now: crun removed the container's own
  }
  const std::string text = ExitFileText(e);
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
  bool ok = fd >= 0 && write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  if (fd >= 0) close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) Logf("cannot write the exit file %s", ErrnoText(path, errno).c_str());
}

void Agent::StartConnect(uint32_t id, uint16_t port) {
  auto s = std::make_unique<Session>();
  s->kind = Session::Kind::kPort;
  s->id = id;
  s->credit_out = window_;
  s->sock = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->sock < 0) {
    Send(FrameType::kConnectFailed, id, strerror(errno));
    s->sock_failed = true;
    sessions_[id] = std::move(s);
    return;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  Session* raw = s.get();
  sessions_[id] = std::move(s);
  if (connect(raw->sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 || errno != EINPROGRESS) {
    FinishConnect(raw);
  } else {
    raw->connecting = true;
  }
}

void Agent::FinishConnect(Session* s) {
  s->connecting = false;
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(s->sock, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == 0) {
    sockaddr_in peer{};
    socklen_t plen = sizeof(peer);
    if (getpeername(s->sock, reinterpret_cast<sockaddr*>(&peer), &plen) != 0) err = errno;
  }
  if (err != 0) {
    CloseFd(&s->sock);
    s->sock_failed = true;
    Send(FrameType::kConnectFailed, s->id, strerror(err));
    return;
  }
  Send(FrameType::kConnected, s->id, {});
  if (!s->pending.empty()) WritePending(s);
}

void Agent::CreditBack(Session* s, bool force) {
  if (s->uncredited == 0) return;
  if (!force && s->uncredited < window_ / 4 && !s->pending.empty()) return;
  WindowMsg w{s->in_stream(), s->uncredited};
  s->outstanding -= s->uncredited;
  s->uncredited = 0;
  Send(FrameType::kWindow, s->id, EncodeWindow(w));
}

void Agent::WritePending(Session* s) {
  int fd = s->write_fd();
  while (fd >= 0 && !s->pending.empty()) {
    ssize_t n = write(fd, s->pending.data(), s->pending.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      // The process closed its stdin or the peer reset: the rest has
      // nowhere to go.
      n = static_cast<ssize_t>(s->pending.size());
      if (s->kind == Session::Kind::kPort) {
        s->sock_failed = true;
        Send(FrameType::kError, s->id, ErrnoText("write", errno));
      } else if (!s->tty) {
        CloseFd(&s->in_fd);
      }
    }
    s->last_in = s->pending[static_cast<size_t>(n) - 1];
    s->pending.erase(0, static_cast<size_t>(n));
    s->uncredited += static_cast<uint32_t>(n);
    fd = s->write_fd();
  }
  if (s->pending.empty()) {
    CreditBack(s, true);
    AfterPendingWritten(s);
  } else {
    CreditBack(s, false);
  }
}

void Agent::AfterPendingWritten(Session* s) {
  if (s->kind == Session::Kind::kPort) {
    if (s->shut_wr_requested && s->sock >= 0 && !s->connecting) {
      shutdown(s->sock, SHUT_WR);
      s->shut_wr_requested = false;
    }
    return;
  }
  if (!s->stdin_close_requested || s->in_fd < 0) return;
  s->stdin_close_requested = false;
  if (!s->tty) {
    CloseFd(&s->in_fd);
    return;
  }
  // A pty has no end-of-input: the line discipline's EOF character ends a
  // read at the start of a line (`cat` sees 0). After a partial line the
  // first one only flushes it, so a second follows.
  termios t{};
  char eof = 4;
  const bool got = tcgetattr(s->out_fd, &t) == 0;
  if (got && t.c_cc[VEOF] != 0) eof = static_cast<char>(t.c_cc[VEOF]);
  char eofs[2] = {eof, eof};
  ssize_t ignored = write(s->out_fd, eofs, s->last_in == '\n' ? 1 : 2);
  (void)ignored;
  // In canonical mode the line discipline keeps an EOF as a mark that only a
  // canonical read honours. A shell that finishes a command and switches to
  // raw mode for its line editor before reading (busybox ash, bash with
  // readline) then reads that mark as a NUL byte and waits for ever. So the
  // agent watches for the switch and sends the EOF character again: in raw
  // mode it reaches the editor, which ends on it at an empty line.
  if (got && (t.c_lflag & ICANON) != 0) {
    s->eof_checks_left = kEofChecks;
    s->eof_check_at_ms = MonotonicMs() + kEofCheckMs;
  }
}

void Agent::CheckPendingEofs() {
  const int64_t now = MonotonicMs();
  for (auto& [id, s] : sessions_) {
    if (s->eof_checks_left <= 0 || now < s->eof_check_at_ms) continue;
    termios t{};
    if (s->reaped || s->out_fd < 0 || tcgetattr(s->out_fd, &t) != 0) {
      s->eof_checks_left = 0;
      continue;
    }
    if ((t.c_lflag & ICANON) == 0) {
      const char eof = t.c_cc[VEOF] != 0 ? static_cast<char>(t.c_cc[VEOF]) : 4;
      ssize_t ignored = write(s->out_fd, &eof, 1);
      (void)ignored;
      s->eof_checks_left = 0;
      continue;
    }
    --s->eof_checks_left;
    s->eof_check_at_ms = now + kEofCheckMs;
  }
}

void Agent::ReadOutput(Session* s, bool err) {
  int* fd = err ? &s->err_fd : &s->out_fd;
  uint32_t* credit = err ? &s->credit_err : &s->credit_out;
  char buf[kReadChunk];
  size_t want = std::min<size_t>({sizeof(buf), *credit, max_payload_});
  ssize_t n = read(*fd, buf, want);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  FrameType type = err ? FrameType::kStderr : FrameType::kStdout;
  if (n <= 0) {
    // EOF, or EIO from a pty master once no process holds the slave.
    if (s->tty) s->in_fd = -1;
    CloseFd(fd);
    Send(type, s->id, {});
    return;
  }
  *credit -= static_cast<uint32_t>(n);
  Send(type, s->id, std::string_view(buf, static_cast<size_t>(n)));
}

void Agent::ReadSocket(Session* s) {
  char buf[kReadChunk];
  size_t want = std::min<size_t>({sizeof(buf), s->credit_out, max_payload_});
  ssize_t n = read(s->sock, buf, want);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n < 0) {
    s->sock_failed = true;
    Send(FrameType::kError, s->id, ErrnoText("read", errno));
    return;
  }
  if (n == 0) {
    s->rd_eof = true;
    Send(FrameType::kShutWr, s->id, {});
    return;
  }
  s->credit_out -= static_cast<uint32_t>(n);
  Send(FrameType::kData, s->id, std::string_view(buf, static_cast<size_t>(n)));
}

void Agent::Reap() {
  signalfd_siginfo si;
  while (read(sigchld_fd_, &si, sizeof(si)) == sizeof(si)) {
  }
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (auto w = workloads_.find(pid); w != workloads_.end()) {
      WriteExitFile(w->second.exit_path, w->second.oom_cgroup, status);
      workloads_.erase(w);
      continue;
    }
    for (auto& [id, s] : sessions_) {
      if (s->pid != pid) continue;
      s->reaped = true;
      ExitMsg e;
      e.signaled = WIFSIGNALED(status);
      e.value = static_cast<uint32_t>(e.signaled ? WTERMSIG(status) : WEXITSTATUS(status));
      Send(FrameType::kExit, id, EncodeExit(e));
      break;
    }
  }
}

int Agent::Run() {
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, nullptr);
  sigchld_fd_ = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  if (!Open()) return 1;

  std::vector<pollfd> fds;
  // What each pollfd stands for: the host connection, the listener, the
  // signalfd, or (session, role).
  enum Role { kHost, kListen, kChld, kOut, kErr, kIn, kSock };
  struct Slot {
    Role role;
    uint32_t session;
  };
  std::vector<Slot> slots;
  for (;;) {
    if (write_failed_) OnHostGone("write to host failed");
    fds.clear();
    slots.clear();
    auto add = [&](int fd, short events, Role role, uint32_t id) {
      fds.push_back({fd, events, 0});
      slots.push_back({role, id});
    };
    add(sigchld_fd_, POLLIN, kChld, 0);
    int timeout = -1;
    if (conn_fd_ >= 0 && !port_hup_) add(conn_fd_, POLLIN, kHost, 0);
    if (conn_fd_ >= 0 && port_hup_) {
      // A virtio port without a host polls as hung up: look again shortly.
      timeout = kHostPollMs;
    }
    if (conn_fd_ < 0 && listen_fd_ >= 0) add(listen_fd_, POLLIN, kListen, 0);
    for (auto& [id, s] : sessions_) {
      if (s->kind == Session::Kind::kExec) {
        if (s->out_fd >= 0 && s->credit_out > 0) add(s->out_fd, POLLIN, kOut, id);
        if (s->err_fd >= 0 && s->credit_err > 0) add(s->err_fd, POLLIN, kErr, id);
        if (s->in_fd >= 0 && !s->pending.empty()) add(s->in_fd, POLLOUT, kIn, id);
      } else if (s->sock >= 0) {
        short ev = 0;
        if (s->connecting) ev |= POLLOUT;
        if (!s->connecting && !s->sock_failed && !s->rd_eof && s->credit_out > 0) ev |= POLLIN;
        if (!s->connecting && !s->sock_failed && !s->pending.empty()) ev |= POLLOUT;
        if (ev) add(s->sock, ev, kSock, id);
      }
    }
    for (auto& [id, s] : sessions_) {
      if (s->eof_checks_left > 0) timeout = timeout < 0 ? kEofCheckMs : std::min(timeout, kEofCheckMs);
    }
    int n = poll(fds.data(), fds.size(), timeout);
    CheckPendingEofs();
    if (n < 0 && errno != EINTR) {
      Logf("poll: %s", strerror(errno));
      return 1;
    }
    if (n == 0 && port_hup_) {
      pollfd p{conn_fd_, POLLIN, 0};
      if (poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) port_hup_ = false;
      continue;
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      short re = fds[i].revents;
      if (re == 0) continue;
      const Slot& slot = slots[i];
      if (slot.role == kChld) {
        Reap();
        continue;
      }
      if (slot.role == kHost) {
        if (re & POLLIN) {
          ReadHost();
        } else if (re & (POLLHUP | POLLERR)) {
          OnHostGone("hang-up");
        }
        continue;
      }
      if (slot.role == kListen) {
        int c = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0) {
          conn_fd_ = c;
          decoder_ = std::make_unique<FrameDecoder>(kMaxPayloadCeiling);
        }
        continue;
      }
      // Earlier handlers may have ended the session or the connection.
      auto it = sessions_.find(slot.session);
      if (it == sessions_.end()) continue;
      Session* s = it->second.get();
      switch (slot.role) {
        case kOut:
          if (s->out_fd == fds[i].fd) ReadOutput(s, false);
          break;
        case kErr:
          if (s->err_fd == fds[i].fd) ReadOutput(s, true);
          break;
        case kIn:
          if (s->in_fd == fds[i].fd) WritePending(s);
          break;
        case kSock:
          if (s->sock != fds[i].fd) break;
          if (s->connecting) {
            FinishConnect(s);
            break;
          }
          if ((re & (POLLIN | POLLHUP | POLLERR)) && !s->rd_eof && !s->sock_failed) ReadSocket(s);
          if ((re & POLLOUT) && s->sock >= 0) WritePending(s);
          break;
        default:
          break;
      }
    }
  }
}

}  // namespace
}  // namespace kvcri::runtime::agent

int main(int argc, char** argv) {
  std::string channel = kvcri::runtime::agent::kDefaultChannel, listen_path;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--channel" && i + 1 < argc) {
      channel = argv[++i];
    } else if (a == "--listen" && i + 1 < argc) {
      listen_path = argv[++i];
    } else if (a == "--version") {
      puts(kvcri::runtime::agent::kAgentVersion);
      return 0;
    } else {
      fprintf(stderr, "usage: kvcri-agent [--channel PATH | --listen SOCKET]\n");
      return 2;
    }
  }
  if (!kvcri::runtime::agent::IsGuestInit()) return kvcri::runtime::agent::Agent(channel, listen_path).Run();
  // The Pod micro-VM's init (guest_init.h). The kernel gives init no PATH,
  // and exec's lookup (execvpe) searches ours.
  setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  kvcri::runtime::agent::InitGuest();
  int rc = kvcri::runtime::agent::Agent(channel, listen_path).Run();
  fprintf(stderr, "kvcri-agent init: the agent ended (%d); powering off\n", rc);
  kvcri::runtime::agent::PowerOff();
}
