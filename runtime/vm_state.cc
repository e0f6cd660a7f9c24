// VmStatusFromLibvirtState: libvirt's domain state and reason as CRI phase, exit code and reason.
#include "runtime/vm_state.h"

#include <libvirt/libvirt.h>

namespace kvcri::runtime {

VmStatus VmStatusFromLibvirtState(int state, int reason) {
  switch (state) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
    case VIR_DOMAIN_SHUTDOWN:  // shutting down: still running until QEMU exits
      return {VmPhase::kRunning, 0, ""};
    case VIR_DOMAIN_PAUSED:
      // QEMU stops the guest when a disk write fails on the host (ENOSPC
      // with the default werror=enospc): not our pause, and not running.
      if (reason == VIR_DOMAIN_PAUSED_IOERROR) return {VmPhase::kPaused, 0, kIoErrorReason};
      return {VmPhase::kPaused, 0, ""};
    case VIR_DOMAIN_PMSUSPENDED:
      return {VmPhase::kPaused, 0, ""};
    case VIR_DOMAIN_CRASHED:
      return {VmPhase::kCrashed, 139, "Crashed"};
    case VIR_DOMAIN_SHUTOFF:
      switch (reason) {
        case VIR_DOMAIN_SHUTOFF_SHUTDOWN:
          return {VmPhase::kShutoff, 0, "Completed"};
        case VIR_DOMAIN_SHUTOFF_DESTROYED:
          return {VmPhase::kShutoff, 137, "Killed"};
        case VIR_DOMAIN_SHUTOFF_CRASHED:
          return {VmPhase::kShutoff, 139, "Crashed"};
        case VIR_DOMAIN_SHUTOFF_FAILED:
          return {VmPhase::kShutoff, 128, "StartError"};
        case VIR_DOMAIN_SHUTOFF_DAEMON:
          return {VmPhase::kShutoff, 255, "Lost"};
        default:
          return {VmPhase::kShutoff, 255, "Unknown"};
      }
    default:
      return {VmPhase::kOther, 0, ""};
  }
}

}  // namespace kvcri::runtime
