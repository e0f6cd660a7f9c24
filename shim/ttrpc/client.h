// A ttrpc client: unary calls multiplexed over one unix-socket connection (events to containerd, tests).
#pragma once

// Calls from many threads share the connection: each takes the next odd
// stream id, writes its Request under a write lock and waits for the
// Response with that id, which one reader thread hands over. Responses for
// ids nobody waits for any more (a call that timed out) are dropped. When the
// connection ends every waiting call fails UNAVAILABLE, and so does every
// later call: a caller reconnects by making a new Client.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/base/unique_fd.h"

namespace kvcri::shim::ttrpc {

class Client {
 public:
  // Connects to the unix socket at `socket_path` (a filesystem path).
  static absl::StatusOr<std::unique_ptr<Client>> Dial(std::string_view socket_path);

  // Takes a connected socket.
  explicit Client(base::UniqueFd fd);
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  // Sends `payload` (a serialized request message) to service/method and
  // returns the reply's payload, or the status the server answered, or
  // UNAVAILABLE when the connection is gone, or DEADLINE_EXCEEDED after
  // `timeout` (which is also sent as the request's timeout_nano).
  absl::StatusOr<std::string> Call(std::string_view service, std::string_view method, std::string payload,
                                   absl::Duration timeout = absl::InfiniteDuration());

  // `Call` for messages: serializes `request`, parses the reply into `reply`.
  template <typename Req, typename Reply>
  absl::Status CallMessage(std::string_view service, std::string_view method, const Req& request, Reply* reply,
                           absl::Duration timeout = absl::InfiniteDuration()) {
    absl::StatusOr<std::string> bytes = Call(service, method, request.SerializeAsString(), timeout);
    if (!bytes.ok()) return bytes.status();
    if (!reply->ParseFromString(*bytes)) {
      return absl::DataLossError(std::string("the reply of ").append(method).append(" does not parse"));
    }
    return absl::OkStatus();
  }

  // Ends the connection; calls in flight fail UNAVAILABLE.
  void Close();
  // True once the connection has ended (the peer closed it, or Close).
  bool closed() const;

 private:
  struct Pending {
    bool done = false;
    absl::StatusOr<std::string> result;
  };

  void ReadLoop();
  void Fail(const absl::Status& why);

  base::UniqueFd fd_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint32_t, std::shared_ptr<Pending>> pending_ ABSL_GUARDED_BY(mu_);
  uint32_t next_stream_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex write_mu_;  // one frame at a time on the socket
  std::thread reader_;
};

}  // namespace kvcri::shim::ttrpc
