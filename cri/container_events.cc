// ContainerEventHub: event snapshots from the store, subscriber queues, the GetContainerEvents stream loop.
#include "cri/container_events.h"

#include <grpcpp/support/sync_stream.h>

#include <algorithm>

#include "config/base/clock.h"
#include "config/base/log.h"
#include "config/base/metrics.h"
#include "config/base/str.h"
#include "cri/convert.h"
#include "sandbox/sandbox_store.h"

namespace kvcri::cri {

using base::StrCat;

pb::ContainerEventType ToPb(ContainerEventType t) {
  switch (t) {
    case ContainerEventType::kCreated: return pb::CONTAINER_CREATED_EVENT;
    case ContainerEventType::kStarted: return pb::CONTAINER_STARTED_EVENT;
    case ContainerEventType::kStopped: return pb::CONTAINER_STOPPED_EVENT;
    case ContainerEventType::kDeleted: return pb::CONTAINER_DELETED_EVENT;
  }
  return pb::CONTAINER_CREATED_EVENT;
}

struct ContainerEventHub::Queue {
  explicit Queue(std::string who) : who(std::move(who)) {}
  const std::string who;
  mutable absl::Mutex mu;
  std::deque<pb::ContainerEventResponse> events ABSL_GUARDED_BY(mu);
  bool overflowed ABSL_GUARDED_BY(mu) = false;
  bool closed ABSL_GUARDED_BY(mu) = false;
  uint64_t dropped ABSL_GUARDED_BY(mu) = 0;
};

ContainerEventHub::ContainerEventHub(const sandbox::SandboxStore* store, base::Clock* clock,
                                     base::MetricFamily* dropped, ContainerEventHubOptions options)
    : store_(store), clock_(clock), dropped_metric_(dropped), options_(options) {}

ContainerEventHub::~ContainerEventHub() { Close(); }

bool ContainerEventHub::Offer(Queue& q, const pb::ContainerEventResponse& ev) {
  bool first_drop = false;
  {
    absl::MutexLock l(&q.mu);
    if (q.closed) return false;
    if (!q.overflowed && q.events.size() < options_.buffer) {
      q.events.push_back(ev);
      return false;
    }
    first_drop = !q.overflowed;
    q.overflowed = true;
    ++q.dropped;
  }
  dropped_total_.fetch_add(1, std::memory_order_relaxed);
  if (dropped_metric_ != nullptr) dropped_metric_->Add({});
  if (first_drop) {
    base::LogWarn("container events subscriber fell behind; its events are dropped and its stream ends",
                  {{"subscriber", q.who}, {"buffer", StrCat(options_.buffer)}});
  }
  return first_drop;
}

void ContainerEventHub::Publish(ContainerEventType type, std::string_view container_id, std::string_view sandbox_id) {
  absl::MutexLock l(&mu_);
  if (closed_ || queues_.empty()) return;  // nobody listens: no snapshot either
  pb::ContainerEventResponse ev;
  ev.set_container_id(std::string(container_id));
  ev.set_container_event_type(ToPb(type));
  // kubelet keeps a Pod's cached status only when the event is newer than
  // what it has (time.Unix(0, created_at)): strictly increasing in our order.
  last_created_at_ = std::max(last_created_at_ + 1, absl::ToUnixNanos(clock_->Now()));
  ev.set_created_at(last_created_at_);
  // What PodSandboxStatus and ContainerStatus answer now. A removed sandbox
  // has none (containerd sends its DELETED without one too); a removed
  // container is absent from containers_statuses, as from ListContainers.
  absl::StatusOr<sandbox::SandboxRecord> sb = store_->GetSandbox(sandbox_id);
  if (sb.ok()) ToPb(*sb, ev.mutable_pod_sandbox_status());
  const std::string log_directory = sb.ok() ? sb->log_directory : std::string();
  for (const sandbox::ContainerRecord& c :
       store_->ListContainers([&](const sandbox::ContainerRecord& r) { return r.sandbox_id == sandbox_id; })) {
    ToPb(c, log_directory, ev.add_containers_statuses());
  }
  for (const std::shared_ptr<Queue>& q : queues_) {
    Offer(*q, ev);
  }
}

std::unique_ptr<ContainerEventHub::Subscription> ContainerEventHub::Subscribe(std::string who) {
  auto q = std::make_shared<Queue>(std::move(who));
  absl::MutexLock l(&mu_);
  if (closed_) return nullptr;
  queues_.push_back(q);
  return std::unique_ptr<Subscription>(new Subscription(this, std::move(q)));
}

void ContainerEventHub::Unsubscribe(const Queue* q) {
  absl::MutexLock l(&mu_);
  queues_.erase(std::remove_if(queues_.begin(), queues_.end(),
                               [q](const std::shared_ptr<Queue>& p) { return p.get() == q; }),
                queues_.end());
}

void ContainerEventHub::Close() {
  std::vector<std::shared_ptr<Queue>> queues;
  {
    absl::MutexLock l(&mu_);
    closed_ = true;
    queues = queues_;
  }
  for (const std::shared_ptr<Queue>& q : queues) {
    absl::MutexLock l(&q->mu);
    q->closed = true;
  }
}

uint64_t ContainerEventHub::dropped() const { return dropped_total_.load(std::memory_order_relaxed); }

size_t ContainerEventHub::subscribers() const {
  absl::MutexLock l(&mu_);
  return queues_.size();
}

ContainerEventHub::Subscription::~Subscription() { hub_->Unsubscribe(q_.get()); }

ContainerEventHub::Subscription::Next ContainerEventHub::Subscription::Wait(absl::Duration timeout,
                                                                           pb::ContainerEventResponse* out) {
  Queue& q = *q_;
  absl::MutexLock l(&q.mu);
  auto ready = [&q]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(q.mu) { return q.closed || q.overflowed || !q.events.empty(); };
  q.mu.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (q.closed) return Next::kClosed;
  // Queued events are stale once some were lost: kubelet relists instead.
  if (q.overflowed) return Next::kOverflow;
  if (q.events.empty()) return Next::kTimeout;
  *out = std::move(q.events.front());
  q.events.pop_front();
  return Next::kEvent;
}

void ContainerEventHub::Subscription::Offer(const pb::ContainerEventResponse& ev) { hub_->Offer(*q_, ev); }

uint64_t ContainerEventHub::Subscription::dropped() const {
  absl::MutexLock l(&q_->mu);
  return q_->dropped;
}

grpc::Status ServeContainerEvents(grpc::ServerContext* ctx, grpc::ServerWriter<pb::ContainerEventResponse>* writer,
                                  ContainerEventHub::Subscription* sub, absl::Duration poll) {
  using Next = ContainerEventHub::Subscription::Next;
  // The subscription exists: a client waiting for the headers
  // (WaitForInitialMetadata) knows it sees every event from here on.
  writer->SendInitialMetadata();
  pb::ContainerEventResponse ev;
  while (!ctx->IsCancelled()) {
    switch (sub->Wait(poll, &ev)) {
      case Next::kEvent:
        // Blocks while the client does not read (flow control); Publish
        // meanwhile fills this subscriber's queue only.
        if (!writer->Write(ev)) return grpc::Status(grpc::StatusCode::CANCELLED, "GetContainerEvents: client went away");
        break;
      case Next::kTimeout:
        break;
      case Next::kOverflow:
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            StrCat("GetContainerEvents: this subscriber fell behind and ", sub->dropped(),
                                   " events were dropped; relist and subscribe again"));
      case Next::kClosed:
        return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "GetContainerEvents: container events subscription closed by server (shutting down)");
    }
  }
  return grpc::Status(grpc::StatusCode::CANCELLED, "GetContainerEvents: cancelled by the client");
}

}  // namespace kvcri::cri
