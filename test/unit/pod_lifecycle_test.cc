// PodLifecycle with blocking and failing fakes: no Pod waits behind another's slow call, kubelet's retries
// create nothing twice, failed teardown keeps the record until a retry finishes it, exits come from events.
#include <algorithm>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test/fakes/cri_harness.h"

namespace kvcri::cri {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kQuick = absl::Milliseconds(50);

class PodLifecycleTest : public CriHarness {
 protected:
  // Runs `fn` and expects it to return within kQuick.
  template <typename Fn>
  void ExpectQuick(const char* what, Fn fn) {
    absl::Time t0 = absl::Now();
    fn();
    absl::Duration took = absl::Now() - t0;
    EXPECT_LT(took, kQuick) << what << " took " << absl::FormatDuration(took);
  }
  pb::PodSandboxStatus PodStatus(const std::string& id) {
    pb::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(id);
    pb::PodSandboxStatusResponse resp;
    EXPECT_TRUE(service_->PodSandboxStatus(nullptr, &req, &resp).ok());
    return resp.status();
  }
  int CountCalls(const std::vector<std::string>& calls, const std::string& call) {
    return static_cast<int>(std::count(calls.begin(), calls.end(), call));
  }
  // The only sandbox the store holds (a failed RunPodSandbox returns no ID).
  sandbox::SandboxRecord OnlySandbox() {
    std::vector<sandbox::SandboxRecord> all = store_->ListSandboxes();
    EXPECT_EQ(all.size(), 1u);
    return all.empty() ? sandbox::SandboxRecord{} : all[0];
  }
  bool IpAllocated() {
    absl::MutexLock l(&cni_.mu);
    return !cni_.allocated.empty();
  }
  // Polls memory-only ListContainers until `want` or `timeout`.
  bool ListedBecomes(const std::string& id, pb::ContainerState want, absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (ListedState(id) == want) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return ListedState(id) == want;
  }
};

TEST_F(PodLifecycleTest, SlowCniAddOfOnePodDoesNotDelayAnotherPod) {
  std::string b_pod;
  std::string b_ctr = RunningPodVm("b", &b_pod);
  cni_.gate_pod = "a";
  cni_.add_gate.Close();
  std::string a_pod;
  std::thread slow([&] { EXPECT_TRUE(RunPod("a", &a_pod).ok()); });
  cni_.add_gate.AwaitWaiting(1);  // Pod a is inside its CNI ADD

  std::string c_pod, c_ctr;
  ExpectQuick("RunPodSandbox of another Pod", [&] { EXPECT_TRUE(RunPod("c", &c_pod).ok()); });
  ExpectQuick("CreateContainer", [&] { EXPECT_TRUE(CreateVm(c_pod, "example.com/vm:1", &c_ctr).ok()); });
  ExpectQuick("StartContainer", [&] { EXPECT_TRUE(Start(c_ctr).ok()); });
  ExpectQuick("PodSandboxStatus", [&] { EXPECT_EQ(PodStatus(b_pod).state(), pb::SANDBOX_READY); });
  ExpectQuick("ContainerStatus", [&] { EXPECT_EQ(Status(b_ctr).state(), pb::CONTAINER_RUNNING); });
  ExpectQuick("StopContainer", [&] { EXPECT_TRUE(StopCtr(b_ctr, 0).ok()); });
  ExpectQuick("StopPodSandbox", [&] { EXPECT_TRUE(StopPod(b_pod).ok()); });
  ExpectQuick("RemovePodSandbox", [&] { EXPECT_TRUE(RemovePod(b_pod).ok()); });

  cni_.add_gate.Open();
  slow.join();
  EXPECT_EQ(PodStatus(a_pod).state(), pb::SANDBOX_READY);
}

TEST_F(PodLifecycleTest, SlowGracefulStopOfOnePodDoesNotDelayAnotherPod) {
  clock_ = &real_clock_;
  Restart();
  std::string a_pod, b_pod;
  std::string a_ctr = RunningPodVm("a", &a_pod);
  std::string b_ctr = RunningPodVm("b", &b_pod);
  {
    absl::MutexLock l(&hv_.mu);
    hv_.ignore_power_button = true;  // guest a never powers off by itself
  }
  absl::Time t0 = absl::Now();
  std::thread slow([&] { EXPECT_TRUE(StopCtr(a_ctr, 2).ok()); });
  absl::SleepFor(absl::Milliseconds(100));  // a is inside its grace period

  std::string c_pod, c_ctr;
  ExpectQuick("RunPodSandbox", [&] { EXPECT_TRUE(RunPod("c", &c_pod).ok()); });
  ExpectQuick("CreateContainer", [&] { EXPECT_TRUE(CreateVm(c_pod, "example.com/vm:1", &c_ctr).ok()); });
  ExpectQuick("StartContainer", [&] { EXPECT_TRUE(Start(c_ctr).ok()); });
  ExpectQuick("ContainerStatus of a itself", [&] { EXPECT_EQ(Status(a_ctr).state(), pb::CONTAINER_RUNNING); });
  ExpectQuick("PodSandboxStatus of b", [&] { EXPECT_EQ(PodStatus(b_pod).state(), pb::SANDBOX_READY); });
  ExpectQuick("StopContainer of b", [&] { EXPECT_TRUE(StopCtr(b_ctr, 0).ok()); });
  ExpectQuick("RemoveContainer of b", [&] { EXPECT_TRUE(RemoveCtr(b_ctr).ok()); });

  slow.join();
  EXPECT_GE(absl::Now() - t0, absl::Seconds(2));  // the grace was honoured, then forced
  pb::ContainerStatus st = Status(a_ctr);
  EXPECT_EQ(st.state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(st.reason(), "Killed");
}

TEST_F(PodLifecycleTest, GracefulStopReturnsAsSoonAsTheGuestPowersOff) {
  clock_ = &real_clock_;
  Restart();
  std::string pod;
  std::string ctr = RunningPodVm("a", &pod);
  {
    absl::MutexLock l(&hv_.mu);
    hv_.ignore_power_button = true;
  }
  absl::Time t0 = absl::Now();
  std::thread stop([&] { EXPECT_TRUE(StopCtr(ctr, 30).ok()); });
  absl::SleepFor(absl::Milliseconds(100));
  // The guest's OS shuts down: libvirt's event wakes the waiting stop.
  hv_.SetStatus("kvcri-" + ctr, {runtime::VmPhase::kShutoff, 0, "Completed"});
  stop.join();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(2));
  pb::ContainerStatus st = Status(ctr);
  EXPECT_EQ(st.state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 0);
  EXPECT_EQ(st.reason(), "Completed");
  EXPECT_THAT(hv_.Calls(), ::testing::Not(::testing::Contains("Destroy kvcri-" + ctr)));
}

TEST_F(PodLifecycleTest, GraceRunsOutThenTheVmIsForcedOff) {
  std::string pod;
  std::string ctr = RunningPodVm("a", &pod);
  {
    absl::MutexLock l(&hv_.mu);
    hv_.ignore_power_button = true;
  }
  // Manual clock: the 30 s grace passes at once, with the power button
  // pressed again along the way (a booting guest loses presses).
  ASSERT_TRUE(StopCtr(ctr, 30).ok());
  std::vector<std::string> calls = hv_.Calls();
  EXPECT_GE(CountCalls(calls, "PowerButton kvcri-" + ctr), 2);
  EXPECT_EQ(CountCalls(calls, "Destroy kvcri-" + ctr), 1);
  EXPECT_EQ(Status(ctr).reason(), "Killed");
}

TEST_F(PodLifecycleTest, RetryOfAnInFlightRunPodSandboxReturnsTheSameSandboxAndCreatesNothingTwice) {
  cni_.add_gate.Close();
  std::string first, retry;
  std::thread slow([&] { EXPECT_TRUE(RunPod("web", &first).ok()); });
  cni_.add_gate.AwaitWaiting(1);
  // kubelet's deadline passed; it sends the same request again.
  std::thread again([&] { EXPECT_TRUE(RunPod("web", &retry).ok()); });
  absl::SleepFor(absl::Milliseconds(50));
  cni_.add_gate.Open();
  slow.join();
  again.join();
  EXPECT_EQ(first, retry);
  EXPECT_EQ(store_->SandboxCount(), 1u);
  std::vector<std::string> calls = net_log_.Take();
  EXPECT_EQ(CountCalls(calls, "cni ADD " + first), 1);
  absl::MutexLock l(&netns_.mu);
  EXPECT_EQ(netns_.pinned.size(), 1u);
}

TEST_F(PodLifecycleTest, FailedCniDelDuringRollbackKeepsTheRecordAndRemovePodSandboxReleasesTheIp) {
  tap_.wire_error = absl::InternalError("tc: redirect failed");
  cni_.del_error = absl::UnavailableError("plugin \"host-local\": store locked");
  std::string pod;
  grpc::Status s = RunPod("web", &pod);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL);
  // The IP is still allocated: the record stays (NOTREADY, removing) so
  // that someone can finish the job.
  EXPECT_TRUE(IpAllocated());
  sandbox::SandboxRecord kept = OnlySandbox();
  EXPECT_EQ(kept.phase, sandbox::Phase::kRemoving);
  EXPECT_EQ(kept.state, sandbox::SandboxState::kNotReady);
  EXPECT_TRUE(*netns_.Exists(kept.id));  // the retried DEL may need it

  cni_.del_error = absl::OkStatus();
  ASSERT_TRUE(RemovePod(kept.id).ok());
  EXPECT_FALSE(IpAllocated());
  EXPECT_EQ(store_->SandboxCount(), 0u);
  EXPECT_FALSE(*netns_.Exists(kept.id));
}

TEST_F(PodLifecycleTest, FailedCniDelDuringRollbackIsFinishedByTheNextStartUp) {
  tap_.wire_error = absl::InternalError("tc: redirect failed");
  cni_.del_error = absl::UnavailableError("plugin timed out");
  std::string pod;
  EXPECT_FALSE(RunPod("web", &pod).ok());
  EXPECT_TRUE(IpAllocated());
  cni_.del_error = absl::OkStatus();
  Restart();
  EXPECT_FALSE(IpAllocated());
  EXPECT_EQ(store_->SandboxCount(), 0u);
}

TEST_F(PodLifecycleTest, FailedCniDelDuringRollbackIsRetriedByTheSweep) {
  tap_.wire_error = absl::InternalError("tc: redirect failed");
  cni_.del_error = absl::UnavailableError("plugin timed out");
  std::string pod;
  EXPECT_FALSE(RunPod("web", &pod).ok());
  pods_->Sweep();  // still failing: kept, retried later with backoff
  EXPECT_EQ(store_->SandboxCount(), 1u);
  cni_.del_error = absl::OkStatus();
  pods_->Sweep();  // backing off: not yet
  EXPECT_EQ(store_->SandboxCount(), 1u);
  manual_clock_.Advance(absl::Seconds(11));
  pods_->Sweep();
  EXPECT_EQ(store_->SandboxCount(), 0u);
  EXPECT_FALSE(IpAllocated());
}

TEST_F(PodLifecycleTest, FailedCniDelDuringStopPodSandboxKeepsTheRecordAndItsIp) {
  std::string pod;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  cni_.del_error = absl::UnavailableError("plugin timed out");
  grpc::Status s = StopPod(pod);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  pb::PodSandboxStatus st = PodStatus(pod);
  EXPECT_EQ(st.state(), pb::SANDBOX_NOTREADY);
  EXPECT_EQ(st.network().ip(), "10.0.0.2");  // not released, still reported
  EXPECT_TRUE(IpAllocated());
  EXPECT_FALSE(RemovePod(pod).ok());  // still failing: still kept
  EXPECT_EQ(store_->SandboxCount(), 1u);

  cni_.del_error = absl::OkStatus();
  ASSERT_TRUE(RemovePod(pod).ok());
  EXPECT_FALSE(IpAllocated());
  EXPECT_EQ(store_->SandboxCount(), 0u);
  ASSERT_TRUE(RemovePod(pod).ok());  // twice: unknown is fine
}

TEST_F(PodLifecycleTest, FailedNetnsRemovalKeepsTheRecordForARetry) {
  std::string pod;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  {
    absl::MutexLock l(&netns_.mu);
    netns_.remove_error = absl::PermissionDeniedError("umount: busy");
  }
  EXPECT_FALSE(RemovePod(pod).ok());
  EXPECT_EQ(store_->SandboxCount(), 1u);
  {
    absl::MutexLock l(&netns_.mu);
    netns_.remove_error = absl::OkStatus();
  }
  ASSERT_TRUE(RemovePod(pod).ok());
  EXPECT_EQ(store_->SandboxCount(), 0u);
}

TEST_F(PodLifecycleTest, FailedDomainRemovalKeepsTheContainerUntilTheSweepFinishesIt) {
  std::string pod;
  std::string ctr = RunningPodVm("web", &pod);
  {
    absl::MutexLock l(&hv_.mu);
    hv_.remove_error = absl::UnavailableError("libvirt: connection reset");
  }
  EXPECT_EQ(RemoveCtr(ctr).error_code(), grpc::StatusCode::UNAVAILABLE);
  absl::StatusOr<sandbox::ContainerRecord> kept = store_->GetContainer(ctr);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->phase, sandbox::Phase::kRemoving);
  {
    absl::MutexLock l(&hv_.mu);
    hv_.remove_error = absl::OkStatus();
  }
  pods_->Sweep();
  EXPECT_FALSE(store_->GetContainer(ctr).ok());
  EXPECT_FALSE(hv_.Has("kvcri-" + ctr));
}

TEST_F(PodLifecycleTest, FailedStartThatCannotRemoveTheDomainLeavesItForRemoveContainer) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  {
    absl::MutexLock l(&hv_.mu);
    hv_.resume_error = absl::InternalError("qemu: resume failed");
    hv_.remove_error = absl::UnavailableError("libvirt down");
  }
  EXPECT_FALSE(Start(ctr).ok());
  EXPECT_EQ(Status(ctr).reason(), "StartError");
  EXPECT_TRUE(hv_.Has("kvcri-" + ctr));
  {
    absl::MutexLock l(&hv_.mu);
    hv_.remove_error = absl::OkStatus();
  }
  ASSERT_TRUE(RemoveCtr(ctr).ok());
  EXPECT_FALSE(hv_.Has("kvcri-" + ctr));
}

TEST_F(PodLifecycleTest, AGuestPowerOffIsExitedFromTheEventWithoutAPoll) {
  std::string pod;
  std::string ctr = RunningPodVm("web", &pod);
  int lists_before;
  {
    absl::MutexLock l(&hv_.mu);
    lists_before = hv_.list_calls;
  }
  hv_.SetStatus("kvcri-" + ctr, {runtime::VmPhase::kShutoff, 0, "Completed"});
  EXPECT_TRUE(ListedBecomes(ctr, pb::CONTAINER_EXITED, absl::Seconds(1)));
  absl::MutexLock l(&hv_.mu);
  EXPECT_EQ(hv_.list_calls, lists_before);  // no sweep was needed
}

TEST_F(PodLifecycleTest, WithoutEventsTheSafetySweepCatchesTheExit) {
  {
    absl::MutexLock l(&hv_.mu);
    hv_.events_enabled = false;
  }
  std::string pod;
  std::string ctr = RunningPodVm("web", &pod);
  hv_.SetStatus("kvcri-" + ctr, {runtime::VmPhase::kCrashed, 139, "Crashed"});
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(ListedState(ctr), pb::CONTAINER_RUNNING);  // nobody told us yet
  manual_clock_.Advance(pod_options_.monitor.safety_poll);
  pods_->SweepSoon();
  EXPECT_TRUE(ListedBecomes(ctr, pb::CONTAINER_EXITED, absl::Seconds(2)));
  EXPECT_EQ(Status(ctr).exit_code(), 139);
}

TEST_F(PodLifecycleTest, RemoveContainerWaitsForAStartInFlightOnTheSameContainer) {
  clock_ = &real_clock_;
  Restart();
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  hv_.create_gate.Close();
  std::thread start([&] { EXPECT_TRUE(Start(ctr).ok()); });
  hv_.create_gate.AwaitWaiting(1);
  std::thread remove([&] { EXPECT_TRUE(RemoveCtr(ctr).ok()); });
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_TRUE(store_->GetContainer(ctr).ok());  // waiting for the start
  hv_.create_gate.Open();
  start.join();
  remove.join();
  EXPECT_FALSE(store_->GetContainer(ctr).ok());
  EXPECT_FALSE(hv_.Has("kvcri-" + ctr));  // no VM outlives its record
}

TEST_F(PodLifecycleTest, ACallThatWaitsTooLongForTheSamePodFailsNamingTheCallInFlight) {
  pod_options_.op_wait = absl::Milliseconds(100);
  clock_ = &real_clock_;
  Restart();
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  hv_.create_gate.Close();
  std::thread start([&] { EXPECT_TRUE(Start(ctr).ok()); });
  hv_.create_gate.AwaitWaiting(1);
  grpc::Status s = StopPod(pod);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("StartContainer is in progress"));
  hv_.create_gate.Open();
  start.join();
  EXPECT_TRUE(StopPod(pod).ok());
}

TEST_F(PodLifecycleTest, ACrashBetweenCreateAndResumeIsResumedAtStartUp) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  ASSERT_TRUE(Start(ctr).ok());
  // As if the daemon died right after marking RUNNING, before Resume.
  {
    absl::MutexLock l(&hv_.mu);
    hv_.vms["kvcri-" + ctr].status.phase = runtime::VmPhase::kPaused;
  }
  Restart();
  EXPECT_EQ(hv_.PhaseOf("kvcri-" + ctr), runtime::VmPhase::kRunning);
  EXPECT_EQ(Status(ctr).state(), pb::CONTAINER_RUNNING);
}

}  // namespace
}  // namespace kvcri::cri
