// EventPublisher: a queue and one worker that forwards each event to containerd, retrying (event_publisher.h).
#include "shim/containerd/event_publisher.h"

#include <utility>

#include "config/base/log.h"
#include "config/base/str.h"
#include "shim/containerd/names.h"
#include "shim/containerd/proto/events.pb.h"

namespace kvcri::shim::containerd {

EventPublisher::EventPublisher(std::string ttrpc_socket, std::string ns, EventPublisherOptions options)
    : socket_(std::move(ttrpc_socket)), ns_(std::move(ns)), options_(options) {
  worker_ = std::thread([this] { Run(); });
}

EventPublisher::~EventPublisher() {
  if (!Flush(absl::Seconds(2))) base::LogWarn("task events not forwarded to containerd at shim exit");
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  worker_.join();
}

absl::Status EventPublisher::Publish(std::string_view topic, std::string_view type_url, std::string event) {
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= options_.max_queued) {
    ++dropped_;
    return absl::ResourceExhaustedError(base::StrCat("event ", topic, " dropped: ", options_.max_queued,
                                                     " events already wait for containerd"));
  }
  queue_.push_back(Queued{std::string(topic), std::string(type_url), std::move(event), absl::Now()});
  return absl::OkStatus();
}

bool EventPublisher::Flush(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty() && !busy_; };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

uint64_t EventPublisher::forwarded() const {
  absl::MutexLock lock(&mu_);
  return forwarded_;
}

uint64_t EventPublisher::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

void EventPublisher::Run() {
  while (true) {
    Queued q;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      q = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    absl::Status s = Forward(q);
    absl::MutexLock lock(&mu_);
    busy_ = false;
    if (s.ok()) {
      ++forwarded_;
    } else {
      ++dropped_;
      base::LogError("task event not forwarded to containerd",
                     {{"topic", q.topic}, {"error", std::string(s.message())}});
    }
  }
}

absl::Status EventPublisher::Forward(const Queued& q) {
  pb::ForwardRequest req;
  pb::Envelope* env = req.mutable_envelope();
  // containerd refuses an envelope without a timestamp (exchange.go
  // validateEnvelope): the time the event happened, not when it got through.
  int64_t nanos = absl::ToUnixNanos(q.stamped);
  env->mutable_timestamp()->set_seconds(nanos / 1'000'000'000);
  env->mutable_timestamp()->set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
  env->set_namespace_(ns_);
  env->set_topic(q.topic);
  env->mutable_event()->set_type_url(q.type_url);
  env->mutable_event()->set_value(q.event);
  std::string payload = req.SerializeAsString();
  absl::Status last;
  absl::Duration delay = options_.first_retry_delay;
  for (int attempt = 0; attempt < options_.attempts; ++attempt) {
    if (attempt > 0) {
      if (!SleepUnlessStopping(delay)) return last;
      delay *= 2;
    }
    if (client_ == nullptr || client_->closed()) {
      absl::StatusOr<std::unique_ptr<ttrpc::Client>> c = ttrpc::Client::Dial(socket_);
      if (!c.ok()) {
        last = c.status();
        continue;
      }
      client_ = std::move(*c);
    }
    absl::StatusOr<std::string> reply =
        client_->Call(kEventsService, kEventsForwardMethod, payload, options_.call_timeout);
    if (reply.ok()) return absl::OkStatus();
    last = reply.status();
    // containerd judged the event itself: sending it again changes nothing.
    if (absl::IsInvalidArgument(last) || absl::IsUnimplemented(last)) return last;
    client_.reset();  // reconnect: the connection may be wedged or gone
  }
  return last;
}

bool EventPublisher::SleepUnlessStopping(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
  return !stopping_;
}

}  // namespace kvcri::shim::containerd
