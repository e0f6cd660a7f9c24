// VmMonitor: event queue and safety-poll loop.
#include "cri/vm_monitor.h"

#include <vector>

#include "config/base/log.h"
#include "config/base/str.h"

namespace kvcri::cri {

VmMonitor::VmMonitor(runtime::Hypervisor* hypervisor, base::Clock* clock, VmMonitorOptions options,
                     std::function<void(const std::string&)> on_domain, std::function<void()> on_sweep)
    : hypervisor_(hypervisor),
      clock_(clock),
      options_(options),
      on_domain_(std::move(on_domain)),
      on_sweep_(std::move(on_sweep)) {}

VmMonitor::~VmMonitor() { Stop(); }

void VmMonitor::Subscribe() {
  if (!options_.use_events) {
    base::LogInfo("vm monitor: lifecycle events off by config; polling only",
                  {{"poll_ms", base::StrCat(absl::ToInt64Milliseconds(options_.safety_poll))}});
    return;
  }
  absl::Status s = hypervisor_->Subscribe([this](const runtime::VmEvent& e) { Enqueue(e); });
  if (!s.ok()) {
    base::LogWarn("vm monitor: no lifecycle events; exits are seen by the poll only",
                  {{"error", std::string(s.message())},
                   {"poll_ms", base::StrCat(absl::ToInt64Milliseconds(options_.safety_poll))}});
    return;
  }
  absl::MutexLock l(&mu_);
  events_active_ = true;
}

bool VmMonitor::events_active() const {
  absl::MutexLock l(&mu_);
  return events_active_;
}

void VmMonitor::Enqueue(const runtime::VmEvent& e) {
  absl::MutexLock l(&mu_);
  pending_.insert(e.name);
}

void VmMonitor::SweepSoon() {
  absl::MutexLock l(&mu_);
  sweep_now_ = true;
}

void VmMonitor::Run() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { Loop(); });
}

void VmMonitor::Stop() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  // The subscription outlives us only as a no-op: replace it.
  if (events_active()) hypervisor_->Subscribe(nullptr).IgnoreError();  // nothing to do if it fails
}

void VmMonitor::Loop() {
  absl::Time next_sweep = clock_->Now() + options_.safety_poll;
  while (true) {
    std::vector<std::string> domains;
    bool sweep = false;
    {
      absl::MutexLock l(&mu_);
      auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || sweep_now_ || !pending_.empty(); };
      // Real time bounds the wait; the clock decides whether a sweep is due,
      // so a test's clock jump plus SweepSoon() runs one at once.
      mu_.AwaitWithTimeout(absl::Condition(&work), std::max(absl::ZeroDuration(), next_sweep - clock_->Now()));
      if (stop_) return;
      domains.assign(pending_.begin(), pending_.end());
      pending_.clear();
      sweep = sweep_now_ || clock_->Now() >= next_sweep;
      sweep_now_ = false;
    }
    for (const std::string& d : domains) on_domain_(d);
    if (sweep) {
      on_sweep_();
      next_sweep = clock_->Now() + options_.safety_poll;
    }
  }
}

}  // namespace kvcri::cri
