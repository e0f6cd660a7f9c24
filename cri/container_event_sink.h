// ContainerEventSink: the proto-free seam through which the Pod orchestrator reports container lifecycle changes.
#pragma once

#include <string_view>

namespace kvcri::cri {

// The four changes CRI's GetContainerEvents reports (ContainerEventType).
enum class ContainerEventType { kCreated, kStarted, kStopped, kDeleted };

// What PodLifecycle calls right after a change is on disk and in memory; the
// implementation (ContainerEventHub, cri/container_events.h) reads the Pod's
// state from the store at that moment. `container_id` equals `sandbox_id` for
// an event about the sandbox itself, as containerd sends them. Publish never
// blocks on a subscriber and must not call back into PodLifecycle.
class ContainerEventSink {
 public:
  virtual ~ContainerEventSink() = default;
  virtual void Publish(ContainerEventType type, std::string_view container_id, std::string_view sandbox_id) = 0;
};

}  // namespace kvcri::cri
