// Several networks per VM Pod through a Multus-like meta-plugin (test/tools/multi_cni.cc): two bridges, two NICs.
//
// The conflist runs kvcri-test-multi, which calls bridge + host-local twice
// (eth0 on one bridge and subnet with the default route, net1 on another
// bridge and subnet without) and merges the results, as Multus does. The
// guest gets two NICs with the MACs of the result, configures both addresses
// by DHCP, the host reaches it on both bridges; after kill -9 every NIC is
// served again; StopPodSandbox releases both IPs. Needs root.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "test/client/exec_helpers.h"
#include "test/client/host_util.h"
#include "test/client/pod_helpers.h"
#include "test/client/test_daemon.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr auto kBootTimeout = std::chrono::seconds(240);

struct Bridge {
  std::string name;
  std::string prefix;  // "10.x.y."
};

// Two private bridges and subnets, different per run (tests run side by side).
std::vector<Bridge> MakeBridges() {
  std::random_device rd;
  std::mt19937 gen(rd());
  const unsigned tag = static_cast<unsigned>(gen() & 0xfffff);
  const int a = 200 + static_cast<int>(gen() % 50);
  const int b = static_cast<int>(gen() % 255);
  char na[16], nb[16];
  std::snprintf(na, sizeof na, "kvma%05x", tag);
  std::snprintf(nb, sizeof nb, "kvmb%05x", tag);
  return {{na, "10." + std::to_string(a) + "." + std::to_string(b) + "."},
          {nb, "10." + std::to_string(a) + "." + std::to_string(b + 1) + "."}};
}

std::string Conflist(const std::vector<Bridge>& br, const fs::path& ipam_a, const fs::path& ipam_b) {
  return R"({
  "cniVersion": "1.0.0",
  "name": "kvcri-multi",
  "plugins": [{
    "type": "kvcri-test-multi",
    "networks": [
      {"ifname": "eth0", "config": {"type": "bridge", "bridge": ")" +
         br[0].name + R"(", "isGateway": true, "ipMasq": false,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": ")" + br[0].prefix + R"(0/24"}]],
                  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ")" + ipam_a.string() + R"("}}},
      {"ifname": "net1", "config": {"type": "bridge", "bridge": ")" +
         br[1].name + R"(", "isGateway": true, "ipMasq": false, "mtu": 1400,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": ")" + br[1].prefix + R"(0/24"}]],
                  "dataDir": ")" + ipam_b.string() + R"("}}}
    ]
  }]
})";
}

// host-local's allocation files for network `name` under `dir`.
std::vector<std::string> Allocated(const fs::path& dir, const std::string& name) {
  std::vector<std::string> ips;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir / name, ec)) {
    std::string f = e.path().filename();
    if (f != "lock" && f.rfind("last_reserved_ip", 0) != 0) ips.push_back(f);
  }
  return ips;
}

// The DHCP leases the guest bound, per interface, from its console.
std::map<std::string, std::string> WaitForGuestIps(const fs::path& log, size_t count) {
  static const std::regex kIpLine("KUBEVIRT-CRI-GUEST-IP (eth[0-9]+) ([0-9.]+)/[0-9]+");
  std::map<std::string, std::string> ips;
  auto deadline = Clock::now() + kBootTimeout;
  while (Clock::now() < deadline) {
    std::string text = ReadFileOrEmpty(log);
    for (std::sregex_iterator it(text.begin(), text.end(), kIpLine), end; it != end; ++it) {
      ips[(*it)[1]] = (*it)[2];
    }
    if (ips.size() >= count) return ips;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return ips;
}

fs::path CriLog(const TestDaemon& d, const std::string& pod_name) {
  return d.log_dir() / ("default_" + pod_name) / "vm" / "0.log";
}

pb::PodSandboxStatusResponse Status(TestDaemon& d, const std::string& pod) {
  pb::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(pod);
  req.set_verbose(true);
  pb::PodSandboxStatusResponse resp;
  grpc::Status s = d.runtime().PodSandboxStatus(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp;
}

class MultiNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override { RequireIntegrationEnvironment(/*need_guest_images=*/true); }
  void TearDown() override {
    // The bridge plugin leaves its bridges behind by design.
    for (const Bridge& b : bridges_) std::system(("ip link del " + b.name + " >/dev/null 2>&1").c_str());
  }
  std::vector<Bridge> bridges_ = MakeBridges();
};

TEST_F(MultiNetworkTest, TwoNetworksBecomeTwoGuestNicsReachableOnBothAndBothIpsAreReleased) {
  TempDir plugins;
  fs::copy_file(KVCRI_MULTI_CNI_PATH, plugins.path() / "kvcri-test-multi");
  fs::permissions(plugins.path() / "kvcri-test-multi", fs::perms::owner_all);
  TempDir ipam;
  const fs::path ipam_a = ipam.path() / "a", ipam_b = ipam.path() / "b";
  TestDaemon::Options opts;
  opts.cni_conflist = Conflist(bridges_, ipam_a, ipam_b);
  opts.cni_bin_dirs = {plugins.path().string()};
  TestDaemon d(opts);
  d.Start();
  ImportGuestImages(d);

  std::string pod, ctr;
  pb::PodSandboxConfig cfg = SandboxConfig("multi-net", d.log_dir());
  ASSERT_TRUE(StartPodWithConfig(d, cfg, kKernelImage, &pod, &ctr)) << d.DaemonLog();

  // PodSandboxStatus: the Pod IP is eth0's, net1's is an additional IP.
  pb::PodSandboxStatusResponse st = Status(d, pod);
  const std::string ip0 = st.status().network().ip();
  ASSERT_EQ(st.status().network().additional_ips_size(), 1);
  const std::string ip1 = st.status().network().additional_ips(0).ip();
  EXPECT_THAT(ip0, ::testing::StartsWith(bridges_[0].prefix));
  EXPECT_THAT(ip1, ::testing::StartsWith(bridges_[1].prefix));
  EXPECT_THAT(Allocated(ipam_a, "kvcri-multi-eth0"), ::testing::ElementsAre(ip0));
  EXPECT_THAT(Allocated(ipam_b, "kvcri-multi-net1"), ::testing::ElementsAre(ip1));

  // The NICs carry the MACs of the merged result's sandbox interfaces, in its order.
  nlohmann::json cached = nlohmann::json::parse(
      ReadFileOrEmpty(d.root() / "cni-cache" / "results" / ("kvcri-multi-" + pod + "-eth0")), nullptr, false);
  ASSERT_TRUE(cached.is_object()) << "no cached CNI result for " << pod;
  std::vector<std::string> macs;
  for (const nlohmann::json& i : cached["result"]["interfaces"]) {
    if (!i.value("sandbox", "").empty()) macs.push_back(i.value("mac", ""));
  }
  ASSERT_EQ(macs.size(), 2u) << cached.dump();
  nlohmann::json info = nlohmann::json::parse(st.info().at("info"));
  ASSERT_EQ(info["guestNics"].size(), 2u) << info.dump();
  EXPECT_EQ(info["guestNics"][0]["mac"], macs[0]);
  EXPECT_EQ(info["guestNics"][0]["tap"], "tap0");
  EXPECT_EQ(info["guestNics"][1]["mac"], macs[1]);
  EXPECT_EQ(info["guestNics"][1]["tap"], "tap1");
  EXPECT_EQ(info["guestNics"][1]["mtu"], 1400);

  // The guest took both addresses by DHCP, eth0 and eth1 in PCI slot order.
  std::map<std::string, std::string> leases = WaitForGuestIps(CriLog(d, "multi-net"), 2);
  EXPECT_EQ(leases["eth0"], ip0) << d.DaemonLog();
  EXPECT_EQ(leases["eth1"], ip1) << d.DaemonLog();

  // Inside the guest (kvcri-agent's exec): both NICs, their MACs, their addresses.
  ASSERT_TRUE(WaitForExec(d, ctr, std::chrono::seconds(120)).ok());
  absl::StatusOr<pb::ExecSyncResponse> addr = ExecSync(d, ctr, {"ip", "addr"}, 30);
  ASSERT_TRUE(addr.ok()) << addr.status();
  const std::string out = addr->stdout();
  EXPECT_THAT(out, HasSubstr("link/ether " + macs[0])) << out;
  EXPECT_THAT(out, HasSubstr("link/ether " + macs[1])) << out;
  EXPECT_THAT(out, HasSubstr("inet " + ip0 + "/24")) << out;
  EXPECT_THAT(out, HasSubstr("inet " + ip1 + "/24")) << out;
  // Only eth0's lease carries a router: one default route, via eth0's bridge.
  absl::StatusOr<pb::ExecSyncResponse> routes = ExecSync(d, ctr, {"ip", "route"}, 30);
  ASSERT_TRUE(routes.ok()) << routes.status();
  EXPECT_THAT(routes->stdout(), HasSubstr("default via " + bridges_[0].prefix + "1 dev eth0")) << routes->stdout();
  EXPECT_THAT(routes->stdout(), ::testing::Not(HasSubstr("default via " + bridges_[1].prefix))) << routes->stdout();

  // The host reaches the guest on both bridges: ICMP, and HTTP on net1's address.
  EXPECT_TRUE(PingFromHost(ip0));
  EXPECT_TRUE(PingFromHost(ip1));
  EXPECT_THAT(HttpGetUntil(ip1, 8080, "/", "kubevirt-cri-guest multi-net"), HasSubstr("kubevirt-cri-guest multi-net"));

  // kill -9: the restarted daemon serves DHCP on both NICs again. A new VM
  // container asks afresh on each.
  d.Kill9();
  d.Start();
  EXPECT_EQ(Status(d, pod).status().network().additional_ips(0).ip(), ip1);
  const std::string restarted = RestartVmContainer(d, pod, ctr, cfg, kKernelImage);
  ASSERT_FALSE(restarted.empty());
  leases = WaitForGuestIps(d.log_dir() / "default_multi-net" / "vm" / "1.log", 2);
  EXPECT_EQ(leases["eth0"], ip0) << d.DaemonLog();
  EXPECT_EQ(leases["eth1"], ip1) << d.DaemonLog();
  EXPECT_TRUE(PingFromHost(ip1));

  // StopPodSandbox releases both IPs (CNI DEL through the meta-plugin).
  pb::StopPodSandboxRequest stopp;
  stopp.set_pod_sandbox_id(pod);
  pb::StopPodSandboxResponse stopp_resp;
  grpc::Status s = d.runtime().StopPodSandbox(Ctx(std::chrono::seconds(120)).get(), stopp, &stopp_resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(Allocated(ipam_a, "kvcri-multi-eth0").empty());
  EXPECT_TRUE(Allocated(ipam_b, "kvcri-multi-net1").empty());
  EXPECT_EQ(Status(d, pod).status().network().ip(), "");
  EXPECT_FALSE(PingFromHost(ip1));
  RemovePod(d, pod);
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
