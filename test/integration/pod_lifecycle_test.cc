// A VM Pod through the whole CRI lifecycle against the real daemon, libvirt
// (embedded QEMU driver) and QEMU under TCG, in both boot modes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "test/client/host_util.h"
#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

using ::testing::HasSubstr;

class PodLifecycleTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { RequireIntegrationEnvironment(/*need_guest_images=*/true); }
};

TEST_P(PodLifecycleTest, BootsLogsStopsAndRemovesLeavingNothing) {
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  const std::string image = GetParam();

  std::string pod_id, ctr_id;
  pb::PodSandboxConfig sandbox;
  ASSERT_TRUE(StartPod(d, "life", image, &pod_id, &ctr_id, nullptr, &sandbox));
  EXPECT_EQ(pod_id.size(), 64u);
  EXPECT_EQ(ctr_id.size(), 64u);

  // The console reaches the CRI log file in CRI format.
  pb::ContainerStatusResponse st = GetContainerStatus(d, ctr_id);
  const std::string log_path = st.status().log_path();
  ASSERT_EQ(log_path, sandbox.log_directory() + "/vm/0.log");
  ASSERT_TRUE(WaitForFileContains(log_path, "KUBEVIRT-CRI-GUEST-READY", std::chrono::seconds(180)))
      << "log:\n" << ReadFileOrEmpty(log_path) << "\ndaemon:\n" << d.DaemonLog();
  EXPECT_EQ(CountCriLogLines(log_path, "KUBEVIRT-CRI-GUEST-READY"), 1) << ReadFileOrEmpty(log_path);

  st = GetContainerStatus(d, ctr_id);
  EXPECT_EQ(st.status().state(), pb::CONTAINER_RUNNING);
  EXPECT_GT(st.status().created_at(), 0);
  EXPECT_GE(st.status().started_at(), st.status().created_at());
  EXPECT_EQ(st.status().finished_at(), 0);
  EXPECT_EQ(st.status().image().image(), image);
  EXPECT_THAT(st.status().image_ref(), HasSubstr("sha256:"));
  EXPECT_EQ(st.status().labels().at("container"), "vm");
  EXPECT_EQ(st.status().annotations().at("test/container-annotation"), "yes");
  EXPECT_EQ(st.status().metadata().name(), "vm");

  pb::PodSandboxStatusRequest psr;
  psr.set_pod_sandbox_id(pod_id);
  pb::PodSandboxStatusResponse ps;
  ASSERT_TRUE(d.runtime().PodSandboxStatus(Ctx().get(), psr, &ps).ok());
  EXPECT_EQ(ps.status().state(), pb::SANDBOX_READY);
  EXPECT_EQ(ps.status().metadata().uid(), "uid-life");
  EXPECT_EQ(ps.status().labels().at("app"), "life");
  EXPECT_EQ(ps.status().annotations().at("test/annotation"), "yes");
  EXPECT_EQ(ps.status().runtime_handler(), "kubevirt");

  // Graceful stop: ACPI power button, the guest powers itself off → exit 0.
  pb::StopContainerRequest stop;
  stop.set_container_id(ctr_id);
  stop.set_timeout(60);
  pb::StopContainerResponse stop_resp;
  grpc::Status s = d.runtime().StopContainer(Ctx(std::chrono::seconds(90)).get(), stop, &stop_resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  st = GetContainerStatus(d, ctr_id);
  EXPECT_EQ(st.status().state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(st.status().exit_code(), 0) << st.status().reason() << " " << st.status().message();
  EXPECT_EQ(st.status().reason(), "Completed");
  EXPECT_GT(st.status().finished_at(), st.status().started_at());
  EXPECT_TRUE(WaitForFileContains(log_path, "KUBEVIRT-CRI-GUEST-POWEROFF", std::chrono::seconds(5)));

  // Stop again: idempotent.
  s = d.runtime().StopContainer(Ctx().get(), stop, &stop_resp);
  EXPECT_TRUE(s.ok()) << s.error_message();

  pb::RemoveContainerRequest rm;
  rm.set_container_id(ctr_id);
  pb::RemoveContainerResponse rm_resp;
  ASSERT_TRUE(d.runtime().RemoveContainer(Ctx().get(), rm, &rm_resp).ok());
  EXPECT_TRUE(d.runtime().RemoveContainer(Ctx().get(), rm, &rm_resp).ok()) << "second remove must succeed";
  pb::ContainerStatusRequest csr;
  csr.set_container_id(ctr_id);
  pb::ContainerStatusResponse cs;
  EXPECT_EQ(d.runtime().ContainerStatus(Ctx().get(), csr, &cs).error_code(), grpc::StatusCode::NOT_FOUND);

  RemovePod(d, pod_id);
  RemovePod(d, pod_id);  // both calls again: idempotent
  ExpectNoLeftovers(d);
  // The log file is kubelet's: it stays.
  EXPECT_TRUE(std::filesystem::exists(log_path));
}

INSTANTIATE_TEST_SUITE_P(BootModes, PodLifecycleTest, ::testing::Values(kKernelImage, kDiskImage),
                         [](const auto& info) {
                           return std::string(info.param) == kKernelImage ? "KernelBoot" : "DiskBoot";
                         });

class PodExitTest : public ::testing::Test {
 protected:
  void SetUp() override { RequireIntegrationEnvironment(true); }

  // Starts a kernel-boot Pod whose cmdline (Pod annotation) adds `extra`.
  void StartWithCmdline(TestDaemon& d, const std::string& name, const std::string& extra, std::string* pod_id,
                        std::string* ctr_id) {
    pb::PodSandboxConfig config = SandboxConfig(name, d.log_dir());
    (*config.mutable_annotations())["kubevirt-cri.io/kernel-cmdline"] = "console=ttyS0 panic=-1 quiet " + extra;
    ASSERT_TRUE(StartPodWithConfig(d, config, kKernelImage, pod_id, ctr_id));
  }
};

// ListContainers answers from memory: it shows what the daemon settled on its
// own (from libvirt's event, or the poll), not what a Status call refreshed.
pb::ContainerState ListedState(TestDaemon& d, const std::string& ctr) {
  pb::ListContainersRequest req;
  req.mutable_filter()->set_id(ctr);
  pb::ListContainersResponse resp;
  if (!d.runtime().ListContainers(Ctx().get(), req, &resp).ok() || resp.containers_size() != 1) {
    return pb::CONTAINER_UNKNOWN;
  }
  return resp.containers(0).state();
}

// From the moment the VM's QEMU process is gone, how long until ListContainers
// says EXITED. The guest powers itself off (kvcri.exit) once booted.
absl::Duration ExitSeenAfter(TestDaemon& d, const std::string& ctr) {
  const std::string domain = "kvcri-" + ctr;
  pid_t qemu = QemuPidOf(domain);
  EXPECT_GT(qemu, 0) << "no QEMU process for " << domain;
  absl::Time deadline = absl::Now() + absl::Seconds(240);
  absl::Time gone = absl::InfiniteFuture();
  while (absl::Now() < deadline) {
    if (gone == absl::InfiniteFuture() && ::kill(qemu, 0) != 0) gone = absl::Now();
    if (ListedState(d, ctr) == pb::CONTAINER_EXITED) {
      // EXITED before the process was seen gone: it exited between two looks.
      return gone == absl::InfiniteFuture() ? absl::ZeroDuration() : absl::Now() - gone;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  ADD_FAILURE() << "container " << ctr << " never listed EXITED; log:\n" << d.DaemonLog();
  return absl::InfiniteDuration();
}

TEST_F(PodExitTest, AGuestPowerOffIsExitedWithinASecondFromTheLifecycleEvent) {
  TestDaemon d;  // state_poll_seconds stays 10: only the event can be this quick
  d.Start();
  ImportGuestImages(d);
  std::string pod, ctr;
  StartWithCmdline(d, "event", "kvcri.exit=1", &pod, &ctr);
  absl::Duration took = ExitSeenAfter(d, ctr);
  std::cerr << "EXITED listed " << absl::FormatDuration(took) << " after QEMU exited\n";
  EXPECT_LT(took, absl::Seconds(1)) << d.DaemonLog();
  EXPECT_EQ(GetContainerStatus(d, ctr).status().reason(), "Completed");
  RemovePod(d, pod);
  ExpectNoLeftovers(d);
}

TEST_F(PodExitTest, WithLifecycleEventsOffTheStatePollStillSeesTheExit) {
  TestDaemon::Options opts;
  opts.extra_config = "[libvirt]\nlifecycle_events = false\nstate_poll_seconds = 2\n";
  TestDaemon d(opts);
  d.Start();
  ImportGuestImages(d);
  std::string pod, ctr;
  StartWithCmdline(d, "polled", "kvcri.exit=1", &pod, &ctr);
  absl::Duration took = ExitSeenAfter(d, ctr);
  std::cerr << "EXITED listed " << absl::FormatDuration(took) << " after QEMU exited (poll only)\n";
  EXPECT_LT(took, absl::Seconds(2) + absl::Seconds(2));  // one poll interval, plus slack for a busy host
  EXPECT_EQ(GetContainerStatus(d, ctr).status().reason(), "Completed");
  RemovePod(d, pod);
  ExpectNoLeftovers(d);
}

TEST_F(PodExitTest, GuestPowerOffIsExitCodeZeroAndForcedStopIsNonZero) {
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  std::string exit_pod, exit_ctr, kill_pod, kill_ctr;
  StartWithCmdline(d, "exits", "kvcri.exit=1", &exit_pod, &exit_ctr);
  StartWithCmdline(d, "killed", "", &kill_pod, &kill_ctr);

  // The guest powers itself off: the monitor notices without any call of ours.
  ASSERT_TRUE(WaitForContainerState(d, exit_ctr, pb::CONTAINER_EXITED, std::chrono::seconds(180))) << d.DaemonLog();
  pb::ContainerStatusResponse st = GetContainerStatus(d, exit_ctr);
  EXPECT_EQ(st.status().exit_code(), 0);
  EXPECT_EQ(st.status().reason(), "Completed");

  pb::ListContainersRequest lr;
  lr.mutable_filter()->mutable_state()->set_state(pb::CONTAINER_EXITED);
  pb::ListContainersResponse lc;
  ASSERT_TRUE(d.runtime().ListContainers(Ctx().get(), lr, &lc).ok());
  ASSERT_EQ(lc.containers_size(), 1);
  EXPECT_EQ(lc.containers(0).id(), exit_ctr);

  // timeout 0: forced off at once.
  pb::StopContainerRequest stop;
  stop.set_container_id(kill_ctr);
  stop.set_timeout(0);
  pb::StopContainerResponse sresp;
  ASSERT_TRUE(d.runtime().StopContainer(Ctx().get(), stop, &sresp).ok());
  st = GetContainerStatus(d, kill_ctr);
  EXPECT_EQ(st.status().state(), pb::CONTAINER_EXITED);
  EXPECT_NE(st.status().exit_code(), 0);
  EXPECT_FALSE(st.status().reason().empty());

  RemovePod(d, exit_pod);
  RemovePod(d, kill_pod);
  ExpectNoLeftovers(d);
}

TEST_F(PodExitTest, ReopenContainerLogWritesToTheNewFile) {
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  std::string pod, ctr;
  StartWithCmdline(d, "rotate", "kvcri.heartbeat=1", &pod, &ctr);
  std::string log = GetContainerStatus(d, ctr).status().log_path();
  ASSERT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-HEARTBEAT", std::chrono::seconds(180)));
  // kubelet's rotation: rename, then ReopenContainerLog.
  std::filesystem::rename(log, log + ".1");
  pb::ReopenContainerLogRequest rr;
  rr.set_container_id(ctr);
  pb::ReopenContainerLogResponse rresp;
  grpc::Status s = d.runtime().ReopenContainerLog(Ctx().get(), rr, &rresp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-HEARTBEAT", std::chrono::seconds(30)));
  EXPECT_EQ(CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-READY"), 0) << "old lines must not be copied again";
  RemovePod(d, pod);
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
