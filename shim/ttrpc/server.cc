// The ttrpc server: accept loop, one reader thread per connection, one thread per call (server.h).
#include "shim/ttrpc/server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>

#include "config/base/str.h"
#include "config/base/log.h"
#include "shim/ttrpc/envelope.h"
#include "shim/ttrpc/frame_io.h"

namespace kvcri::shim::ttrpc {

uint64_t Cancellation::Subscribe(std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    if (!cancelled()) {
      uint64_t id = next_id_++;
      subscribers_.emplace(id, std::move(fn));
      return id;
    }
  }
  fn();  // already cancelled: the subscriber must not wait for it
  return 0;
}

void Cancellation::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&mu_);
  subscribers_.erase(id);
}

void Cancellation::Cancel() {
  absl::flat_hash_map<uint64_t, std::function<void()>> subscribers;
  {
    absl::MutexLock lock(&mu_);
    if (cancelled()) return;
    cancelled_.store(true, std::memory_order_release);
    subscribers.swap(subscribers_);
  }
  // Outside the lock: a callback takes the waiter's own lock to wake it.
  for (auto& [id, fn] : subscribers) fn();
}

// One client connection: its reader thread cuts frames and starts a thread
// per call; replies share the socket under write_mu_.
class Server::Connection {
 public:
  Connection(const Server* server, base::UniqueFd fd) : server_(server), fd_(std::move(fd)) {}

  void Start() { reader_ = std::thread([this] { ReadLoop(); }); }
  // Ends the reader (it sees the end of the stream), which cancels the calls.
  void Stop() { ::shutdown(fd_.get(), SHUT_RDWR); }
  void Join() {
    if (reader_.joinable()) reader_.join();
  }
  bool done() const { return done_.load(std::memory_order_acquire); }

 private:
  struct Call {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  void ReadLoop();
  void HandleRequest(Frame frame);
  void RunCall(Call* call, const Handler* handler, CallContext ctx, std::string payload);
  void Reply(uint32_t stream_id, const pb::Response& response);
  // Joins the call threads that have finished; returns how many still run.
  int ReapCalls();

  const Server* server_;
  base::UniqueFd fd_;
  std::shared_ptr<Cancellation> cancel_ = std::make_shared<Cancellation>();
  absl::Mutex write_mu_;
  std::list<Call> calls_;  // the reader thread's alone
  std::thread reader_;
  std::atomic<bool> done_{false};
};

void Server::Connection::ReadLoop() {
  FrameReader reader(fd_.get());
  while (true) {
    absl::StatusOr<ReadResult> r = reader.Next();
    if (!r.ok()) {
      // Out of sync (a frame cut short, a read error): nothing more can be
      // understood on this connection.
      base::LogDebug("ttrpc connection ends", {{"reason", std::string(r.status().message())}});
      break;
    }
    if (r->outcome == ReadOutcome::kEnd) break;
    if (r->outcome == ReadOutcome::kWouldBlock) continue;  // a blocking fd does not say this; be safe
    if (r->outcome == ReadOutcome::kRefused) {
      Reply(r->frame.header.stream_id, ErrorResponse(r->refusal));
      continue;
    }
    HandleRequest(std::move(r->frame));
  }
  cancel_->Cancel();
  for (Call& call : calls_) call.thread.join();
  calls_.clear();
  // The peer sees the end now, not when the server next reaps connections;
  // the fd itself closes with the Connection (Stop may still be called).
  ::shutdown(fd_.get(), SHUT_RDWR);
  done_.store(true, std::memory_order_release);
}

void Server::Connection::HandleRequest(Frame frame) {
  const FrameHeader& h = frame.header;
  // Responses and ttrpc 1.2 data frames mean nothing to a unary server;
  // unknown types are skipped for forward compatibility, as ttrpc does.
  if (h.type != kTypeRequest) return;
  if (h.stream_id % 2 == 0) {
    Reply(h.stream_id, ErrorResponse(absl::InvalidArgumentError("StreamID must be odd for client initiated streams")));
    return;
  }
  if (h.flags & kFlagRemoteOpen) {
    Reply(h.stream_id, ErrorResponse(absl::UnimplementedError("streaming ttrpc calls are not supported")));
    return;
  }
  absl::StatusOr<pb::Request> req = ParseRequest(frame.data);
  if (!req.ok()) {
    Reply(h.stream_id, ErrorResponse(req.status()));
    return;
  }
  auto service = server_->services_.find(req->service());
  if (service == server_->services_.end()) {
    Reply(h.stream_id, ErrorResponse(absl::UnimplementedError(base::StrCat("service ", req->service()))));
    return;
  }
  auto method = service->second.find(req->method());
  if (method == service->second.end()) {
    Reply(h.stream_id, ErrorResponse(absl::UnimplementedError(base::StrCat("method ", req->method()))));
    return;
  }
  if (ReapCalls() >= server_->options_.max_calls_per_connection) {
    Reply(h.stream_id, ErrorResponse(absl::ResourceExhaustedError(base::StrCat(
                           "more than ", server_->options_.max_calls_per_connection,
                           " ttrpc calls in flight on one connection; stream ", h.stream_id, " refused"))));
    return;
  }
  CallContext ctx;
  ctx.service = req->service();
  ctx.method = req->method();
  ctx.stream_id = h.stream_id;
  if (req->timeout_nano() > 0) ctx.deadline = absl::Now() + absl::Nanoseconds(req->timeout_nano());
  for (const pb::KeyValue& kv : req->metadata()) ctx.metadata.emplace_back(kv.key(), kv.value());
  ctx.cancel = cancel_;
  Call& call = calls_.emplace_back();
  call.thread = std::thread(&Connection::RunCall, this, &call, &method->second, std::move(ctx),
                            std::move(*req->mutable_payload()));
}

void Server::Connection::RunCall(Call* call, const Handler* handler, CallContext ctx, std::string payload) {
  absl::StatusOr<std::string> reply = (*handler)(ctx, payload);
  Reply(ctx.stream_id, reply.ok() ? OkResponse(std::move(*reply)) : ErrorResponse(reply.status()));
  call->done.store(true, std::memory_order_release);
}

void Server::Connection::Reply(uint32_t stream_id, const pb::Response& response) {
  std::string data = response.SerializeAsString();
  absl::Status s;
  {
    absl::MutexLock lock(&write_mu_);
    s = WriteFrame(fd_.get(), stream_id, kTypeResponse, 0, data);
  }
  if (!s.ok()) {
    // The peer went away or stopped reading (SO_SNDTIMEO): end the
    // connection, which cancels its other calls.
    base::LogDebug("ttrpc reply failed; closing the connection",
                   {{"stream", base::StrCat(stream_id)}, {"error", std::string(s.message())}});
    Stop();
  }
}

int Server::Connection::ReapCalls() {
  int running = 0;
  for (auto it = calls_.begin(); it != calls_.end();) {
    if (it->done.load(std::memory_order_acquire)) {
      it->thread.join();
      it = calls_.erase(it);
    } else {
      ++running;
      ++it;
    }
  }
  return running;
}

Server::Server(ServerOptions options) : options_(options) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
    wake_read_.Reset(fds[0]);
    wake_write_.Reset(fds[1]);
  }
}

Server::~Server() { Shutdown(); }

void Server::Register(std::string service, std::string method, Handler handler) {
  services_[std::move(service)][std::move(method)] = std::move(handler);
}

absl::Status Server::Serve(base::UniqueFd listener) {
  if (!wake_read_.valid()) return absl::InternalError("the ttrpc server has no wake-up pipe (pipe2 failed)");
  absl::Status result;
  while (!stopping_.load(std::memory_order_acquire)) {
    pollfd fds[2] = {{listener.get(), POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      result = absl::ErrnoToStatus(errno, "poll on the ttrpc listener");
      break;
    }
    if (fds[1].revents) break;
    if (!(fds[0].revents & POLLIN)) continue;
    base::UniqueFd fd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd.valid()) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        base::LogWarn("ttrpc accept failed; retrying", {{"errno", base::StrCat(errno)}});
        ::usleep(100 * 1000);
        continue;
      }
      result = absl::ErrnoToStatus(errno, "accept on the ttrpc listener");
      break;
    }
    timeval tv = absl::ToTimeval(options_.write_timeout);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    absl::MutexLock lock(&mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if ((*it)->done()) {
        (*it)->Join();  // its reader has returned: immediate
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
    if (static_cast<int>(connections_.size()) >= options_.max_connections) {
      base::LogWarn("ttrpc connection refused: too many connections",
                    {{"max", base::StrCat(options_.max_connections)}});
      continue;  // fd closes
    }
    auto conn = std::make_shared<Connection>(this, std::move(fd));
    conn->Start();
    connections_.push_back(std::move(conn));
  }
  std::list<std::shared_ptr<Connection>> connections;
  {
    absl::MutexLock lock(&mu_);
    connections.swap(connections_);
  }
  // Without the lock: joining waits for the handlers to see the cancellation.
  for (auto& c : connections) c->Stop();
  for (auto& c : connections) c->Join();
  return result;
}

void Server::Shutdown() {
  if (stopping_.exchange(true, std::memory_order_acq_rel)) return;
  char byte = 1;
  if (wake_write_.valid()) {
    [[maybe_unused]] ssize_t n = ::write(wake_write_.get(), &byte, 1);  // full pipe: Serve is waking anyway
  }
}

int Server::connections() const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& c : connections_) n += c->done() ? 0 : 1;
  return n;
}

}  // namespace kvcri::shim::ttrpc
