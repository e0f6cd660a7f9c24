// A ttrpc server: unary calls over unix-socket connections, dispatched by service and method to handlers.
#pragma once

// What containerd 1.6 (ttrpc 1.1) expects of a shim's server
// (docs/containerd-shim.md section 2): requests on one connection may be
// answered out of order, each runs on its own thread (a Task Wait blocks
// until the VM exits while State calls go on); an unknown service or method
// is UNIMPLEMENTED "service X" / "method X"; an even stream id is
// INVALID_ARGUMENT; an oversize frame is skipped and answered
// RESOURCE_EXHAUSTED; frames of unknown types are ignored.
//
// Bounds a client cannot push past: 64 calls in flight per connection
// (more are answered RESOURCE_EXHAUSTED at once), 4 MiB per frame, 64
// connections (more are closed at accept). A reply the peer does not read
// for 30 s closes that connection. When a connection ends, every call still
// running on it is cancelled (CallContext::cancelled); Shutdown cancels all.

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/base/unique_fd.h"

namespace kvcri::shim::ttrpc {

// Fires once, from any thread; waiters subscribe a callback. Shared by a
// connection's calls: the connection cancels it when it ends.
class Cancellation {
 public:
  // Runs `fn` when Cancel is called (at once, on this thread, when it
  // already was). The returned id removes it again. `fn` must not call back
  // into this object.
  uint64_t Subscribe(std::function<void()> fn);
  void Unsubscribe(uint64_t id);
  void Cancel();
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> cancelled_{false};
  absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, std::function<void()>> subscribers_ ABSL_GUARDED_BY(mu_);
};

// Unsubscribes on destruction: the RAII form of Cancellation::Subscribe.
class CancelSubscription {
 public:
  CancelSubscription(std::shared_ptr<Cancellation> c, std::function<void()> fn)
      : c_(std::move(c)), id_(c_->Subscribe(std::move(fn))) {}
  CancelSubscription(const CancelSubscription&) = delete;
  CancelSubscription& operator=(const CancelSubscription&) = delete;
  ~CancelSubscription() { c_->Unsubscribe(id_); }

 private:
  std::shared_ptr<Cancellation> c_;
  uint64_t id_;
};

// What a handler knows of its call.
struct CallContext {
  std::string service;
  std::string method;
  uint32_t stream_id = 0;
  // From the request's timeout_nano; InfiniteFuture when it had none.
  absl::Time deadline = absl::InfiniteFuture();
  std::vector<std::pair<std::string, std::string>> metadata;
  // Cancelled when the connection ends or the server shuts down: a handler
  // that waits (Task Wait) subscribes and returns CANCELLED.
  std::shared_ptr<Cancellation> cancel;

  bool cancelled() const { return cancel && cancel->cancelled(); }
};

// A handler gets the request's payload and returns the reply's payload (a
// serialized message; empty is an empty message) or an error status.
using Handler = std::function<absl::StatusOr<std::string>(const CallContext&, std::string_view payload)>;

// `Typed<Req, Reply>(fn)`: a Handler that parses Req (INVALID_ARGUMENT naming the
// method when it does not parse) and serializes fn's reply.
template <typename Req, typename Reply>
Handler Typed(std::function<absl::StatusOr<Reply>(const CallContext&, const Req&)> fn) {
  return [fn = std::move(fn)](const CallContext& ctx, std::string_view payload) -> absl::StatusOr<std::string> {
    Req req;
    if (!req.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      return absl::InvalidArgumentError(
          std::string("the payload of ").append(ctx.service).append("/").append(ctx.method).append(" does not parse"));
    }
    absl::StatusOr<Reply> reply = fn(ctx, req);
    if (!reply.ok()) return reply.status();
    return reply->SerializeAsString();
  };
}

struct ServerOptions {
  int max_calls_per_connection = 64;
  int max_connections = 64;
  absl::Duration write_timeout = absl::Seconds(30);
};

class Server {
 public:
  explicit Server(ServerOptions options = {});
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  // Serve must have returned (the thread that runs it is joined first).
  ~Server();

  // Before Serve only.
  void Register(std::string service, std::string method, Handler handler);

  // Accepts connections on `listener` (a listening unix socket) until
  // Shutdown; then cancels the calls in flight and returns once every
  // connection and call thread has ended. Errors: a failed accept that is
  // not transient.
  absl::Status Serve(base::UniqueFd listener);

  // From any thread (a signal handler thread, a Shutdown RPC): Serve returns.
  void Shutdown();

  // Connections being served now (tests).
  int connections() const;

 private:
  class Connection;

  const ServerOptions options_;
  // Filled before Serve, read-only after: no lock.
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, Handler>> services_;
  // Shutdown writes here to wake Serve's poll.
  base::UniqueFd wake_read_, wake_write_;
  std::atomic<bool> stopping_{false};
  mutable absl::Mutex mu_;
  std::list<std::shared_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::shim::ttrpc
