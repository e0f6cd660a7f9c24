// VmMonitor: turns libvirt lifecycle events (and a slow safety poll) into container exits.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/base/clock.h"
#include "runtime/hypervisor.h"

namespace kvcri::cri {

struct VmMonitorOptions {
  // Subscribe to the hypervisor's lifecycle events. Off: only the poll runs.
  bool use_events = true;
  // The safety net: every interval, `on_sweep` checks every running VM
  // (about two libvirt calls per VM), catching what an event missed.
  absl::Duration safety_poll = absl::Seconds(10);
};

// One thread. Events arrive on the hypervisor's event thread, which only
// queues the domain name (a set: a guest rebooting in a loop cannot grow the
// queue beyond one entry per domain); this thread hands each to `on_domain`.
// Callbacks run on this thread only, never concurrently with each other.
class VmMonitor {
 public:
  VmMonitor(runtime::Hypervisor* hypervisor, base::Clock* clock, VmMonitorOptions options,
            std::function<void(const std::string& domain)> on_domain, std::function<void()> on_sweep);
  ~VmMonitor();  // Stop()
  VmMonitor(const VmMonitor&) = delete;
  VmMonitor& operator=(const VmMonitor&) = delete;

  // Subscribes to events; events queue up until Run() starts the thread, so
  // subscribe before reconciling state and nothing falls between the two.
  // A driver without events is logged and leaves the poll alone.
  void Subscribe();
  // Starts the thread.
  void Run();
  void Stop();
  // Makes the thread sweep now (tests; after a clock jump).
  void SweepSoon();
  bool events_active() const;

 private:
  void Enqueue(const runtime::VmEvent& e);
  void Loop();

  runtime::Hypervisor* const hypervisor_;
  base::Clock* const clock_;
  const VmMonitorOptions options_;
  const std::function<void(const std::string&)> on_domain_;
  const std::function<void()> on_sweep_;
  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::string> pending_ ABSL_GUARDED_BY(mu_);
  bool sweep_now_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool events_active_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace kvcri::cri
