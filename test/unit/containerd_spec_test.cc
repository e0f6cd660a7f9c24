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

}  // namespace
}  // namespace kvcri::shim::containerd
