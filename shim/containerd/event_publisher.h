// EventPublisher: the shim's task events, forwarded in order to containerd over ttrpc (Events/Forward).
#pragma once

// containerd 1.6's shim library publishes over ttrpc to TTRPC_ADDRESS,
// service containerd.services.events.ttrpc.v1.Events, method Forward, with
// an Envelope whose timestamp must be set (docs/containerd-shim.md section
// 1). Like it, we retry a failed forward (5 attempts, growing delays) and
// reconnect when the connection is gone; unlike it, one worker thread sends
// the events strictly in the order they were published, so containerd never
// sees a TaskExit before its TaskStart. An event containerd refuses outright
// (INVALID_ARGUMENT) is logged and dropped, not retried.
//
// Bounded: at most `max_queued` events wait (a containerd that is down for
// long must not grow the shim); past that Publish refuses with
// RESOURCE_EXHAUSTED and the event is counted as dropped.

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "shim/ttrpc/client.h"

namespace kvcri::shim::containerd {

struct EventPublisherOptions {
  size_t max_queued = 1024;
  int attempts = 5;
  absl::Duration first_retry_delay = absl::Milliseconds(100);  // doubles per attempt
  absl::Duration call_timeout = absl::Seconds(5);
};

class EventPublisher {
 public:
  // `ttrpc_socket`: containerd's ttrpc socket path (TTRPC_ADDRESS, without
  // "unix://"); `ns`: the containerd namespace of every envelope.
  EventPublisher(std::string ttrpc_socket, std::string ns, EventPublisherOptions options = {});
  EventPublisher(const EventPublisher&) = delete;
  EventPublisher& operator=(const EventPublisher&) = delete;
  // Gives queued events up to 2 s, then stops the worker.
  ~EventPublisher();

  // Queues `event` (a serialized containerd.events message whose Any
  // type_url is `type_url`) for `topic`, stamped now.
  absl::Status Publish(std::string_view topic, std::string_view type_url, std::string event);

  // Waits until every event published so far was forwarded or given up;
  // false after `timeout`.
  bool Flush(absl::Duration timeout);

  uint64_t forwarded() const;
  uint64_t dropped() const;

 private:
  struct Queued {
    std::string topic;
    std::string type_url;
    std::string event;
    absl::Time stamped;
  };

  void Run();
  // One event, retried; the status of the last attempt.
  absl::Status Forward(const Queued& q);
  // Waits `d` unless stopping; false when stopping.
  bool SleepUnlessStopping(absl::Duration d);

  const std::string socket_;
  const std::string ns_;
  const EventPublisherOptions options_;
  std::unique_ptr<ttrpc::Client> client_;  // the worker's alone

  mutable absl::Mutex mu_;
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;  // the worker holds an event out of the queue
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t forwarded_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread worker_;
};

}  // namespace kvcri::shim::containerd
