// UpdateContainerResources on VM containers: vCPU hot-plug and guest onlining, the balloon, maximums, refused fields, cgroup CPU limits, status.
#include <algorithm>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/fakes/cri_harness.h"
#include "test/fakes/fake_cgroup_placer.h"

namespace kvcri::cri {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kMiB = 1 << 20;

class PodResizeTest : public CriHarness {
 protected:
  PodResizeTest() {
    add_deps_ = [this](RuntimeDeps& d) { d.cgroups = &cgroups_; };
  }

  // A Pod whose VM container asks for `cpus` CPUs (quota/period) and
  // `memory_mib` of memory, created (and started unless told otherwise).
  std::string Vm(int64_t cpus, int64_t memory_mib, bool start = true) {
    std::string pod;
    EXPECT_TRUE(RunPod("web", &pod).ok());
    pb::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod);
    req.mutable_config()->mutable_metadata()->set_name("vm");
    req.mutable_config()->mutable_image()->set_image("example.com/vm:1");
    pb::LinuxContainerResources* r = req.mutable_config()->mutable_linux()->mutable_resources();
    r->set_cpu_period(100000);
    r->set_cpu_quota(cpus * 100000);
    r->set_cpu_shares(cpus * 1024);
    r->set_memory_limit_in_bytes(memory_mib * kMiB);
    pb::CreateContainerResponse resp;
    grpc::Status s = service_->CreateContainer(nullptr, &req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (start) {
      EXPECT_TRUE(Start(resp.container_id()).ok());
    }
    return resp.container_id();
  }
  static pb::UpdateContainerResourcesRequest Request(const std::string& id, int64_t cpu_quota, int64_t memory_mib) {
    pb::UpdateContainerResourcesRequest req;
    req.set_container_id(id);
    req.mutable_linux()->set_cpu_period(100000);
    req.mutable_linux()->set_cpu_quota(cpu_quota);
    req.mutable_linux()->set_memory_limit_in_bytes(memory_mib * kMiB);
    return req;
  }
  grpc::Status Update(const pb::UpdateContainerResourcesRequest& req) {
    pb::UpdateContainerResourcesResponse resp;
    return service_->UpdateContainerResources(nullptr, &req, &resp);
  }
  sandbox::ContainerRecord Record(const std::string& id) {
    absl::StatusOr<sandbox::ContainerRecord> r = store_->GetContainer(id);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : sandbox::ContainerRecord{};
  }
  // A qemu-guest-agent whose guest sees the fake's live vCPUs (cpu0 online,
  // hot-plugged ones offline until guest-set-vcpus onlines them).
  void GuestAgent(const std::string& domain) {
    absl::MutexLock l(&hv_.mu);
    hv_.agent_reply = [this, domain](std::string_view, std::string_view cmd,
                                     absl::Duration) -> absl::StatusOr<std::string> {
      nlohmann::json j = nlohmann::json::parse(cmd);
      const int present = hv_.LiveVcpus(domain);
      while (static_cast<int>(guest_online_.size()) < present) guest_online_.push_back(guest_online_.empty());
      if (j["execute"] == "guest-get-vcpus") {
        nlohmann::json list = nlohmann::json::array();
        for (int i = 0; i < present; ++i) {
          list.push_back({{"logical-id", i}, {"online", guest_online_[i]}, {"can-offline", i != 0}});
        }
        return nlohmann::json{{"return", list}}.dump();
      }
      if (j["execute"] == "guest-set-vcpus") {
        for (const nlohmann::json& v : j["arguments"]["vcpus"]) guest_online_[v["logical-id"].get<int>()] = v["online"];
        return nlohmann::json{{"return", j["arguments"]["vcpus"].size()}}.dump();
      }
      return absl::UnimplementedError("unexpected command");
    };
  }
  int GuestOnline() const { return static_cast<int>(std::count(guest_online_.begin(), guest_online_.end(), true)); }

  kvcri::testing::FakeCgroupPlacer cgroups_;
  std::vector<bool> guest_online_;
};

TEST_F(PodResizeTest, OneToTwoVcpusHotPlugsOnlinesInTheGuestAndRecords) {
  config_.vm.max_vcpus = 4;
  const std::string ctr = Vm(1, 512);
  const std::string domain = "kvcri-" + ctr;
  // The domain has room to grow: 4 slots, 1 present.
  EXPECT_EQ(hv_.SpecOf(domain).max_vcpus, 4);
  EXPECT_EQ(hv_.SpecOf(domain).vcpus, 1);
  GuestAgent(domain);

  grpc::Status s = Update(Request(ctr, 200000, 512));
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(hv_.Calls(), Contains("PlugVcpus " + domain + " 2"));
  EXPECT_EQ(hv_.LiveVcpus(domain), 2);
  // The offline vCPU was onlined through qemu-guest-agent.
  bool set = false;
  for (const std::string& c : hv_.AgentCommands()) {
    if (c.find("guest-set-vcpus") != std::string::npos) {
      set = true;
      EXPECT_THAT(c, HasSubstr("\"logical-id\":1"));
      EXPECT_THAT(c, HasSubstr("\"online\":true"));
    }
  }
  EXPECT_TRUE(set) << "no guest-set-vcpus sent";
  EXPECT_EQ(GuestOnline(), 2);
  EXPECT_EQ(Record(ctr).vcpus, 2);
  EXPECT_EQ(Record(ctr).max_vcpus, 4);
  EXPECT_EQ(Record(ctr).resources.cpu_quota, 200000);
  EXPECT_EQ(Status(ctr).state(), pb::CONTAINER_RUNNING);
}

TEST_F(PodResizeTest, ShrinkingOfflinesVcpusInTheGuestAndGrowingOnlinesThemAgain) {
  const std::string ctr = Vm(1, 512);
  const std::string domain = "kvcri-" + ctr;
  GuestAgent(domain);
  ASSERT_TRUE(Update(Request(ctr, 300000, 512)).ok());
  EXPECT_EQ(GuestOnline(), 3);
  // Down to one: nothing is unplugged (see runtime/hypervisor.h), the guest
  // runs on cpu0 only, and the record says 1.
  ASSERT_TRUE(Update(Request(ctr, 100000, 512)).ok());
  EXPECT_EQ(hv_.LiveVcpus(domain), 3);
  EXPECT_EQ(GuestOnline(), 1);
  EXPECT_EQ(Record(ctr).vcpus, 1);
  // Back to two: the plugged vCPU 1 is onlined, vCPU 2 stays offline.
  ASSERT_TRUE(Update(Request(ctr, 200000, 512)).ok());
  EXPECT_EQ(hv_.LiveVcpus(domain), 3);
  EXPECT_EQ(GuestOnline(), 2);
  EXPECT_TRUE(guest_online_[1]);
  EXPECT_FALSE(guest_online_[2]);
}

TEST_F(PodResizeTest, MemoryGoesDownWithTheBalloonAndBackUpToTheBootSize) {
  const std::string ctr = Vm(1, 512);
  const std::string domain = "kvcri-" + ctr;
  ASSERT_TRUE(Update(Request(ctr, 100000, 384)).ok());
  EXPECT_THAT(hv_.Calls(), Contains("SetMemory " + domain + " 384"));
  EXPECT_EQ(hv_.LiveMemoryMib(domain), 384);
  EXPECT_EQ(Record(ctr).memory_mib, 384);
  EXPECT_EQ(Record(ctr).max_memory_mib, 512);  // the boot size stays the maximum
  EXPECT_EQ(Status(ctr).resources().linux().memory_limit_in_bytes(), 384 * kMiB);

  ASSERT_TRUE(Update(Request(ctr, 100000, 512)).ok());
  EXPECT_EQ(hv_.LiveMemoryMib(domain), 512);
  EXPECT_EQ(Record(ctr).memory_mib, 512);
}

// crictl update sends only the flags given, the rest 0: as with containerd,
// those keep what is in force instead of meaning the default size.
TEST_F(PodResizeTest, FieldsLeftZeroKeepWhatIsInForce) {
  const std::string ctr = Vm(2, 384);
  const std::string domain = "kvcri-" + ctr;
  ASSERT_TRUE(Update(Request(ctr, 100000, 0)).ok());  // CPU only
  EXPECT_EQ(Record(ctr).memory_mib, 384);
  EXPECT_EQ(Status(ctr).resources().linux().memory_limit_in_bytes(), 384 * kMiB);
  EXPECT_EQ(Record(ctr).vcpus, 1);
  pb::UpdateContainerResourcesRequest memory_only = Request(ctr, 0, 256);
  memory_only.mutable_linux()->set_cpu_period(0);
  ASSERT_TRUE(Update(memory_only).ok());
  EXPECT_EQ(hv_.LiveMemoryMib(domain), 256);
  EXPECT_EQ(Record(ctr).vcpus, 1);
  EXPECT_EQ(Status(ctr).resources().linux().cpu_quota(), 100000);
}

TEST_F(PodResizeTest, BeyondTheMaximumIsInvalidArgumentNamingTheLimitAndChangesNothing) {
  config_.vm.max_vcpus = 4;
  const std::string ctr = Vm(1, 512);
  const std::string domain = "kvcri-" + ctr;

  grpc::Status s = Update(Request(ctr, 500000, 512));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("linux.cpu_quota"));
  EXPECT_THAT(s.error_message(), HasSubstr("up to 4"));

  s = Update(Request(ctr, 100000, 1024));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("linux.memory_limit_in_bytes"));
  EXPECT_THAT(s.error_message(), HasSubstr("boot memory of 512 MiB"));

  s = Update(Request(ctr, 100000, 16));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("linux.memory_limit_in_bytes"));
  EXPECT_THAT(s.error_message(), HasSubstr("vm.min_memory_mib"));

  EXPECT_THAT(hv_.Calls(), Not(Contains(HasSubstr("PlugVcpus"))));
  EXPECT_THAT(hv_.Calls(), Not(Contains(HasSubstr("SetMemory"))));
  EXPECT_EQ(Record(ctr).vcpus, 1);
  EXPECT_EQ(Record(ctr).memory_mib, 512);
  EXPECT_EQ(hv_.PhaseOf(domain), runtime::VmPhase::kRunning);
}

TEST_F(PodResizeTest, FieldsAVmCannotTakeAreRefusedByNameAndThePodKeepsRunning) {
  const std::string ctr = Vm(1, 512);
  pb::UpdateContainerResourcesRequest req = Request(ctr, 100000, 512);
  pb::HugepageLimit* h = req.mutable_linux()->add_hugepage_limits();
  h->set_page_size("2MB");
  h->set_limit(0);  // what kubelet sends for a Pod without hugepages
  ASSERT_TRUE(Update(req).ok());
  h->set_limit(64 * kMiB);
  grpc::Status s = Update(req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("linux.hugepage_limits[\"2MB\"]"));

  req = Request(ctr, 100000, 512);
  req.mutable_linux()->set_memory_swap_limit_in_bytes(512 * kMiB);  // kubelet's "no swap" on v1
  ASSERT_TRUE(Update(req).ok());
  req.mutable_linux()->set_memory_swap_limit_in_bytes(1024 * kMiB);
  s = Update(req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("linux.memory_swap_limit_in_bytes"));

  req = Request(ctr, 100000, 512);
  (*req.mutable_linux()->mutable_unified())["memory.swap.max"] = "0";
  ASSERT_TRUE(Update(req).ok());
  (*req.mutable_linux()->mutable_unified())["cpu.idle"] = "1";
  s = Update(req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("linux.unified[\"cpu.idle\"]"));

  req = Request(ctr, 100000, 512);
  req.mutable_linux()->set_cpu_period(50);
  s = Update(req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("linux.cpu_period"));

  EXPECT_EQ(hv_.PhaseOf("kvcri-" + ctr), runtime::VmPhase::kRunning);
  EXPECT_EQ(Status(ctr).state(), pb::CONTAINER_RUNNING);
}

TEST_F(PodResizeTest, ARequestThatChangesNothingSucceeds) {
  const std::string ctr = Vm(1, 512);
  const sandbox::ContainerRecord before = Record(ctr);
  pb::UpdateContainerResourcesRequest req = Request(ctr, 100000, 512);
  req.mutable_linux()->set_cpu_shares(1024);
  ASSERT_TRUE(Update(req).ok());
  EXPECT_EQ(Record(ctr), before);
  // No linux resources at all: nothing to do.
  pb::UpdateContainerResourcesRequest empty;
  empty.set_container_id(ctr);
  EXPECT_TRUE(Update(empty).ok());
}

TEST_F(PodResizeTest, StatusReportsTheResourcesInForce) {
  const std::string ctr = Vm(1, 512);
  pb::LinuxContainerResources r = Status(ctr).resources().linux();
  EXPECT_EQ(r.cpu_quota(), 100000);
  EXPECT_EQ(r.cpu_period(), 100000);
  EXPECT_EQ(r.cpu_shares(), 1024);
  EXPECT_EQ(r.memory_limit_in_bytes(), 512 * kMiB);

  pb::UpdateContainerResourcesRequest req = Request(ctr, 150000, 448);
  req.mutable_linux()->set_cpu_shares(1536);
  req.mutable_linux()->set_cpuset_cpus("0-1");
  req.mutable_linux()->set_cpuset_mems("0");
  ASSERT_TRUE(Update(req).ok());
  r = Status(ctr).resources().linux();
  EXPECT_EQ(r.cpu_quota(), 150000);
  EXPECT_EQ(r.cpu_shares(), 1536);
  EXPECT_EQ(r.memory_limit_in_bytes(), 448 * kMiB);
  EXPECT_EQ(r.cpuset_cpus(), "0-1");
  EXPECT_EQ(r.cpuset_mems(), "0");
  EXPECT_EQ(Record(ctr).vcpus, 2);  // ceil(1.5)
}

TEST_F(PodResizeTest, CpuLimitsGoToTheVmsCgroupAtStartAndOnUpdateButNeverTheMemoryLimit) {
  const std::string ctr = Vm(1, 512);
  const std::string path = "/kubevirt-cri/kvcri-" + ctr;
  EXPECT_THAT(cgroups_.Calls(),
              Contains("SetLimits " + path + " quota=100000 period=100000 shares=1024 cpus= mems= memory=0"));
  pb::UpdateContainerResourcesRequest req = Request(ctr, 200000, 384);
  req.mutable_linux()->set_cpu_shares(2048);
  req.mutable_linux()->set_cpuset_cpus("1");
  ASSERT_TRUE(Update(req).ok());
  EXPECT_THAT(cgroups_.Calls(),
              Contains("SetLimits " + path + " quota=200000 period=100000 shares=2048 cpus=1 mems= memory=0"));
}

TEST_F(PodResizeTest, AFailedLiveChangeLeavesTheRecordAndARetryConverges) {
  const std::string ctr = Vm(1, 512);
  const std::string domain = "kvcri-" + ctr;
  {
    absl::MutexLock l(&hv_.mu);
    hv_.set_memory_error = absl::InternalError("balloon gone");
  }
  // vCPUs went live, the balloon did not: the record keeps the old size.
  grpc::Status s = Update(Request(ctr, 200000, 384));
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(hv_.LiveVcpus(domain), 2);
  EXPECT_EQ(Record(ctr).vcpus, 1);
  EXPECT_EQ(Record(ctr).memory_mib, 512);
  {
    absl::MutexLock l(&hv_.mu);
    hv_.set_memory_error = absl::OkStatus();
  }
  ASSERT_TRUE(Update(Request(ctr, 200000, 384)).ok());
  EXPECT_EQ(Record(ctr).vcpus, 2);
  EXPECT_EQ(Record(ctr).memory_mib, 384);
  EXPECT_EQ(hv_.LiveMemoryMib(domain), 384);
}

TEST_F(PodResizeTest, ACreatedContainerBootsWithTheNewSize) {
  const std::string ctr = Vm(1, 512, /*start=*/false);
  ASSERT_TRUE(Update(Request(ctr, 300000, 768)).ok());
  EXPECT_THAT(hv_.Calls(), Not(Contains(HasSubstr("PlugVcpus"))));
  ASSERT_TRUE(Start(ctr).ok());
  const runtime::VmSpec spec = hv_.SpecOf("kvcri-" + ctr);
  EXPECT_EQ(spec.vcpus, 3);
  EXPECT_EQ(spec.memory_mib, 768);
  EXPECT_EQ(Record(ctr).max_memory_mib, 768);
}

TEST_F(PodResizeTest, AnExitedContainerIsFailedPrecondition) {
  const std::string ctr = Vm(1, 512);
  ASSERT_TRUE(StopCtr(ctr, 0).ok());
  grpc::Status s = Update(Request(ctr, 200000, 512));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr(ctr));
}

}  // namespace
}  // namespace kvcri::cri
