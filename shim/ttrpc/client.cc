// The ttrpc client: stream ids, one reader thread handing Responses to their callers (client.h).
#include "shim/ttrpc/client.h"

#include <sys/socket.h>

#include "config/base/str.h"
#include "shim/ttrpc/envelope.h"
#include "shim/ttrpc/frame_io.h"
#include "shim/ttrpc/unix_socket.h"

namespace kvcri::shim::ttrpc {

absl::StatusOr<std::unique_ptr<Client>> Client::Dial(std::string_view socket_path) {
  absl::StatusOr<base::UniqueFd> fd = ConnectUnix(socket_path);
  if (!fd.ok()) return fd.status();
  return std::make_unique<Client>(std::move(*fd));
}

Client::Client(base::UniqueFd fd) : fd_(std::move(fd)) {
  reader_ = std::thread([this] { ReadLoop(); });
}

Client::~Client() {
  Close();
  reader_.join();
}

absl::StatusOr<std::string> Client::Call(std::string_view service, std::string_view method, std::string payload,
                                         absl::Duration timeout) {
  auto pending = std::make_shared<Pending>();
  uint32_t id;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::UnavailableError("the ttrpc connection is closed");
    if (next_stream_id_ > 0x7fffffffu) return absl::ResourceExhaustedError("the ttrpc connection ran out of stream ids");
    id = next_stream_id_;
    next_stream_id_ += 2;
    pending_.emplace(id, pending);
  }
  pb::Request req;
  req.set_service(std::string(service));
  req.set_method(std::string(method));
  req.set_payload(std::move(payload));
  if (timeout != absl::InfiniteDuration()) req.set_timeout_nano(absl::ToInt64Nanoseconds(timeout));
  std::string data = req.SerializeAsString();
  absl::Status written;
  {
    absl::MutexLock lock(&write_mu_);
    written = WriteFrame(fd_.get(), id, kTypeRequest, 0, data);
  }
  absl::Time deadline = timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
  absl::MutexLock lock(&mu_);
  if (!written.ok()) {
    pending_.erase(id);
    return written.code() == absl::StatusCode::kResourceExhausted ? written : absl::UnavailableError(written.message());
  }
  Pending* p = pending.get();
  if (!mu_.AwaitWithDeadline(absl::Condition(+[](Pending* q) { return q->done; }, p), deadline)) {
    pending_.erase(id);  // a late Response for it is dropped
    return absl::DeadlineExceededError(
        base::StrCat("no reply to ", service, "/", method, " within ", absl::FormatDuration(timeout)));
  }
  return std::move(p->result);
}

void Client::ReadLoop() {
  FrameReader reader(fd_.get());
  absl::Status why = absl::UnavailableError("the ttrpc server closed the connection");
  while (true) {
    absl::StatusOr<ReadResult> r = reader.Next();
    if (!r.ok()) {
      why = absl::UnavailableError(base::StrCat("the ttrpc connection failed: ", r.status().message()));
      break;
    }
    if (r->outcome == ReadOutcome::kEnd) break;
    if (r->outcome == ReadOutcome::kWouldBlock) continue;
    uint32_t id = r->frame.header.stream_id;
    absl::StatusOr<std::string> result;
    if (r->outcome == ReadOutcome::kRefused) {
      result = r->refusal;  // an oversize reply: the call fails, the connection goes on
    } else if (r->frame.header.type != kTypeResponse) {
      continue;
    } else {
      pb::Response resp;
      if (!resp.ParseFromString(r->frame.data)) {
        result = absl::DataLossError(base::StrCat("the ttrpc Response on stream ", id, " does not parse"));
      } else if (absl::Status s = StatusOf(resp); !s.ok()) {
        result = s;
      } else {
        result = std::move(*resp.mutable_payload());
      }
    }
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) continue;  // its caller gave up
    it->second->result = std::move(result);
    it->second->done = true;
    pending_.erase(it);
  }
  Fail(why);
}

void Client::Fail(const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  for (auto& [id, p] : pending_) {
    p->result = why;
    p->done = true;
  }
  pending_.clear();
}

void Client::Close() {
  // The reader sees the end of the stream and fails what is pending.
  ::shutdown(fd_.get(), SHUT_RDWR);
}

bool Client::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

}  // namespace kvcri::shim::ttrpc
