// The VM's cgroup in the Pod lifecycle: planned at create, joined before the guest runs, removed after, OOM kills reported.
#include <algorithm>

#include "gtest/gtest.h"
#include "gmock/gmock.h"
#include "test/fakes/cri_harness.h"
#include "test/fakes/fake_cgroup_placer.h"

namespace kvcri::cri {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

class PodCgroupTest : public CriHarness {
 protected:
  PodCgroupTest() {
    add_deps_ = [this](RuntimeDeps& d) { d.cgroups = &cgroups_; };
  }

  std::string StartedVm(const std::string& cgroup_parent, std::string* pod) {
    pb::RunPodSandboxRequest req;
    *req.mutable_config() = PodConfig("web");
    if (!cgroup_parent.empty()) req.mutable_config()->mutable_linux()->set_cgroup_parent(cgroup_parent);
    req.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse resp;
    EXPECT_TRUE(service_->RunPodSandbox(nullptr, &req, &resp).ok());
    *pod = resp.pod_sandbox_id();
    std::string ctr;
    EXPECT_TRUE(CreateVm(*pod, "example.com/vm:1", &ctr).ok());
    return ctr;
  }
  sandbox::ContainerRecord Record(const std::string& id) {
    absl::StatusOr<sandbox::ContainerRecord> r = store_->GetContainer(id);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : sandbox::ContainerRecord{};
  }
  static size_t IndexOf(const std::vector<std::string>& calls, const std::string& call) {
    return static_cast<size_t>(std::find(calls.begin(), calls.end(), call) - calls.begin());
  }

  kvcri::testing::FakeCgroupPlacer cgroups_;
};

TEST_F(PodCgroupTest, TheVmJoinsACgroupBelowThePodsBeforeTheGuestRuns) {
  std::string pod;
  const std::string ctr = StartedVm("/kubepods/burstable/poduid-web", &pod);
  const std::string path = "/kubepods/burstable/poduid-web/kvcri-" + ctr;
  // Recorded at create, before anything is made.
  EXPECT_EQ(Record(ctr).cgroup_path, path);
  EXPECT_TRUE(cgroups_.Calls().empty());
  ASSERT_TRUE(Start(ctr).ok());
  EXPECT_THAT(cgroups_.Calls(), Contains("Place " + path + " 1000 1001"));
  // QEMU (created paused) was asked for its processes, placed, then resumed.
  const std::vector<std::string> calls = hv_.Calls();
  const size_t processes = IndexOf(calls, "Processes kvcri-" + ctr);
  ASSERT_LT(processes, calls.size());
  EXPECT_LT(IndexOf(calls, "Create kvcri-" + ctr), processes);
  EXPECT_LT(processes, IndexOf(calls, "Resume kvcri-" + ctr));
}

TEST_F(PodCgroupTest, APodWithoutACgroupParentUsesTheDefaultParent) {
  std::string pod;
  const std::string ctr = StartedVm("", &pod);
  EXPECT_EQ(Record(ctr).cgroup_path, "/kubevirt-cri/kvcri-" + ctr);
}

TEST_F(PodCgroupTest, AnUnusableCgroupParentIsRefusedAtRunPodSandboxNamingTheField) {
  pb::RunPodSandboxRequest req;
  *req.mutable_config() = PodConfig("web");
  req.mutable_config()->mutable_linux()->set_cgroup_parent("/kubepods/../etc");
  req.set_runtime_handler("kubevirt");
  pb::RunPodSandboxResponse resp;
  grpc::Status s = service_->RunPodSandbox(nullptr, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("linux.cgroup_parent"));
  EXPECT_TRUE(store_->ListSandboxes().empty());
}

TEST_F(PodCgroupTest, AFailedPlacementFailsTheStartAndTakesTheVmDown) {
  std::string pod;
  const std::string ctr = StartedVm("/kubepods/poduid-web", &pod);
  {
    absl::MutexLock l(&cgroups_.mu);
    cgroups_.place_error = absl::PermissionDeniedError("write cgroup.procs: EACCES");
  }
  grpc::Status s = Start(ctr);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.error_message(), HasSubstr("cgroup"));
  EXPECT_FALSE(hv_.Has("kvcri-" + ctr));
  pb::ContainerStatus st = Status(ctr);
  EXPECT_EQ(st.state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(st.reason(), "StartError");
  EXPECT_THAT(cgroups_.Calls(), Contains("Remove /kubepods/poduid-web/kvcri-" + ctr));
}

TEST_F(PodCgroupTest, TheCgroupGoesWhenTheVmExitsAndAgainAtRemove) {
  std::string pod;
  const std::string ctr = StartedVm("/kubepods/poduid-web", &pod);
  const std::string path = "/kubepods/poduid-web/kvcri-" + ctr;
  ASSERT_TRUE(Start(ctr).ok());
  ASSERT_TRUE(cgroups_.Placed(path));
  {
    absl::MutexLock l(&cgroups_.mu);
    cgroups_.busy_removals = 2;  // virtiofsd still exiting: waited for briefly
  }
  hv_.SetStatus("kvcri-" + ctr, {runtime::VmPhase::kShutoff, 0, "Completed"});
  EXPECT_EQ(Status(ctr).state(), pb::CONTAINER_EXITED);
  // The exit may have been settled by the monitor's event thread, still
  // waiting out the busy answers when Status returns.
  for (int i = 0; i < 200 && cgroups_.Placed(path); ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_FALSE(cgroups_.Placed(path));
  std::vector<std::string> calls = cgroups_.Calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "Remove " + path), 3);  // two busy answers, then gone
  ASSERT_TRUE(RemoveCtr(ctr).ok());
  calls = cgroups_.Calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "Remove " + path), 4);  // RemoveContainer makes sure
}

TEST_F(PodCgroupTest, ARemoveThatCannotDeleteTheCgroupKeepsTheRecordForARetry) {
  std::string pod;
  const std::string ctr = StartedVm("/kubepods/poduid-web", &pod);
  ASSERT_TRUE(Start(ctr).ok());
  {
    absl::MutexLock l(&cgroups_.mu);
    cgroups_.remove_error = absl::PermissionDeniedError("rmdir: EACCES");
  }
  EXPECT_FALSE(RemoveCtr(ctr).ok());
  EXPECT_TRUE(store_->GetContainer(ctr).ok());
  {
    absl::MutexLock l(&cgroups_.mu);
    cgroups_.remove_error = absl::OkStatus();
  }
  EXPECT_TRUE(RemoveCtr(ctr).ok());
  EXPECT_FALSE(store_->GetContainer(ctr).ok());
  EXPECT_FALSE(cgroups_.Placed("/kubepods/poduid-web/kvcri-" + ctr));
}

TEST_F(PodCgroupTest, AVmKilledForThePodsMemoryLimitIsOomKilled137) {
  std::string pod;
  const std::string ctr = StartedVm("/kubepods/poduid-web", &pod);
  ASSERT_TRUE(Start(ctr).ok());
  {
    absl::MutexLock l(&cgroups_.mu);
    cgroups_.samples["/kubepods/poduid-web/kvcri-" + ctr].oom_kills = 1;
  }
  hv_.SetStatus("kvcri-" + ctr, {runtime::VmPhase::kShutoff, 1, "Crashed"});
  pb::ContainerStatus st = Status(ctr);
  EXPECT_EQ(st.state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 137);
  EXPECT_EQ(st.reason(), "OOMKilled");
  EXPECT_THAT(st.message(), HasSubstr("memory limit"));
}

TEST_F(PodCgroupTest, AnExitWithoutOomKillsKeepsItsOwnCode) {
  std::string pod;
  const std::string ctr = StartedVm("/kubepods/poduid-web", &pod);
  ASSERT_TRUE(Start(ctr).ok());
  {
    absl::MutexLock l(&cgroups_.mu);
    cgroups_.samples["/kubepods/poduid-web/kvcri-" + ctr].oom_kills = 0;
  }
  hv_.SetStatus("kvcri-" + ctr, {runtime::VmPhase::kShutoff, 1, "Crashed"});
  pb::ContainerStatus st = Status(ctr);
  EXPECT_EQ(st.exit_code(), 1);
  EXPECT_EQ(st.reason(), "Crashed");
}

}  // namespace
}  // namespace kvcri::cri
