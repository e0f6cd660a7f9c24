// The mapping of a libvirt domain's (state, reason) to what CRI reports for its container.
#pragma once

#include "runtime/hypervisor.h"

namespace kvcri::runtime {

// Maps libvirt's (state, reason) of a domain (virDomainGetState) to what CRI
// reports. A persistent domain keeps its shutoff reason after QEMU exited,
// also across daemon restarts, so this works for VMs that stopped while we
// were down.
//
//   running / blocked / shutdown (in progress)  kRunning
//   paused, reason IOERROR                      kPaused  "IOError"  a disk write failed on the host
//   paused (other reasons) / pmsuspended        kPaused
//   shutoff, reason SHUTDOWN   exit 0    "Completed"   guest powered off (ACPI or poweroff)
//   shutoff, reason DESTROYED  exit 137  "Killed"      forced off (Destroy, Shutdown past its grace)
//   shutoff, reason CRASHED    exit 139  "Crashed"     guest panic (pvpanic) or QEMU died
//   crashed (on_crash=preserve) exit 139 "Crashed"
//   shutoff, reason FAILED     exit 128  "StartError"  QEMU failed to start (like containerd's StartError)
//   shutoff, reason DAEMON     exit 255  "Lost"        QEMU vanished while libvirt was not watching
//   shutoff, other reasons     exit 255  "Unknown"     (never started, saved, migrated, snapshot)
VmStatus VmStatusFromLibvirtState(int state, int reason);

}  // namespace kvcri::runtime
