// VmStatusFromLibvirtState: libvirt states and reasons as CRI exit codes and reasons.
#include <gtest/gtest.h>
#include <libvirt/libvirt.h>

#include "runtime/vm_state.h"

namespace kvcri::runtime {
namespace {

TEST(VmStatusFromLibvirtState, GuestPowerOffIsExitZeroCompleted) {
  VmStatus s = VmStatusFromLibvirtState(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_SHUTDOWN);
  EXPECT_EQ(s.phase, VmPhase::kShutoff);
  EXPECT_EQ(s.exit_code, 0);
  EXPECT_EQ(s.reason, "Completed");
}

TEST(VmStatusFromLibvirtState, DestroyIsKilled137) {
  VmStatus s = VmStatusFromLibvirtState(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_DESTROYED);
  EXPECT_EQ(s.exit_code, 137);
  EXPECT_EQ(s.reason, "Killed");
}

TEST(VmStatusFromLibvirtState, CrashesAre139) {
  EXPECT_EQ(VmStatusFromLibvirtState(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_CRASHED).exit_code, 139);
  VmStatus s = VmStatusFromLibvirtState(VIR_DOMAIN_CRASHED, VIR_DOMAIN_CRASHED_PANICKED);
  EXPECT_EQ(s.phase, VmPhase::kCrashed);
  EXPECT_EQ(s.exit_code, 139);
  EXPECT_EQ(s.reason, "Crashed");
}

TEST(VmStatusFromLibvirtState, FailedStartIsStartError) {
  VmStatus s = VmStatusFromLibvirtState(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_FAILED);
  EXPECT_EQ(s.exit_code, 128);
  EXPECT_EQ(s.reason, "StartError");
}

TEST(VmStatusFromLibvirtState, UnknownShutoffIs255) {
  EXPECT_EQ(VmStatusFromLibvirtState(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_UNKNOWN).exit_code, 255);
  EXPECT_EQ(VmStatusFromLibvirtState(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_DAEMON).reason, "Lost");
}

TEST(VmStatusFromLibvirtState, RunningAndPaused) {
  EXPECT_EQ(VmStatusFromLibvirtState(VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_BOOTED).phase, VmPhase::kRunning);
  EXPECT_EQ(VmStatusFromLibvirtState(VIR_DOMAIN_BLOCKED, 0).phase, VmPhase::kRunning);
  EXPECT_EQ(VmStatusFromLibvirtState(VIR_DOMAIN_SHUTDOWN, 0).phase, VmPhase::kRunning);
  EXPECT_EQ(VmStatusFromLibvirtState(VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER).phase, VmPhase::kPaused);
  EXPECT_EQ(VmStatusFromLibvirtState(VIR_DOMAIN_NOSTATE, 0).phase, VmPhase::kOther);
}

TEST(VmStatusFromLibvirtState, PausedByAHostIoErrorSaysSo) {
  VmStatus io = VmStatusFromLibvirtState(VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_IOERROR);
  EXPECT_EQ(io.phase, VmPhase::kPaused);
  EXPECT_EQ(io.reason, kIoErrorReason);
  // Our own pause (created paused, resumed once the console is followed) is not one.
  EXPECT_EQ(VmStatusFromLibvirtState(VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER).reason, "");
}

}  // namespace
}  // namespace kvcri::runtime
