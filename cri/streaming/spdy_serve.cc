// ServeSpdyConnection: remotecommand (exec, attach; v4 to v1) and portforward.k8s.io over one SPDY/3.1 session, as kubelet serves them.
#include "cri/streaming/spdy_serve.h"

#include <atomic>
#include <list>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "config/base/log.h"
#include "config/base/str.h"
#include "cri/streaming/spdy_session.h"

namespace kvcri::streaming {
namespace {

using spdy::Session;
using spdy::Stream;

// After our last frame: how long the client gets to read it and hang up
// before we close (closing with unread input could reset the connection and
// lose the exit status).
constexpr absl::Duration kLinger = absl::Seconds(5);
// A resize message is {"Width":N,"Height":N} and a newline (Go's json.Encoder).
constexpr size_t kMaxResizeMessageBytes = 4096;

int ProtocolVersion(const std::string& protocol) {
  if (protocol == "v4.channel.k8s.io") return 4;
  if (protocol == "v3.channel.k8s.io") return 3;
  if (protocol == "v2.channel.k8s.io") return 2;
  return 1;  // "channel.k8s.io"
}

// The streams of one exec or attach, as the client opened them.
struct CommandStreams {
  std::shared_ptr<Stream> error, stdin, stdout, stderr, resize;
};

class SpdyCommandStreams : public RemoteCommandStreams {
 public:
  SpdyCommandStreams(Session& session, CommandStreams& streams) : session_(session), streams_(streams) {}
  ByteReader* Stdin() override { return streams_.stdin.get(); }
  ByteWriter* Stdout() override { return streams_.stdout.get(); }
  ByteWriter* Stderr() override { return streams_.stderr.get(); }
  std::optional<TerminalSize> NextResize() override {
    if (streams_.resize == nullptr) return std::nullopt;
    while (!resize_done_) {
      if (size_t nl = resize_buf_.find('\n'); nl != std::string::npos) {
        std::string line = resize_buf_.substr(0, nl);
        resize_buf_.erase(0, nl + 1);
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        absl::StatusOr<TerminalSize> size = ParseTerminalSize(line);
        if (size.ok()) return *size;
        // kubelet stops reading resizes at the first bad message, too.
        base::LogInfo("SPDY resize stream: bad message, ignoring further resizes",
                      {{"error", std::string(size.status().message())}});
        break;
      }
      if (resize_buf_.size() > kMaxResizeMessageBytes) {
        base::LogInfo("SPDY resize stream: message over the limit, ignoring further resizes",
                      {{"limit", std::to_string(kMaxResizeMessageBytes)}});
        break;
      }
      char chunk[512];
      absl::StatusOr<size_t> n = streams_.resize->Read(chunk, sizeof chunk);
      if (!n.ok() || *n == 0) break;
      resize_buf_.append(chunk, *n);
    }
    resize_done_ = true;
    return std::nullopt;
  }
  // Only cancels the streams' reads (thread-safe): NextResize's own state
  // stays with the thread that calls it, which then sees Cancelled.
  void StopReading() override {
    if (streams_.stdin != nullptr) streams_.stdin->CancelRead();
    if (streams_.resize != nullptr) streams_.resize->CancelRead();
  }
  void OnClientGone(std::function<void()> cb) override {
    session_.OnGone([gate = gate_, cb = std::move(cb)] {
      absl::MutexLock l(&gate->mu);
      if (gate->open) cb();
    });
  }
  // The backend returned: its callbacks may point at state that is gone, so
  // the session's own end (which follows) must not run them. Waits for one
  // that is running.
  void CloseGate() {
    absl::MutexLock l(&gate_->mu);
    gate_->open = false;
  }

 private:
  struct Gate {
    absl::Mutex mu;
    bool open ABSL_GUARDED_BY(mu) = true;
  };
  std::shared_ptr<Gate> gate_ = std::make_shared<Gate>();
  Session& session_;
  CommandStreams& streams_;
  std::string resize_buf_;
  bool resize_done_ = false;
};

struct Expected {
  bool stdin = false, stdout = false, stderr = false, resize = false;
};

// Collects the streams the client opens until the expected set is there
// (kubelet's waitForStreams); any other stream type, a repeat, or the
// deadline is an error.
absl::Status WaitForStreams(Session& session, const Expected& want, absl::Time deadline, CommandStreams& got) {
  auto complete = [&] {
    return got.error != nullptr && (got.stdin != nullptr) == want.stdin && (got.stdout != nullptr) == want.stdout &&
           (got.stderr != nullptr) == want.stderr && (got.resize != nullptr) == want.resize;
  };
  while (!complete()) {
    absl::StatusOr<std::shared_ptr<Stream>> s = session.Accept(deadline);
    if (absl::IsDeadlineExceeded(s.status())) {
      return absl::DeadlineExceededError("timed out waiting for client to create streams");
    }
    if (!s.ok()) return s.status();
    const std::string type(spdy::FindHeader((*s)->headers(), "streamtype"));
    std::shared_ptr<Stream>* slot = nullptr;
    bool wanted = false;
    if (type == "error") slot = &got.error, wanted = true;
    if (type == "stdin") slot = &got.stdin, wanted = want.stdin;
    if (type == "stdout") slot = &got.stdout, wanted = want.stdout;
    if (type == "stderr") slot = &got.stderr, wanted = want.stderr;
    if (type == "resize") slot = &got.resize, wanted = want.resize;
    if (slot == nullptr || !wanted || *slot != nullptr) {
      (*s)->Reset(spdy::kRstRefusedStream);
      return absl::InvalidArgumentError(base::StrCat("unexpected stream of streamtype \"", type, "\"",
                                                     slot != nullptr && *slot != nullptr ? " (a second one)" : ""));
    }
    *slot = std::move(*s);
  }
  return absl::OkStatus();
}

void ServeRemoteCommand(Session& session, const std::string& protocol, bool exec, const ExecSpec* exec_spec,
                        const AttachSpec* attach_spec, StreamingBackend* backend, const StreamLimits& limits) {
  const int version = ProtocolVersion(protocol);
  const bool tty = exec ? exec_spec->tty : attach_spec->tty;
  Expected want;
  want.stdin = exec ? exec_spec->stdin : attach_spec->stdin;
  want.stdout = exec ? exec_spec->stdout : attach_spec->stdout;
  want.stderr = (exec ? exec_spec->stderr : attach_spec->stderr) && !tty;  // a pty merges stderr
  want.resize = tty && version >= 3;
  const std::string container = exec ? exec_spec->container_id : attach_spec->container_id;

  CommandStreams streams;
  const absl::Time deadline = absl::Now() + absl::Seconds(limits.stream_creation_timeout_seconds);
  CommandResult result;
  if (absl::Status s = WaitForStreams(session, want, deadline, streams); !s.ok()) {
    base::LogInfo("SPDY remotecommand: streams not created",
                  {{"container", container}, {"protocol", protocol}, {"error", std::string(s.message())}});
    result.status = s;
  } else {
    SpdyCommandStreams io(session, streams);
    result = exec ? backend->Exec(*exec_spec, io) : backend->Attach(*attach_spec, io);
    io.CloseGate();
  }
  // Output first, then the status: client-go waits for both, in any order,
  // but a client reading the status may hang up at once.
  for (const auto& out : {streams.stdout, streams.stderr}) {
    if (out != nullptr) out->CloseWrite().IgnoreError();  // a client that left reads nothing anyway
  }
  if (streams.error != nullptr) {
    const std::string text = version >= 4 ? StatusJson(result) : LegacyErrorText(result);
    if (!text.empty()) streams.error->Write(text).IgnoreError();  // same: the client may be gone
    streams.error->CloseWrite().IgnoreError();
  }
  session.Finish(kLinger);
}

// One forwarded connection: a requestID's error and data streams.
struct Pair {
  std::shared_ptr<Stream> error, data;
  absl::Time deadline;
};

struct Forward {
  std::thread thread;
  std::shared_ptr<std::atomic<bool>> done;
};

void RunForward(const PortForwardSpec& spec, StreamingBackend* backend, Pair pair) {
  const std::string port_text(spdy::FindHeader(pair.data->headers(), "port"));
  uint32_t port = 0;
  absl::Status status;
  if (!absl::SimpleAtoi(absl::string_view(port_text.data(), port_text.size()), &port) || port == 0 || port > 65535) {
    status = absl::InvalidArgumentError(base::StrCat("invalid port header \"", port_text, "\""));
  } else if (!spec.ports.empty() &&
             std::find(spec.ports.begin(), spec.ports.end(), static_cast<int32_t>(port)) == spec.ports.end()) {
    status = absl::PermissionDeniedError(base::StrCat("port ", port, " is not among the ports of this request"));
  } else {
    status = backend->PortForward(spec.pod_sandbox_id, static_cast<uint16_t>(port), *pair.data);
  }
  if (!status.ok()) {
    base::LogInfo("SPDY port-forward failed", {{"pod", spec.pod_sandbox_id}, {"port", port_text},
                                               {"error", std::string(status.message())}});
    pair.error
        ->Write(base::StrCat("error forwarding port ", port_text, " to pod ", spec.pod_sandbox_id, ": ",
                             status.message()))
        .IgnoreError();  // a client that left cannot read it
    // Nobody reads the data stream any more: what the client still sends is
    // dropped and credited back, so a client busy writing is not stalled
    // before it sees our FIN and the error.
    pair.data->CancelRead();
  }
  pair.data->CloseWrite().IgnoreError();
  pair.error->CloseWrite().IgnoreError();
}

void ServePortForward(Session& session, const PortForwardSpec& spec, StreamingBackend* backend,
                      const StreamLimits& limits) {
  const size_t max_forwards = std::max<size_t>(1, limits.max_streams / 2);
  const absl::Duration creation_timeout = absl::Seconds(limits.stream_creation_timeout_seconds);
  absl::flat_hash_map<std::string, Pair> pending;
  std::list<Forward> active;
  auto prune = [&active] {
    for (auto it = active.begin(); it != active.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = active.erase(it);
      } else {
        ++it;
      }
    }
  };
  while (true) {
    prune();
    absl::Time deadline = absl::InfiniteFuture();
    for (const auto& [id, p] : pending) deadline = std::min(deadline, p.deadline);
    absl::StatusOr<std::shared_ptr<Stream>> accepted = session.Accept(deadline);
    if (absl::IsDeadlineExceeded(accepted.status())) {
      const absl::Time now = absl::Now();
      for (auto it = pending.begin(); it != pending.end();) {
        if (it->second.deadline > now) {
          ++it;
          continue;
        }
        Pair& p = it->second;
        if (p.error != nullptr) {
          p.error->Write(base::StrCat("timed out waiting for the data stream of request ", it->first)).IgnoreError();
          p.error->CloseWrite().IgnoreError();  // the client may be gone; nothing else to tell it
        }
        if (p.data != nullptr) p.data->Reset(spdy::kRstCancel);
        pending.erase(it++);
      }
      continue;
    }
    if (!accepted.ok()) break;
    std::shared_ptr<Stream> s = std::move(*accepted);
    const std::string type(spdy::FindHeader(s->headers(), "streamtype"));
    std::string request_id(spdy::FindHeader(s->headers(), "requestid"));
    if (request_id.empty()) {
      // Clients before requestID: the error stream, then the data stream two
      // ids later (kubelet's best-effort pairing).
      request_id = std::to_string(type == "data" ? s->id() - 2 : s->id());
    }
    if (type != "error" && type != "data") {
      base::LogDebug("SPDY port-forward: bad stream type", {{"streamtype", type}});
      s->Reset(spdy::kRstRefusedStream);
      continue;
    }
    auto [it, inserted] = pending.try_emplace(request_id);
    Pair& p = it->second;
    if (inserted) p.deadline = absl::Now() + creation_timeout;
    std::shared_ptr<Stream>& slot = type == "error" ? p.error : p.data;
    if (slot != nullptr) {
      base::LogDebug("SPDY port-forward: repeated stream", {{"requestid", request_id}, {"streamtype", type}});
      s->Reset(spdy::kRstStreamInUse);
      continue;
    }
    slot = std::move(s);
    if (p.error == nullptr || p.data == nullptr) continue;
    Pair ready = std::move(p);
    pending.erase(it);
    if (active.size() >= max_forwards) {
      ready.error->Write(base::StrCat("too many concurrent port-forward connections (limit ", max_forwards, ")"))
          .IgnoreError();  // the client may be gone; nothing else to tell it
      ready.error->CloseWrite().IgnoreError();
      ready.data->Reset(spdy::kRstRefusedStream);
      continue;
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    active.push_back(Forward{std::thread([&spec, backend, ready = std::move(ready), done]() mutable {
                               RunForward(spec, backend, std::move(ready));
                               done->store(true);
                             }),
                             done});
  }
  for (auto& [id, p] : pending) {
    for (const auto& s : {p.error, p.data}) {
      if (s != nullptr) s->Reset(spdy::kRstCancel);
    }
  }
  // The connection is gone or going away: forwards still running end when
  // their streams fail or finish.
  for (Forward& f : active) f.thread.join();
  session.Finish(kLinger);
}

}  // namespace

void ServeSpdyConnection(base::UniqueFd fd, std::string already_read, const SpdyTarget& target,
                         StreamingBackend* backend, const StreamLimits& limits) {
  Session session(std::move(fd), std::move(already_read), limits, Session::Role::kServer);
  if (absl::Status s = session.Start(); !s.ok()) {
    base::LogInfo("SPDY session did not start", {{"error", std::string(s.message())}});
    return;
  }
  if (const auto* e = std::get_if<SpdyExecTarget>(&target)) {
    ServeRemoteCommand(session, e->protocol, /*exec=*/true, &e->spec, nullptr, backend, limits);
  } else if (const auto* a = std::get_if<SpdyAttachTarget>(&target)) {
    ServeRemoteCommand(session, a->protocol, /*exec=*/false, nullptr, &a->spec, backend, limits);
  } else {
    ServePortForward(session, std::get<SpdyPortForwardTarget>(target).spec, backend, limits);
  }
}

}  // namespace kvcri::streaming
