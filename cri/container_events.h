// ContainerEventHub: the orchestrator's container events fanned out to bounded per-subscriber queues.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cri/container_event_sink.h"
#include "cri/proto/api.pb.h"

namespace kvcri::base {
class Clock;
class MetricFamily;
}  // namespace kvcri::base
namespace kvcri::sandbox {
class SandboxStore;
}  // namespace kvcri::sandbox

namespace kvcri::cri {

namespace pb = ::runtime::v1;

pb::ContainerEventType ToPb(ContainerEventType t);

struct ContainerEventHubOptions {
  // Events a subscriber may fall behind before it is cut off. A Pod's life is
  // about six events (sandbox CREATED/STARTED, container CREATED/STARTED/
  // STOPPED/DELETED, sandbox STOPPED/DELETED): 1024 is well over a hundred
  // Pods changing at once.
  size_t buffer = 1024;
};

// Publish() snapshots the Pod as PodSandboxStatus and ContainerStatus would
// answer it now (the same ToPb conversions, from the store's memory) and
// appends the event to every subscriber's queue. The snapshot and the
// enqueueing happen under one mutex, so every subscriber sees the events in
// one order and each event's statuses are at least as new as the previous
// event's. No gRPC write happens here: each stream's own thread takes events
// from its queue and writes them with no lock held.
//
// A subscriber that falls `buffer` events behind (a client that stopped
// reading: gRPC's Write blocks once HTTP/2 flow control is exhausted) is not
// waited for: Publish drops its events, logs once, counts them in
// kvcri_container_events_dropped_total, and marks the subscription
// overflowed, which ends that stream with RESOURCE_EXHAUSTED. Ending it
// rather than carrying on with a gap is what keeps kubelet correct: its
// evented PLEG only relists on a stream error (pkg/kubelet/pleg/evented.go:
// it forces a relist and subscribes again), while a silently lost
// CONTAINER_STOPPED would leave the Pod's cache stale until the slow
// fallback relist (5 min while evented PLEG is on). After five stream errors
// kubelet gives up on events for good and polls every second, which is
// correct too, only slower.
class ContainerEventHub final : public ContainerEventSink {
 public:
  class Subscription;

  // `store` and `clock` are borrowed; `dropped` (may be null) is a counter
  // family without labels.
  ContainerEventHub(const sandbox::SandboxStore* store, base::Clock* clock, base::MetricFamily* dropped = nullptr,
                    ContainerEventHubOptions options = {});
  ~ContainerEventHub() override;
  ContainerEventHub(const ContainerEventHub&) = delete;
  ContainerEventHub& operator=(const ContainerEventHub&) = delete;

  void Publish(ContainerEventType type, std::string_view container_id, std::string_view sandbox_id) override;

  // A subscriber seeing every event published from now on; null once Close()d.
  // `who` names it in logs (the peer). Destroying it unsubscribes.
  std::unique_ptr<Subscription> Subscribe(std::string who);
  // The daemon's shutdown: every subscription ends (Wait answers kClosed at
  // once) and new ones are refused, so no open stream holds up the server.
  void Close();

  uint64_t dropped() const;
  size_t subscribers() const;

 private:
  struct Queue;
  void Unsubscribe(const Queue* q);
  // Appends to one queue, or counts a drop; true when this drop overflowed it.
  bool Offer(Queue& q, const pb::ContainerEventResponse& ev);

  const sandbox::SandboxStore* const store_;
  base::Clock* const clock_;
  base::MetricFamily* const dropped_metric_;
  const ContainerEventHubOptions options_;

  // Publish order: held across the snapshot (a memory read) and the
  // enqueueing, never across a gRPC write.
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<Queue>> queues_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int64_t last_created_at_ ABSL_GUARDED_BY(mu_) = 0;
  // Every event dropped for any subscriber, gone ones included.
  std::atomic<uint64_t> dropped_total_{0};
};

class ContainerEventHub::Subscription {
 public:
  enum class Next { kEvent, kTimeout, kOverflow, kClosed };
  ~Subscription();  // unsubscribes
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // The next event, waiting up to `timeout`. kOverflow: events were dropped
  // for this subscriber (end the stream); kClosed: the hub shut down.
  Next Wait(absl::Duration timeout, pb::ContainerEventResponse* out);
  // An event from elsewhere into this queue (the router's upstream stream),
  // bounded and counted like the hub's own.
  void Offer(const pb::ContainerEventResponse& ev);
  uint64_t dropped() const;

 private:
  friend class ContainerEventHub;
  Subscription(ContainerEventHub* hub, std::shared_ptr<Queue> q) : hub_(hub), q_(std::move(q)) {}
  ContainerEventHub* const hub_;
  const std::shared_ptr<Queue> q_;
};

// The body of a GetContainerEvents stream over `sub`: sends the headers at
// once (the subscription is in place when the client sees them), then writes each event with
// no lock held, until the client cancels (CANCELLED), the subscriber
// overflows (RESOURCE_EXHAUSTED) or the hub closes (UNAVAILABLE, as
// containerd answers when its subscription ends). Checks for cancellation
// every `poll`.
grpc::Status ServeContainerEvents(grpc::ServerContext* ctx, grpc::ServerWriter<pb::ContainerEventResponse>* writer,
                                  ContainerEventHub::Subscription* sub, absl::Duration poll = absl::Milliseconds(200));

}  // namespace kvcri::cri
