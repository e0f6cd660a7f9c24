// Shim conversions and sweeps: usage as cgroups Metrics, OCI LinuxResources, image labels, earlier boots' Pod state.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "shim/containerd/image_labels.h"
#include "shim/containerd/names.h"
#include "shim/containerd/proto/cgroups_v1.pb.h"
#include "shim/containerd/proto/cgroups_v2.pb.h"
#include "shim/containerd/shim_pod.h"
#include "shim/containerd/spec_drafts.h"
#include "shim/containerd/task_metrics.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::shim::containerd {
namespace {

cri::ContainerUsage Usage() {
  cri::ContainerUsage u;
  u.cpu = cri::CpuUsage{absl::Now(), 5'000'000'123, std::nullopt};
  cri::MemoryUsage m;
  m.usage_bytes = 300 << 20;
  m.working_set_bytes = 200 << 20;
  m.rss_bytes = 150 << 20;
  m.page_faults = 77;
  m.major_page_faults = 3;
  m.limit_bytes = 512 << 20;
  u.memory = m;
  u.processes = 2;
  return u;
}

// containerd's CRI: working set = usage - (total_)inactive_file.
TEST(ContainerdMetrics, V1CarriesCpuAndAWorkingSetContainerdDerivesAsOurs) {
  google::protobuf::Any any = MetricsFromUsage(Usage(), MetricsVersion::kCgroupsV1);
  EXPECT_EQ(any.type_url(), kCgroupsV1MetricsTypeUrl);
  pb::cgroups::v1::Metrics m;
  ASSERT_TRUE(m.ParseFromString(any.value()));
  EXPECT_EQ(m.cpu().usage().total(), 5'000'000'123u);
  EXPECT_EQ(m.memory().usage().usage() - m.memory().total_inactive_file(), uint64_t{200} << 20);
  EXPECT_EQ(m.memory().usage().limit(), uint64_t{512} << 20);
  EXPECT_EQ(m.memory().total_rss(), uint64_t{150} << 20);
  EXPECT_EQ(m.memory().total_pg_fault(), 77u);
  EXPECT_EQ(m.memory().total_pg_maj_fault(), 3u);
  EXPECT_EQ(m.pids().current(), 2u);
}

TEST(ContainerdMetrics, V2CarriesCpuInMicrosecondsAndTheSameWorkingSet) {
  google::protobuf::Any any = MetricsFromUsage(Usage(), MetricsVersion::kCgroupsV2);
  EXPECT_EQ(any.type_url(), kCgroupsV2MetricsTypeUrl);
  pb::cgroups::v2::Metrics m;
  ASSERT_TRUE(m.ParseFromString(any.value()));
  EXPECT_EQ(m.cpu().usage_usec(), 5'000'000u);
  EXPECT_EQ(m.memory().usage() - m.memory().inactive_file(), uint64_t{200} << 20);
  EXPECT_EQ(m.memory().usage_limit(), uint64_t{512} << 20);
  EXPECT_EQ(m.memory().anon(), uint64_t{150} << 20);
  EXPECT_EQ(m.pids().current(), 2u);
}

// The hypervisor fallback has a working set but no cgroup usage: containerd
// still needs a usage to subtract from.
TEST(ContainerdMetrics, AWorkingSetWithoutCgroupUsageIsTheUsage) {
  cri::ContainerUsage u;
  cri::MemoryUsage m;
  m.working_set_bytes = 100;
  u.memory = m;
  pb::cgroups::v1::Metrics v1;
  ASSERT_TRUE(v1.ParseFromString(MetricsFromUsage(u, MetricsVersion::kCgroupsV1).value()));
  EXPECT_EQ(v1.memory().usage().usage(), 100u);
  EXPECT_EQ(v1.memory().total_inactive_file(), 0u);
  EXPECT_FALSE(v1.has_cpu()) << "no CPU sample, no CPU stats";
}

TEST(ContainerdUpdate, OciLinuxResourcesBecomeCriResources) {
  absl::StatusOr<::runtime::v1::LinuxContainerResources> r = LinuxResourcesFromOciJson(
      R"({"cpu":{"shares":512,"quota":200000,"period":100000,"cpus":"0-1","mems":"0"},)"
      R"("memory":{"limit":268435456,"swap":268435456},"hugepageLimits":[{"pageSize":"2MB","limit":4194304}],)"
      R"("unified":{"memory.oom.group":"1"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->cpu_shares(), 512);
  EXPECT_EQ(r->cpu_quota(), 200000);
  EXPECT_EQ(r->cpu_period(), 100000);
  EXPECT_EQ(r->cpuset_cpus(), "0-1");
  EXPECT_EQ(r->cpuset_mems(), "0");
  EXPECT_EQ(r->memory_limit_in_bytes(), 268435456);
  EXPECT_EQ(r->memory_swap_limit_in_bytes(), 268435456);
  ASSERT_EQ(r->hugepage_limits_size(), 1);
  EXPECT_EQ(r->hugepage_limits(0).page_size(), "2MB");
  EXPECT_EQ(r->hugepage_limits(0).limit(), 4194304u);
  EXPECT_EQ(r->unified().at("memory.oom.group"), "1");
  EXPECT_EQ(LinuxResourcesFromOciJson("[1]").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LinuxResourcesFromOciJson("{").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvcri::shim::containerd

namespace kvcri::shim::containerd {
namespace {

TEST(ContainerdImageLabels, AManifestsConfigAnIndexsPlatformAndAConfigsLabels) {
  EXPECT_EQ(ConfigDigestOfManifest(R"({"config":{"digest":"sha256:abc","size":3},"layers":[]})").value(), "sha256:abc");
  EXPECT_EQ(ConfigDigestOfManifest(R"({"layers":[]})").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ConfigDigestOfManifest("[]").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlatformManifestOfIndex(R"({"manifests":[
      {"digest":"sha256:arm","platform":{"os":"linux","architecture":"arm64"}},
      {"digest":"sha256:amd","platform":{"os":"linux","architecture":"amd64"}}]})")
                .value(),
            "sha256:amd");
  EXPECT_EQ(PlatformManifestOfIndex(R"({"manifests":[{"digest":"sha256:only"}]})").value(), "sha256:only");
  EXPECT_EQ(PlatformManifestOfIndex(R"({"manifests":[{"digest":"sha256:arm","platform":{"os":"linux","architecture":"arm64"}}]})")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(IsIndexMediaType("application/vnd.oci.image.index.v1+json"));
  EXPECT_TRUE(IsIndexMediaType("application/vnd.docker.distribution.manifest.list.v2+json"));
  EXPECT_FALSE(IsIndexMediaType("application/vnd.oci.image.manifest.v1+json"));
  absl::StatusOr<std::map<std::string, std::string>> labels = LabelsOfImageConfig(
      R"({"architecture":"amd64","config":{"Labels":{"io.kubevirt-cri.cmdline":"console=ttyS0","n":1}}})");
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_EQ(*labels, (std::map<std::string, std::string>{{"io.kubevirt-cri.cmdline", "console=ttyS0"}}))
      << "a non-string label is not a label";
  EXPECT_TRUE(LabelsOfImageConfig(R"({"config":{}})")->empty());
  EXPECT_EQ(LabelsOfImageConfig("nope").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvcri::shim::containerd

namespace kvcri::shim::containerd {
namespace {

class ShimBootSweepTest : public testing::ScratchDirTest {};

// Pods' state from an earlier boot (their VMs are gone, containerd forgot
// them) is removed; this boot's and unmarked directories stay.
TEST_F(ShimBootSweepTest, StateFromAnEarlierBootIsRemovedAndThisBootsIsKept) {
  config::Config node;
  node.root = dir_ / "root";
  node.state_dir = dir_ / "run";
  for (const char* d : {"old", "new", "unmarked"}) {
    std::filesystem::create_directories(node.root / "shim" / d / "libvirt");
    std::filesystem::create_directories(node.state_dir / "shim" / d);
  }
  std::ofstream(node.root / "shim/old/boot_id") << "boot-1";
  std::ofstream(node.root / "shim/old.lock") << "";
  std::ofstream(node.root / "shim/new/boot_id") << "boot-2";
  SweepEarlierBoots(node, "boot-2");
  EXPECT_FALSE(std::filesystem::exists(node.root / "shim/old"));
  EXPECT_FALSE(std::filesystem::exists(node.state_dir / "shim/old"));
  EXPECT_FALSE(std::filesystem::exists(node.root / "shim/old.lock"));
  EXPECT_TRUE(std::filesystem::exists(node.root / "shim/new/libvirt"));
  EXPECT_TRUE(std::filesystem::exists(node.state_dir / "shim/new"));
  EXPECT_TRUE(std::filesystem::exists(node.root / "shim/unmarked"));
  SweepEarlierBoots(node, "");
  EXPECT_TRUE(std::filesystem::exists(node.root / "shim/new")) << "no boot id: nothing swept";
  EXPECT_FALSE(CurrentBootId().empty());
}

}  // namespace
}  // namespace kvcri::shim::containerd
