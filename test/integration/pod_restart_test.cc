// kill -9 of the daemon loses no Pod: VMs keep running, logs keep growing,
// and a VM destroyed while the daemon was down is reported EXITED.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

void StartHeartbeatPod(TestDaemon& d, const std::string& name, std::string* pod_id, std::string* ctr_id) {
  pb::PodSandboxConfig config = SandboxConfig(name, d.log_dir());
  (*config.mutable_annotations())["kubevirt-cri.io/kernel-cmdline"] = "console=ttyS0 panic=-1 quiet kvcri.heartbeat=1";
  ASSERT_TRUE(StartPodWithConfig(d, config, kKernelImage, pod_id, ctr_id));
}

TEST(PodRestart, Kill9LosesNoPodAndReportsVmDestroyedWhileDown) {
  RequireIntegrationEnvironment(true);
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  std::string pod_a, ctr_a, pod_b, ctr_b;
  StartHeartbeatPod(d, "survivor", &pod_a, &ctr_a);
  StartHeartbeatPod(d, "victim", &pod_b, &ctr_b);
  std::string log_a = GetContainerStatus(d, ctr_a).status().log_path();
  std::string log_b = GetContainerStatus(d, ctr_b).status().log_path();
  ASSERT_TRUE(WaitForFileContains(log_a, "KUBEVIRT-CRI-GUEST-HEARTBEAT", std::chrono::seconds(180)));
  ASSERT_TRUE(WaitForFileContains(log_b, "KUBEVIRT-CRI-GUEST-HEARTBEAT", std::chrono::seconds(180)));

  d.Kill9();
  // While we are down: the victim's QEMU dies behind our back.
  std::vector<int> victim = ProcessesMatching("kvcri-" + ctr_b);
  ASSERT_FALSE(victim.empty()) << "no QEMU process for the victim";
  for (int pid : victim) ::kill(pid, SIGKILL);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // The survivor keeps running without us.
  ASSERT_FALSE(ProcessesMatching("kvcri-" + ctr_a).empty()) << "the survivor's VM died with the daemon";

  d.Start();
  pb::ListPodSandboxResponse lp;
  ASSERT_TRUE(d.runtime().ListPodSandbox(Ctx().get(), pb::ListPodSandboxRequest(), &lp).ok());
  EXPECT_EQ(lp.items_size(), 2);
  pb::ContainerStatusResponse a = GetContainerStatus(d, ctr_a);
  EXPECT_EQ(a.status().state(), pb::CONTAINER_RUNNING) << d.DaemonLog();
  pb::ContainerStatusResponse b = GetContainerStatus(d, ctr_b);
  EXPECT_EQ(b.status().state(), pb::CONTAINER_EXITED) << d.DaemonLog();
  EXPECT_NE(b.status().exit_code(), 0);

  // The survivor's log keeps growing, with no line copied twice.
  int before = CountCriLogLines(log_a, "KUBEVIRT-CRI-GUEST-HEARTBEAT");
  std::this_thread::sleep_for(std::chrono::seconds(4));
  int after = CountCriLogLines(log_a, "KUBEVIRT-CRI-GUEST-HEARTBEAT");
  EXPECT_GT(after, before) << ReadFileOrEmpty(log_a);
  EXPECT_EQ(CountCriLogLines(log_a, "KUBEVIRT-CRI-GUEST-READY"), 1) << "a line was copied twice after restart";

  RemovePod(d, pod_a);
  RemovePod(d, pod_b);
  ExpectNoLeftovers(d);
}

// Records this build cannot read (written by a newer version, "version": 99)
// are not missing records: the VM keeps running across the restart, the Pod
// is NOTREADY and the container UNKNOWN with the reason; removing the Pod
// still removes the VM.
TEST(PodRestart, UnreadableRecordsKeepTheirRunningVmAcrossARestart) {
  RequireIntegrationEnvironment(true);
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  std::string pod, ctr;
  StartHeartbeatPod(d, "newer", &pod, &ctr);
  std::string log = GetContainerStatus(d, ctr).status().log_path();
  ASSERT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-HEARTBEAT", std::chrono::seconds(180)));
  const pid_t qemu = QemuPidOf("kvcri-" + ctr);
  ASSERT_GT(qemu, 0);

  ASSERT_EQ(d.Terminate(), 0);
  const std::filesystem::path dir = d.root() / "sandboxes" / pod;
  for (const std::filesystem::path& p : {dir / "sandbox.json", dir / "containers" / (ctr + ".json")}) {
    std::string text = ReadFileOrEmpty(p);
    std::string bumped = std::regex_replace(text, std::regex(R"("version"\s*:\s*1\b)"), "\"version\": 99");
    ASSERT_NE(bumped, text) << p;
    std::ofstream(p, std::ios::trunc) << bumped;
  }
  d.Start();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(QemuPidOf("kvcri-" + ctr), qemu) << "the VM of an unreadable record was touched\n" << d.DaemonLog();

  pb::PodSandboxStatusRequest sreq;
  sreq.set_pod_sandbox_id(pod);
  pb::PodSandboxStatusResponse sresp;
  ASSERT_TRUE(d.runtime().PodSandboxStatus(Ctx().get(), sreq, &sresp).ok());
  EXPECT_EQ(sresp.status().state(), pb::SANDBOX_NOTREADY);
  pb::ContainerStatus cs = GetContainerStatus(d, ctr).status();
  EXPECT_EQ(cs.state(), pb::CONTAINER_UNKNOWN);
  EXPECT_EQ(cs.reason(), "RecordUnreadable");
  EXPECT_THAT(cs.message(), ::testing::HasSubstr("unsupported version 99"));

  RemovePod(d, pod);
  EXPECT_EQ(QemuPidOf("kvcri-" + ctr), -1) << "removing the Pod left its VM running";
  ExpectNoLeftovers(d);
}

TEST(PodRestart, SandboxRecordsSurviveRestartWithTheSameIds) {
  RequireIntegrationEnvironment(false);
  TestDaemon d;
  d.Start();
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = SandboxConfig("keep", d.log_dir());
  pb::RunPodSandboxResponse rr;
  ASSERT_TRUE(d.runtime().RunPodSandbox(Ctx().get(), run, &rr).ok());
  d.Kill9();
  d.Start();
  pb::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(rr.pod_sandbox_id());
  pb::PodSandboxStatusResponse resp;
  ASSERT_TRUE(d.runtime().PodSandboxStatus(Ctx().get(), req, &resp).ok());
  EXPECT_EQ(resp.status().state(), pb::SANDBOX_READY);
  EXPECT_EQ(resp.status().metadata().name(), "keep");
  // kubelet's retry of the same request finds the same sandbox, not a second one.
  pb::RunPodSandboxResponse again;
  grpc::Status s = d.runtime().RunPodSandbox(Ctx().get(), run, &again);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(again.pod_sandbox_id(), rr.pod_sandbox_id());
  // The name is still taken for any other config.
  (*run.mutable_config()->mutable_labels())["changed"] = "yes";
  s = d.runtime().RunPodSandbox(Ctx().get(), run, &again);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  RemovePod(d, rr.pod_sandbox_id());
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
