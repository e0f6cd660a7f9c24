// Unit tests of SandboxDraftFromSpec: the spec containerd 1.6.20 writes for a sandbox task, and what is refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "shim/containerd/spec_drafts.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::shim::containerd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ContainerdSpecTest : public testing::ScratchDirTest {
 protected:
  // The shape containerd 1.6.20 wrote in shim_sandbox_test (trimmed).
  std::string Spec(const std::string& annotations_extra = "", const std::string& netns = "/var/run/netns/cni-1",
                   const std::string& cgroups = "/kubepods/besteffort/pod1/sb1") {
    std::ofstream(dir_ / "resolv.conf") << "# kubelet\nsearch default.svc.cluster.local svc.cluster.local\n"
                                           "nameserver 10.96.0.10\noptions ndots:5\n";
    return R"({"ociVersion":"1.0.2-dev","hostname":"web-0",
      "annotations":{"io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-id":"sb1",
        "io.kubernetes.cri.sandbox-log-directory":"/var/log/pods/default_web-0_u1",
        "io.kubernetes.cri.sandbox-name":"web-0","io.kubernetes.cri.sandbox-namespace":"default",
        "io.kubernetes.cri.sandbox-uid":"u1")" +
           annotations_extra + R"(},
      "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
        {"destination":"/etc/resolv.conf","type":"bind","source":")" +
           (dir_ / "resolv.conf").string() + R"(","options":["rbind","ro"]}],
      "linux":{"cgroupsPath":")" + cgroups + R"(","namespaces":[{"type":"pid"},{"type":"network","path":")" + netns +
           R"("}]}})";
  }
};

TEST_F(ContainerdSpecTest, ASandboxSpecBecomesTheDraftKubeletWouldHaveSent) {
  absl::StatusOr<cri::SandboxDraft> d =
      SandboxDraftFromSpec(Spec(R"(,"kubevirt-cri.io/firmware":"uefi")"), "kubevirt");
  ASSERT_TRUE(d.ok()) << d.status();
  const sandbox::SandboxRecord& r = d->record;
  EXPECT_EQ(d->runtime_handler, "kubevirt");
  EXPECT_EQ(r.metadata.name, "web-0");
  EXPECT_EQ(r.metadata.namespace_, "default");
  EXPECT_EQ(r.metadata.uid, "u1");
  EXPECT_EQ(r.log_directory, "/var/log/pods/default_web-0_u1");
  EXPECT_EQ(r.hostname, "web-0");
  EXPECT_EQ(r.netns_path, "/var/run/netns/cni-1");
  EXPECT_EQ(r.cgroup_parent, "/kubepods/besteffort/pod1");
  EXPECT_THAT(r.dns.servers, ElementsAre("10.96.0.10"));
  EXPECT_THAT(r.dns.searches, ElementsAre("default.svc.cluster.local", "svc.cluster.local"));
  EXPECT_THAT(r.dns.options, ElementsAre("ndots:5"));
  EXPECT_EQ(r.annotations, (std::map<std::string, std::string>{{"kubevirt-cri.io/firmware", "uefi"}}))
      << "the Pod's annotations, without containerd's own";
  EXPECT_FALSE(r.host_network);
}

TEST_F(ContainerdSpecTest, TheSystemdCgroupFormNamesItsSlice) {
  absl::StatusOr<cri::SandboxDraft> d =
      SandboxDraftFromSpec(Spec("", "/var/run/netns/cni-1", "kubepods-besteffort-pod1.slice:cri-containerd:sb1"), "kubevirt");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->record.cgroup_parent, "kubepods-besteffort-pod1.slice");
}

TEST_F(ContainerdSpecTest, SpecsThatAreNoCriSandboxOrHostNetworkedAreRefused) {
  EXPECT_EQ(SandboxDraftFromSpec("[1,2]", "kubevirt").status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<cri::SandboxDraft> plain = SandboxDraftFromSpec(R"({"annotations":{}})", "kubevirt");
  EXPECT_EQ(plain.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(plain.status().message()), HasSubstr("io.kubernetes.cri.sandbox-name"));
  absl::StatusOr<cri::SandboxDraft> hostnet = SandboxDraftFromSpec(Spec("", ""), "kubevirt");
  EXPECT_EQ(hostnet.status().code(), absl::StatusCode::kFailedPrecondition);
  // A resolv.conf that is far too big, or a symlink, is not read.
  std::string spec = Spec();
  std::ofstream(dir_ / "resolv.conf") << std::string(kMaxResolvConfBytes + 1, '#');
  EXPECT_EQ(SandboxDraftFromSpec(spec, "kubevirt").status().code(), absl::StatusCode::kInvalidArgument);
  std::filesystem::remove(dir_ / "resolv.conf");
  std::filesystem::create_symlink("/etc/hostname", dir_ / "resolv.conf");
  EXPECT_FALSE(SandboxDraftFromSpec(spec, "kubevirt").ok());
}

TEST(ContainerdResolvConf, ReadsTheLinesKubeletWritesAndTheLastSearchWins) {
  sandbox::DnsConfig dns = ParseResolvConf(
      "nameserver 1.1.1.1\n; comment\nsearch a b\nnameserver fd00::53\nsearch c\noptions ndots:2 edns0\ngarbage\n");
  EXPECT_THAT(dns.servers, ElementsAre("1.1.1.1", "fd00::53"));
  EXPECT_THAT(dns.searches, ElementsAre("c"));
  EXPECT_THAT(dns.options, ElementsAre("ndots:2", "edns0"));
  EXPECT_TRUE(ParseResolvConf("").servers.empty());
}

// The container spec containerd 1.6.20 writes (docs/containerd-shim.md
// section 4), with a kubelet volume, a read-only one, one with slave
// propagation and a block device.
constexpr char kContainerSpec[] = R"({"ociVersion":"1.0.2-dev",
  "annotations":{"io.kubernetes.cri.container-name":"vm","io.kubernetes.cri.container-type":"container",
    "io.kubernetes.cri.image-name":"registry.local/vm:1","io.kubernetes.cri.sandbox-id":"sb1",
    "kubevirt-cri.io/boot-device":"/dev/vda"},
  "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
    {"destination":"/dev","type":"tmpfs","source":"tmpfs"},
    {"destination":"/etc/hostname","type":"bind","source":"/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/hostname","options":["rbind","rprivate","rw"]},
    {"destination":"/etc/resolv.conf","type":"bind","source":"/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/resolv.conf","options":["rbind","rprivate","rw"]},
    {"destination":"/dev/shm","type":"bind","source":"/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/shm","options":["rbind","rprivate","rw"]},
    {"destination":"/data","type":"bind","source":"/var/lib/kubelet/pods/u1/volumes/data","options":["rbind","rprivate","rw"]},
    {"destination":"/config","type":"bind","source":"/var/lib/kubelet/pods/u1/volumes/cfg","options":["rbind","rprivate","ro"]},
    {"destination":"/shared","type":"bind","source":"/mnt/shared","options":["rbind","rslave","rw"]}],
  "linux":{"resources":{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"b","major":7,"minor":3,"access":"rw"}],
      "cpu":{"shares":512,"quota":150000,"period":100000,"cpus":"0-1"},"memory":{"limit":1073741824}},
    "devices":[{"path":"/dev/vda","type":"b","major":7,"minor":3}]}})";

TEST(ContainerdContainerSpec, TheContainerSpecBecomesTheCriConfigKubeletSent) {
  std::vector<std::string> asked;
  auto finder = [&](char type, int64_t major, int64_t minor) -> absl::StatusOr<std::string> {
    asked.push_back(std::string(1, type) + std::to_string(major) + ":" + std::to_string(minor));
    return std::string("/dev/loop3");
  };
  absl::StatusOr<::runtime::v1::ContainerConfig> c = ContainerConfigFromSpec(kContainerSpec, finder);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->metadata().name(), "vm");
  EXPECT_EQ(c->image().image(), "registry.local/vm:1");
  EXPECT_EQ(c->annotations().at("kubevirt-cri.io/boot-device"), "/dev/vda");
  EXPECT_FALSE(c->annotations().contains("io.kubernetes.cri.sandbox-id"));
  const auto& r = c->linux().resources();
  EXPECT_EQ(r.cpu_shares(), 512);
  EXPECT_EQ(r.cpu_quota(), 150000);
  EXPECT_EQ(r.cpu_period(), 100000);
  EXPECT_EQ(r.cpuset_cpus(), "0-1");
  EXPECT_EQ(r.memory_limit_in_bytes(), 1073741824);
  ASSERT_EQ(c->mounts_size(), 3) << "containerd's own files and the pseudo file systems are not volumes";
  EXPECT_EQ(c->mounts(0).container_path(), "/data");
  EXPECT_EQ(c->mounts(0).host_path(), "/var/lib/kubelet/pods/u1/volumes/data");
  EXPECT_FALSE(c->mounts(0).readonly());
  EXPECT_TRUE(c->mounts(1).readonly());
  EXPECT_EQ(c->mounts(2).propagation(), ::runtime::v1::PROPAGATION_HOST_TO_CONTAINER)
      << "kept, so that validation refuses it as it refuses kubelet's";
  ASSERT_EQ(c->devices_size(), 1);
  EXPECT_EQ(c->devices(0).container_path(), "/dev/vda");
  EXPECT_EQ(c->devices(0).host_path(), "/dev/loop3");
  EXPECT_EQ(c->devices(0).permissions(), "rw");
  EXPECT_EQ(asked, std::vector<std::string>{"b7:3"});
}

TEST(ContainerdContainerSpec, ANamelessSpecOrAnUnfoundDeviceIsAnErrorNamingIt) {
  EXPECT_EQ(ContainerConfigFromSpec(R"({"annotations":{}})").status().code(), absl::StatusCode::kInvalidArgument);
  auto none = [](char, int64_t, int64_t) -> absl::StatusOr<std::string> { return absl::NotFoundError("no node"); };
  absl::StatusOr<::runtime::v1::ContainerConfig> c = ContainerConfigFromSpec(kContainerSpec, none);
  EXPECT_TRUE(absl::IsNotFound(c.status())) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("\"/dev/vda\""));
}

TEST(ContainerdContainerSpec, FindDeviceNodeFindsARealNodeByNumber) {
  // /dev/null is c 1:3 on every Linux.
  absl::StatusOr<std::string> null = FindDeviceNode('c', 1, 3);
  ASSERT_TRUE(null.ok()) << null.status();
  EXPECT_EQ(*null, "/dev/null");
  EXPECT_TRUE(absl::IsNotFound(FindDeviceNode('b', 4095, 1048575).status()));
  EXPECT_EQ(FindDeviceNode('x', 1, 3).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvcri::shim::containerd
