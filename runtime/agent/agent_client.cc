// Host side of kvcri-agent: the per-VM connection with its reader thread, Process, PortConnection and AgentPool.
#include "runtime/agent/agent_client.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/unique_fd.h"
#include "runtime/agent/agent_protocol.h"

namespace kvcri::runtime::agent {
namespace {

using base::UniqueFd;

// A guest that stops reading for this long has lost its connection: a writer
// must not hang on one VM forever.
constexpr int kSendTimeoutSeconds = 10;
// How long the guest may take to answer EXEC or CONNECT.
constexpr absl::Duration kOpenTimeout = absl::Seconds(10);
// Frames a guest may send per second; past it the reader slows down (only
// this VM's reader: each connection has its own thread).
constexpr int kMaxFramesPerSecond = 20000;
// Stale HELLO answers tolerated on one connection (Conn::extra_hellos_).
constexpr int kMaxExtraHellos = 4;

// One direction of bytes from the guest, buffered until the consumer reads
// them. Never holds more than the window: the guest sends past its credit
// only by breaking the protocol.
struct Inbound {
  std::string buf;
  size_t off = 0;
  bool eof = false;
  uint32_t outstanding = 0;  // received and not yet credited back
  uint32_t consumed = 0;     // read by the consumer, not yet credited back
  size_t size() const { return buf.size() - off; }
};

struct Session {
  bool port = false;
  enum class Phase { kOpening, kOpen, kFailed, kClosing } phase = Phase::kOpening;
  std::string error;  // the guest's ERROR / CONNECT_FAILED text
  Inbound in[2];      // exec: stdout, stderr; port: data
  uint32_t send_credit = 0;
  std::optional<int> exit_code;
  uint32_t started = 0;  // STARTED's value: the process's pid in the guest
};

// The connection shared by the client and every Process/PortConnection made
// through it (they may outlive the client).
class Conn {
 public:
  Conn(UniqueFd fd, const AgentLimits& limits, std::string version)
      : fd_(std::move(fd)), limits_(limits), version_(std::move(version)) {
    reader_ = std::thread([this] { ReadLoop(); });
  }
  ~Conn() {
    {
      absl::MutexLock l(&mu_);
      alive_ = false;  // our own close: not worth a warning
      dead_reason_ = "closed by the host";
    }
    ::shutdown(fd_.get(), SHUT_RDWR);  // wakes the reader's read()
    reader_.join();
  }

  bool Alive() {
    absl::MutexLock l(&mu_);
    return alive_;
  }
  const std::string& version() const { return version_; }
  const AgentLimits& limits() const { return limits_; }

  // Opens a session with `type`/`payload` and waits for the guest's answer.
  absl::StatusOr<uint32_t> Open(bool port, FrameType type, std::string payload);
  // Frees the session: CLOSE to the guest, forgotten once it answers.
  void Close(uint32_t id);
  absl::StatusOr<size_t> Read(uint32_t id, int stream, char* buf, size_t len);
  absl::Status Write(uint32_t id, FrameType type, std::string_view data);
  absl::Status SendControl(uint32_t id, FrameType type, std::string_view payload);
  absl::StatusOr<int> Wait(uint32_t id, absl::Time deadline);
  // STARTED's value of an open session.
  uint32_t Started(uint32_t id) {
    absl::MutexLock l(&mu_);
    auto it = sessions_.find(id);
    return it == sessions_.end() ? 0 : it->second.started;
  }

 private:
  void ReadLoop();
  // False after a protocol error (the connection is then failed).
  bool HandleFrame(const Frame& f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailLocked(std::string why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Send(FrameType type, uint32_t session, std::string_view payload);
  absl::Status DeadStatus() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::UnavailableError(absl::StrCat("kvcri-agent connection lost: ", dead_reason_));
  }

  UniqueFd fd_;
  const AgentLimits limits_;
  const std::string version_;
  std::thread reader_;
  // Serialises whole frames on the socket; held only across the send of one
  // frame to this VM, which SO_SNDTIMEO bounds.
  absl::Mutex write_mu_;
  absl::Mutex mu_;
  absl::CondVar cv_;
  bool alive_ ABSL_GUARDED_BY(mu_) = true;
  std::string dead_reason_ ABSL_GUARDED_BY(mu_);
  uint32_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint32_t, Session> sessions_ ABSL_GUARDED_BY(mu_);
  // HELLO answers after ours: the guest answers every HELLO it reads, and a
  // connect attempt that gave up before its answer left its HELLO in the
  // channel for the guest to read (and answer) before ours. Bounded.
  int extra_hellos_ ABSL_GUARDED_BY(mu_) = 0;
};

void Conn::FailLocked(std::string why) {
  if (!alive_) return;
  alive_ = false;
  dead_reason_ = std::move(why);
  base::LogWarn("kvcri-agent connection closed", {{"reason", dead_reason_}});
  ::shutdown(fd_.get(), SHUT_RDWR);
  cv_.SignalAll();
}

absl::Status Conn::Send(FrameType type, uint32_t session, std::string_view payload) {
  std::string frame = EncodeFrame(type, session, payload);
  absl::MutexLock w(&write_mu_);
  size_t off = 0;
  while (off < frame.size()) {
    ssize_t n = ::send(fd_.get(), frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    std::string why = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                          ? absl::StrCat("the guest took no bytes for ", kSendTimeoutSeconds, "s")
                          : absl::StrCat("send: ", strerror(errno));
    absl::MutexLock l(&mu_);
    FailLocked(why);
    return DeadStatus();
  }
  return absl::OkStatus();
}

void Conn::ReadLoop() {
  FrameDecoder decoder(static_cast<uint32_t>(limits_.max_frame_bytes));
  std::string buf(64 << 10, '\0');
  absl::Time window_start = absl::Now();
  int frames_in_window = 0;
  for (;;) {
    ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::MutexLock l(&mu_);
      FailLocked(n == 0 ? "the guest closed the channel" : absl::StrCat("read: ", strerror(errno)));
      return;
    }
    decoder.Feed(std::string_view(buf.data(), static_cast<size_t>(n)));
    Frame f;
    while (decoder.Next(&f)) {
      absl::Time now = absl::Now();
      if (now - window_start >= absl::Seconds(1)) {
        window_start = now;
        frames_in_window = 0;
      }
      if (++frames_in_window > kMaxFramesPerSecond) {
        absl::SleepFor(window_start + absl::Seconds(1) - now);
        window_start = absl::Now();
        frames_in_window = 0;
      }
      absl::MutexLock l(&mu_);
      if (!alive_) return;
      if (!HandleFrame(f)) return;
    }
    if (decoder.failed()) {
      absl::MutexLock l(&mu_);
      FailLocked(absl::StrCat("bad frame from the guest: ", decoder.error()));
      return;
    }
  }
}

bool Conn::HandleFrame(const Frame& f) {
  auto fail = [&](std::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    FailLocked(absl::StrCat(std::string(what), " (", FrameTypeName(f.type), " on session ", f.session, ")"));
    return false;
  };
  if (f.session == 0) {
    if (f.type == FrameType::kError) return fail(absl::StrCat("the guest reported \"", SanitizeText(f.payload), "\""));
    // Such a stale HELLO came before ours in the guest's input, so what the
    // guest did on reading it (dropping its sessions) preceded every session
    // of ours: harmless.
    if (f.type == FrameType::kHello && ++extra_hellos_ <= kMaxExtraHellos) return true;
    return fail("unexpected connection frame");
  }
  auto it = sessions_.find(f.session);
  if (it == sessions_.end()) return fail("frame for an unknown session");
  Session& s = it->second;
  using Phase = Session::Phase;
  bool closing = s.phase == Phase::kClosing;

  if (f.type == FrameType::kClose) {
    if (!closing) return fail("CLOSE the host did not ask for");
    sessions_.erase(it);
    return true;
  }
  if (f.type == FrameType::kWindow) {
    WindowMsg w;
    if (!DecodeWindow(f.payload, &w)) return fail("malformed WINDOW");
    if (w.stream != (s.port ? StreamId::kToGuest : StreamId::kStdin)) return fail("WINDOW for a stream it does not receive");
    if (w.bytes > limits_.window_bytes - s.send_credit) return fail("credit beyond the window");
    s.send_credit += w.bytes;
    cv_.SignalAll();
    return true;
  }
  if (closing && (f.type == FrameType::kStarted || f.type == FrameType::kConnected || f.type == FrameType::kConnectFailed)) {
    return true;  // the answer to an open that timed out: late, not wrong
  }
  if (s.phase == Phase::kOpening) {
    switch (f.type) {
      case FrameType::kStarted:
        if (s.port) return fail("STARTED for a port connection");
        // The pid; 0 when the payload is not one (only SPAWN's caller uses it).
        if (!DecodeU32(f.payload, &s.started)) s.started = 0;
        s.phase = Phase::kOpen;
        break;
      case FrameType::kConnected:
        if (!s.port) return fail("CONNECTED for an exec session");
        s.phase = Phase::kOpen;
        break;
      case FrameType::kConnectFailed:
      case FrameType::kError:
        s.phase = Phase::kFailed;
        s.error = SanitizeText(f.payload);
        break;
      default:
        return fail("frame before the session opened");
    }
    cv_.SignalAll();
    return true;
  }
  int stream = -1;
  switch (f.type) {
    case FrameType::kStdout:
      stream = 0;
      break;
    case FrameType::kStderr:
      stream = 1;
      break;
    case FrameType::kData:
      stream = 0;
      break;
    case FrameType::kShutWr:
      if (!s.port) return fail("SHUT_WR for an exec session");
      if (s.in[0].eof) return fail("SHUT_WR twice");
      s.in[0].eof = true;
      cv_.SignalAll();
      return true;
    case FrameType::kExit: {
      ExitMsg e;
      if (s.port || !DecodeExit(f.payload, &e)) return fail("malformed EXIT");
      if (s.exit_code.has_value()) return fail("EXIT twice");
      s.exit_code = e.signaled ? 128 + static_cast<int>(e.value) : static_cast<int>(e.value);
      cv_.SignalAll();
      return true;
    }
    case FrameType::kError:
      // The session's socket failed: what is buffered stays readable.
      if (s.error.empty()) s.error = SanitizeText(f.payload);
      s.in[0].eof = s.in[1].eof = true;
      cv_.SignalAll();
      return true;
    default:
      return fail("frame the guest does not send");
  }
  if (s.port != (f.type == FrameType::kData)) return fail("output of the wrong session kind");
  if (s.phase == Phase::kFailed) return fail("output on a failed session");
  Inbound& in = s.in[stream];
  if (f.payload.empty()) {
    if (in.eof) return fail("end of output twice");
    in.eof = true;
    cv_.SignalAll();
    return true;
  }
  if (in.eof) return fail("output after its end");
  if (f.payload.size() > limits_.window_bytes - in.outstanding) return fail("the guest overran its window");
  in.outstanding += static_cast<uint32_t>(f.payload.size());
  // A closing session's bytes are dropped, but still counted: without new
  // credit a guest that keeps sending overruns and is cut off.
  if (closing) return true;
  if (in.off > 0 && in.off >= in.buf.size() / 2) {
    in.buf.erase(0, in.off);
    in.off = 0;
  }
  in.buf.append(f.payload);
  cv_.SignalAll();
  return true;
}

absl::StatusOr<uint32_t> Conn::Open(bool port, FrameType type, std::string payload) {
  uint32_t id;
  {
    absl::MutexLock l(&mu_);
    if (!alive_) return DeadStatus();
    if (sessions_.size() >= limits_.max_sessions) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the VM already has ", sessions_.size(), " agent sessions (limit ", limits_.max_sessions, ")"));
    }
    id = next_id_++;
    Session& s = sessions_[id];
    s.port = port;
    s.send_credit = limits_.window_bytes;
  }
  RETURN_IF_ERROR(Send(type, id, payload));
  std::string error;
  bool timed_out = false;
  {
    absl::MutexLock l(&mu_);
    absl::Time deadline = absl::Now() + kOpenTimeout;
    for (;;) {
      auto it = sessions_.find(id);
      if (!alive_ || it == sessions_.end()) return DeadStatus();
      if (it->second.phase == Session::Phase::kOpen) return id;
      if (it->second.phase != Session::Phase::kOpening) {
        error = it->second.error;
        break;
      }
      if (timed_out) break;
      timed_out = cv_.WaitWithDeadline(&mu_, deadline);  // checked again above: the answer may have come with it
    }
  }
  Close(id);
  if (timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat("kvcri-agent did not answer ", FrameTypeName(type), " within ", absl::FormatDuration(kOpenTimeout)));
  }
  if (error.empty()) error = "the guest gave no reason";
  if (port) return absl::UnavailableError(error);
  if (error.find("No such file or directory") != std::string::npos) return absl::NotFoundError(error);
  return absl::FailedPreconditionError(error);
}

void Conn::Close(uint32_t id) {
  {
    absl::MutexLock l(&mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    if (!alive_) {
      sessions_.erase(it);
      return;
    }
    it->second.phase = Session::Phase::kClosing;
    for (Inbound& in : it->second.in) {
      in.buf.clear();
      in.off = 0;
    }
  }
  // A failed send fails the connection, which frees every session.
  Send(FrameType::kClose, id, {}).IgnoreError();
}

absl::StatusOr<size_t> Conn::Read(uint32_t id, int stream, char* buf, size_t len) {
  uint32_t credit = 0;
  size_t n = 0;
  StreamId sid;
  {
    absl::MutexLock l(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      auto it = sessions_.find(id);
      if (it == sessions_.end() || !alive_) return true;
      const Inbound& in = it->second.in[stream];
      return in.size() > 0 || in.eof;
    };
    while (!ready()) cv_.Wait(&mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return absl::FailedPreconditionError("the agent session is closed");
    Session& s = it->second;
    Inbound& in = s.in[stream];
    if (in.size() == 0) {
      if (!alive_) return DeadStatus();
      if (!s.error.empty()) return absl::UnavailableError(absl::StrCat("guest: ", s.error));
      return 0;
    }
    n = std::min(len, in.size());
    memcpy(buf, in.buf.data() + in.off, n);
    in.off += n;
    in.consumed += static_cast<uint32_t>(n);
    // Credit goes back in batches, or at once when the consumer caught up.
    if (in.consumed >= limits_.window_bytes / 4 || in.size() == 0) {
      credit = in.consumed;
      in.outstanding -= credit;
      in.consumed = 0;
    }
    if (!alive_) credit = 0;
    sid = s.port ? StreamId::kToHost : (stream == 0 ? StreamId::kStdout : StreamId::kStderr);
  }
  if (credit > 0) Send(FrameType::kWindow, id, EncodeWindow({sid, credit})).IgnoreError();  // a failure fails the connection
  return n;
}

absl::Status Conn::Write(uint32_t id, FrameType type, std::string_view data) {
  while (!data.empty()) {
    size_t chunk;
    {
      absl::MutexLock l(&mu_);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        auto it = sessions_.find(id);
        // An exited process reads no more stdin: its credit never comes back.
        return !alive_ || it == sessions_.end() || it->second.send_credit > 0 || !it->second.error.empty() ||
               it->second.exit_code.has_value();
      };
      while (!ready()) cv_.Wait(&mu_);
      if (!alive_) return DeadStatus();
      auto it = sessions_.find(id);
      if (it == sessions_.end()) return absl::FailedPreconditionError("the agent session is closed");
      if (!it->second.error.empty()) return absl::UnavailableError(absl::StrCat("guest: ", it->second.error));
      if (it->second.exit_code.has_value()) return absl::FailedPreconditionError("the process has exited");
      chunk = std::min<size_t>({data.size(), it->second.send_credit, limits_.max_frame_bytes});
      it->second.send_credit -= static_cast<uint32_t>(chunk);
    }
    RETURN_IF_ERROR(Send(type, id, data.substr(0, chunk)));
    data.remove_prefix(chunk);
  }
  return absl::OkStatus();
}

absl::Status Conn::SendControl(uint32_t id, FrameType type, std::string_view payload) {
  {
    absl::MutexLock l(&mu_);
    if (!alive_) return DeadStatus();
  }
  return Send(type, id, payload);
}

absl::StatusOr<int> Conn::Wait(uint32_t id, absl::Time deadline) {
  absl::MutexLock l(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = sessions_.find(id);
    return !alive_ || it == sessions_.end() || it->second.exit_code.has_value();
  };
  while (!done()) {
    if (cv_.WaitWithDeadline(&mu_, deadline) && !done()) {
      return absl::DeadlineExceededError("the process is still running");
    }
  }
  auto it = sessions_.find(id);
  if (it != sessions_.end() && it->second.exit_code.has_value()) return *it->second.exit_code;
  if (!alive_) return DeadStatus();
  return absl::FailedPreconditionError("the agent session is closed");
}

class AgentProcess : public Process {
 public:
  AgentProcess(std::shared_ptr<Conn> conn, uint32_t id, bool tty) : conn_(std::move(conn)), id_(id), tty_(tty) {}
  ~AgentProcess() override { conn_->Close(id_); }  // the guest SIGKILLs what still runs
  absl::Status WriteStdin(std::string_view data) override { return conn_->Write(id_, FrameType::kStdin, data); }
  absl::Status CloseStdin() override { return conn_->SendControl(id_, FrameType::kStdinClose, {}); }
  absl::Status Resize(uint16_t width, uint16_t height) override {
    if (!tty_) return absl::FailedPreconditionError("resize of a process without a tty");
    return conn_->SendControl(id_, FrameType::kResize, EncodeResize({width, height}));
  }
  absl::Status Signal(int signo) override {
    if (signo < 1 || signo > 64) return absl::InvalidArgumentError(absl::StrCat("signal ", signo, " out of range"));
    return conn_->SendControl(id_, FrameType::kSignal, EncodeU32(static_cast<uint32_t>(signo)));
  }
  absl::StatusOr<size_t> Read(Output which, char* buf, size_t len) override {
    if (which == Output::kStderr && tty_) return 0;
    if (len == 0) return 0;
    return conn_->Read(id_, which == Output::kStdout ? 0 : 1, buf, len);
  }
  absl::StatusOr<int> Wait(absl::Time deadline) override { return conn_->Wait(id_, deadline); }

 private:
  std::shared_ptr<Conn> conn_;
  uint32_t id_;
  bool tty_;
};

class AgentPortConnection : public PortConnection {
 public:
  AgentPortConnection(std::shared_ptr<Conn> conn, uint32_t id) : conn_(std::move(conn)), id_(id) {}
  ~AgentPortConnection() override { conn_->Close(id_); }
  absl::StatusOr<size_t> Read(char* buf, size_t len) override {
    if (len == 0) return 0;
    return conn_->Read(id_, 0, buf, len);
  }
  absl::Status Write(std::string_view data) override { return conn_->Write(id_, FrameType::kData, data); }
  absl::Status CloseWrite() override { return conn_->SendControl(id_, FrameType::kShutWr, {}); }

 private:
  std::shared_ptr<Conn> conn_;
  uint32_t id_;
};

class AgentClientImpl : public AgentClient {
 public:
  explicit AgentClientImpl(std::shared_ptr<Conn> conn) : conn_(std::move(conn)) {}
  bool Alive() override { return conn_->Alive(); }
  std::string AgentVersion() override { return conn_->version(); }

  absl::StatusOr<std::unique_ptr<Process>> Exec(const ExecOptions& o) override {
    if (o.argv.empty() || o.argv[0].empty()) return absl::InvalidArgumentError("exec argv is empty");
    if (o.argv.size() > kMaxExecArgs || o.env.size() > kMaxExecArgs) {
      return absl::InvalidArgumentError(absl::StrCat("exec argv/env has more than ", kMaxExecArgs, " entries"));
    }
    for (const auto* list : {&o.argv, &o.env}) {
      for (const std::string& s : *list) {
        if (s.find('\0') != std::string::npos) return absl::InvalidArgumentError("exec argv/env entry holds a NUL byte");
      }
    }
    for (const std::string& e : o.env) {
      if (e.find('=') == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("exec env entry \"", e, "\" is not K=V"));
    }
    ExecMsg m{o.argv, o.env, o.tty, o.stdin, o.width, o.height};
    std::string payload = EncodeExec(m);
    if (payload.size() > conn_->limits().max_frame_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("exec argv and env take ", payload.size(), " bytes, more than the ",
                                                     conn_->limits().max_frame_bytes, " an agent frame holds"));
    }
    ASSIGN_OR_RETURN(uint32_t id, conn_->Open(false, FrameType::kExec, std::move(payload)));
    return std::make_unique<AgentProcess>(conn_, id, o.tty);
  }

  absl::StatusOr<uint32_t> Spawn(const SpawnOptions& o) override {
    if (o.argv.empty() || o.argv[0].empty()) return absl::InvalidArgumentError("spawn argv is empty");
    SpawnMsg m{o.argv, o.env, o.cwd, o.stdout_path, o.stderr_path, o.exit_path, o.oom_cgroup};
    std::string payload = EncodeSpawn(m);
    SpawnMsg check;
    if (!DecodeSpawn(payload, &check)) {
      return absl::InvalidArgumentError(
          "spawn: argv/env too long or holding NUL bytes, or a path not absolute or with \"..\"");
    }
    if (payload.size() > conn_->limits().max_frame_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("spawn argv and env take ", payload.size(), " bytes, more than the ",
                                                     conn_->limits().max_frame_bytes, " an agent frame holds"));
    }
    ASSIGN_OR_RETURN(uint32_t id, conn_->Open(false, FrameType::kSpawn, std::move(payload)));
    const uint32_t pid = conn_->Started(id);
    conn_->Close(id);  // the process is not the session's: this only frees the id
    return pid;
  }

  absl::StatusOr<std::unique_ptr<PortConnection>> ConnectPort(uint16_t port) override {
    if (port == 0) return absl::InvalidArgumentError("port 0");
    absl::StatusOr<uint32_t> id = conn_->Open(true, FrameType::kConnect, EncodeU16(port));
    if (!id.ok()) {
      if (absl::IsUnavailable(id.status())) {
        return absl::UnavailableError(absl::StrCat("guest port ", port, ": ", id.status().message()));
      }
      return id.status();
    }
    return std::make_unique<AgentPortConnection>(conn_, *id);
  }

 private:
  std::shared_ptr<Conn> conn_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AgentClient>> ConnectAgent(const std::filesystem::path& socket,
                                                          const AgentLimits& limits) {
  if (limits.max_frame_bytes < 1024 || limits.max_frame_bytes > kMaxPayloadCeiling) {
    return absl::InvalidArgumentError(absl::StrCat("agent max_frame_bytes ", limits.max_frame_bytes, " out of range"));
  }
  if (limits.window_bytes < 4096 || limits.window_bytes > (64u << 20)) {
    return absl::InvalidArgumentError(absl::StrCat("agent window_bytes ", limits.window_bytes, " out of range"));
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket(AF_UNIX)");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = socket.string();
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("agent socket path \"", path, "\" is too long"));
  }
  memcpy(addr.sun_path, path.c_str(), path.size());
  // QEMU takes one host at a time: while another holds the channel, a
  // blocking connect() would wait in the backlog for as long as that lasts.
  absl::Time connect_deadline = absl::Now() + limits.hello_timeout;
  int flags = fcntl(fd.get(), F_GETFL);
  fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
  while (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno == EINTR) continue;
    if (errno != EAGAIN || absl::Now() >= connect_deadline) {
      return absl::UnavailableError(absl::StrCat("connect \"", path, "\": ", strerror(errno),
                                                 errno == EAGAIN ? " (another host holds the channel)" : ""));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  fcntl(fd.get(), F_SETFL, flags);
  timeval tv{kSendTimeoutSeconds, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

  HelloMsg hello;
  hello.window = limits.window_bytes;
  hello.max_payload = static_cast<uint32_t>(limits.max_frame_bytes);
  std::string frame = EncodeFrame(FrameType::kHello, 0, EncodeHello(hello));
  if (::send(fd.get(), frame.data(), frame.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(frame.size())) {
    return absl::UnavailableError(absl::StrCat("send HELLO to \"", path, "\": ", strerror(errno)));
  }
  // The answer is read here, exactly one frame of it, before the reader
  // thread starts: whatever follows stays in the socket for that thread.
  absl::Time deadline = absl::Now() + limits.hello_timeout;
  auto read_exact = [&](char* out, size_t n) -> absl::Status {
    size_t got = 0;
    while (got < n) {
      int left_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      pollfd p{fd.get(), POLLIN, 0};
      if (left_ms <= 0 || ::poll(&p, 1, left_ms) <= 0) {
        return absl::UnavailableError(absl::StrCat("no kvcri-agent answered on \"", path, "\" within ",
                                                   absl::FormatDuration(limits.hello_timeout)));
      }
      ssize_t r = ::recv(fd.get(), out + got, n - got, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return absl::UnavailableError(absl::StrCat("kvcri-agent at \"", path, "\" closed the channel"));
      got += static_cast<size_t>(r);
    }
    return absl::OkStatus();
  };
  char header[kFrameHeaderBytes];
  RETURN_IF_ERROR(read_exact(header, sizeof(header)));
  FrameDecoder decoder(static_cast<uint32_t>(limits.max_frame_bytes));
  decoder.Feed(std::string_view(header, sizeof(header)));
  Frame reply;
  if (!decoder.Next(&reply) && !decoder.failed()) {
    // The header passed the decoder's checks: its length is bounded.
    auto* h = reinterpret_cast<const unsigned char*>(header);
    size_t len = static_cast<size_t>(h[0]) << 24 | static_cast<size_t>(h[1]) << 16 | static_cast<size_t>(h[2]) << 8 | h[3];
    std::string payload(len, '\0');
    RETURN_IF_ERROR(read_exact(payload.data(), len));
    decoder.Feed(payload);
    decoder.Next(&reply);
  }
  if (decoder.failed()) return absl::UnavailableError(absl::StrCat("kvcri-agent at \"", path, "\": ", decoder.error()));
  HelloMsg answer;
  if (reply.type != FrameType::kHello || reply.session != 0 || !DecodeHello(reply.payload, &answer)) {
    return absl::UnavailableError(absl::StrCat("kvcri-agent at \"", path, "\" answered HELLO with ", FrameTypeName(reply.type)));
  }
  if (answer.version != kProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrCat("kvcri-agent at \"", path, "\" speaks protocol version ",
                                                      answer.version, ", we speak ", kProtocolVersion));
  }
  auto conn = std::make_shared<Conn>(std::move(fd), limits, SanitizeText(answer.agent));
  return std::make_unique<AgentClientImpl>(std::move(conn));
}

struct AgentPool::State {
  AgentLimits limits;
  struct Entry {
    std::shared_ptr<AgentClient> client;
    bool connecting = false;
  };
  absl::Mutex mu;
  absl::CondVar cv;
  absl::flat_hash_map<std::string, Entry> entries ABSL_GUARDED_BY(mu);
};

AgentPool::AgentPool(AgentLimits limits) : state_(std::make_unique<State>()) { state_->limits = limits; }
AgentPool::~AgentPool() = default;

absl::StatusOr<std::shared_ptr<AgentClient>> AgentPool::Get(const std::string& key, const std::filesystem::path& socket) {
  State& st = *state_;
  {
    absl::MutexLock l(&st.mu);
    // One connect per VM at a time: QEMU takes one host connection, so a
    // second concurrent attempt would only time out.
    for (;;) {
      auto it = st.entries.find(key);
      if (it == st.entries.end() || !it->second.connecting) break;
      st.cv.Wait(&st.mu);
    }
    State::Entry& e = st.entries[key];
    if (e.client && e.client->Alive()) return e.client;
    e.client.reset();  // closes a dead connection before QEMU is asked for the next
    e.connecting = true;
  }
  absl::StatusOr<std::unique_ptr<AgentClient>> made = ConnectAgent(socket, st.limits);  // slow: no lock held
  absl::MutexLock l(&st.mu);
  st.cv.SignalAll();
  auto it = st.entries.find(key);
  if (!made.ok()) {
    if (it != st.entries.end()) st.entries.erase(it);
    return made.status();
  }
  std::shared_ptr<AgentClient> client = std::move(*made);
  if (it != st.entries.end()) {
    it->second.connecting = false;
    it->second.client = client;
  }
  return client;
}

void AgentPool::Forget(const std::string& key) {
  std::shared_ptr<AgentClient> dropped;  // destroyed after the lock is released
  absl::MutexLock l(&state_->mu);
  auto it = state_->entries.find(key);
  if (it == state_->entries.end() || it->second.connecting) return;
  dropped = std::move(it->second.client);
  state_->entries.erase(it);
}

}  // namespace kvcri::runtime::agent
