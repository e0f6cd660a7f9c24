// Unit tests of the shim's adopted network seams: containerd's netns and CNI result behind NetnsManager and CniRunner.
#include <gtest/gtest.h>

#include <fstream>

#include "cni/result.h"
#include "shim/containerd/adopted_network.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::shim::containerd {
namespace {

class AdoptedNetworkTest : public testing::ScratchDirTest {};

TEST_F(AdoptedNetworkTest, AnAdoptedNamespaceIsCreatedByNameOnlyAndNeverRemoved) {
  AdoptedNetns netns;
  // Our own netns is a network namespace on nsfs, as containerd's are.
  netns.Adopt("sb1", "/proc/self/ns/net");
  absl::StatusOr<std::filesystem::path> path = netns.Create("sb1");
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, "/proc/self/ns/net");
  EXPECT_EQ(netns.Path("sb1"), "/proc/self/ns/net");
  EXPECT_TRUE(*netns.Exists("sb1"));
  EXPECT_TRUE(netns.ListPinned()->empty()) << "start-up must never take containerd's namespaces for orphans";
  ASSERT_TRUE(netns.Remove("sb1").ok());
  EXPECT_FALSE(*netns.Exists("sb1"));
  EXPECT_TRUE(std::filesystem::exists("/proc/self/ns/net"));
}

TEST_F(AdoptedNetworkTest, NoNamespaceOrAFileThatIsNoneIsFailedPrecondition) {
  AdoptedNetns netns;
  absl::StatusOr<std::filesystem::path> none = netns.Create("hostnet");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(none.status().message().find("host networking"), std::string::npos) << none.status();
  std::ofstream(dir_ / "plain") << "x";
  netns.Adopt("sb2", dir_ / "plain");
  absl::StatusOr<std::filesystem::path> plain = netns.Create("sb2");
  EXPECT_EQ(plain.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(plain.status().message().find("is not a network namespace"), std::string::npos) << plain.status();
  netns.Adopt("sb3", dir_ / "gone");
  EXPECT_FALSE(*netns.Exists("sb3"));
}

cni::CniResult TwoNics(const std::string& netns) {
  cni::CniResult r;
  r.cni_version = "1.0.0";
  r.interfaces = {{"eth0", "0a:58:0a:f4:00:05", 1450, netns}, {"net1", "0a:58:0a:f5:00:05", 1500, netns}};
  r.ips = {{"10.244.0.5/24", "10.244.0.1", 0}, {"10.245.0.5/24", "", 1}};
  r.routes = {{"0.0.0.0/0", "10.244.0.1"}};
  return r;
}

TEST_F(AdoptedNetworkTest, AddReadsTheNamespaceAndCachesWhatItFoundUntilDel) {
  int reads = 0;
  AdoptedCniRunner cni(dir_ / "cni", [&](const std::filesystem::path& netns, std::string_view ifname) {
    ++reads;
    EXPECT_EQ(ifname, "eth0");
    return absl::StatusOr<cni::CniResult>(TwoNics(netns.string()));
  });
  cni::AttachSpec spec;
  spec.container_id = "sb1";
  spec.netns = "/proc/self/ns/net";
  absl::StatusOr<cni::CniResult> added = cni.Add(spec);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(reads, 1);
  EXPECT_EQ(cni::SandboxInterfaces(*added, spec.netns), (std::vector<std::string>{"eth0", "net1"}));
  // After a restart (a new runner on the same dir) the cache answers: the
  // wiring has taken the addresses off the interfaces by then.
  AdoptedCniRunner restarted(dir_ / "cni", [&](const std::filesystem::path&, std::string_view) {
    ++reads;
    return absl::StatusOr<cni::CniResult>(absl::InternalError("must not read again"));
  });
  absl::StatusOr<cni::CniResult> cached = restarted.GetCachedResult("sb1", "eth0");
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(cached->interfaces, added->interfaces);
  EXPECT_EQ(cached->ips, added->ips);
  EXPECT_EQ(cached->routes, added->routes);
  EXPECT_EQ(cni::PodIps(*cached, "eth0"), (std::vector<std::string>{"10.244.0.5"}));
  EXPECT_TRUE(restarted.Check(spec).ok());
  ASSERT_TRUE(restarted.Del(spec).ok());
  EXPECT_TRUE(absl::IsNotFound(restarted.GetCachedResult("sb1", "eth0").status()));
  ASSERT_TRUE(restarted.Del(spec).ok()) << "Del is idempotent";
  EXPECT_EQ(reads, 1);
  EXPECT_TRUE(std::filesystem::exists("/proc/self/ns/net")) << "Del touches no namespace";
}

TEST_F(AdoptedNetworkTest, AFailedReadCachesNothingAndCheckSeesAGoneNamespace) {
  AdoptedCniRunner cni(dir_ / "cni", [](const std::filesystem::path&, std::string_view) {
    return absl::StatusOr<cni::CniResult>(absl::FailedPreconditionError("no interface besides lo"));
  });
  cni::AttachSpec spec;
  spec.container_id = "sb1";
  spec.netns = (dir_ / "gone").string();
  EXPECT_EQ(cni.Add(spec).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::IsNotFound(cni.GetCachedResult("sb1", "eth0").status()));
  EXPECT_TRUE(absl::IsNotFound(cni.Check(spec)));
}

}  // namespace
}  // namespace kvcri::shim::containerd
