// A dual-stack Pod network (bridge + host-local with an IPv4 and an IPv6 range): both IPs reported, configured, reachable.
//
// The guest (test/guest) takes IPv4 by DHCPv4 and IPv6 from our per-Pod
// responder: the kernel takes the router advertisement (on-link prefix,
// default route via the bridge's link-local address), tools/kvcri-dhcp6.c
// the address by DHCPv6. The host reaches the guest over both families;
// after a kill -9 of the daemon a new VM in the same sandbox gets both
// again. The network is docs/examples/dual-stack's conflist (bridge,
// subnets and IPAM store made private). Needs root.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <regex>
#include <string>
#include <thread>

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

struct Net {
  std::string bridge;
  std::string prefix4;  // "10.x.y."
  std::string prefix6;  // "fd00:kv:xxxx::"
};

Net MakeNet() {
  std::random_device rd;
  std::mt19937 gen(rd());
  const unsigned tag = static_cast<unsigned>(gen() & 0xffff);
  char name[16], p6[32];
  std::snprintf(name, sizeof name, "kvds%04x", tag);
  std::snprintf(p6, sizeof p6, "fd00:6b76:%x::", tag);
  const int a = 200 + static_cast<int>(gen() % 50), b = static_cast<int>(gen() % 255);
  return {name, "10." + std::to_string(a) + "." + std::to_string(b) + ".", p6};
}

// docs/examples/dual-stack's conflist with what must be private to this test
// changed: the bridge, both subnets, host-local's store.
std::string Conflist(const Net& n, const fs::path& ipam) {
  nlohmann::json conf = nlohmann::json::parse(
      ReadFileOrEmpty(fs::path(KVCRI_SOURCE_DIR) / "docs/examples/dual-stack/10-kubevirt-cri-dual-stack.conflist"),
      nullptr, false);
  EXPECT_TRUE(conf.is_object()) << "docs/examples/dual-stack/10-kubevirt-cri-dual-stack.conflist does not parse";
  if (!conf.is_object()) return "";
  for (nlohmann::json& plugin : conf["plugins"]) {
    if (plugin["type"] != "bridge") continue;
    EXPECT_EQ(plugin["ipam"]["ranges"].size(), 2u) << "the example has an IPv4 and an IPv6 range";
    plugin["bridge"] = n.bridge;
    plugin["ipam"]["ranges"] = nlohmann::json::array({nlohmann::json::array({{{"subnet", n.prefix4 + "0/24"}}}),
                                                      nlohmann::json::array({{{"subnet", n.prefix6 + "/64"}}})});
    plugin["ipam"]["dataDir"] = ipam.string();
  }
  return conf.dump();
}

// The address the guest announced for `family_marker` ("IP" or "IP6") on eth0.
std::string WaitForConsoleIp(const fs::path& log, const std::string& marker, size_t skip = 0) {
  const std::regex line("KUBEVIRT-CRI-GUEST-" + marker + " eth0 ([0-9a-f.:]+)");
  auto deadline = Clock::now() + kBootTimeout;
  while (Clock::now() < deadline) {
    std::string text = ReadFileOrEmpty(log);
    size_t seen = 0;
    for (std::sregex_iterator it(text.begin(), text.end(), line), end; it != end; ++it) {
      if (seen++ == skip) return (*it)[1];
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return "";
}

bool Ping6FromHost(const std::string& ip) {
  for (int i = 0; i < 10; ++i) {
    if (std::system(("ping -6 -c 1 -W 2 " + ip + " >/dev/null 2>&1").c_str()) == 0) return true;
  }
  return false;
}

std::string CurlOverIpv6(const std::string& ip, int port) {
  const std::string cmd = "curl -6 -s -m 5 'http://[" + ip + "]:" + std::to_string(port) + "/' 2>&1";
  std::string out;
  for (int i = 0; i < 20 && out.find("kubevirt-cri-guest") == std::string::npos; ++i) {
    out.clear();
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) break;
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    ::pclose(p);
    if (out.find("kubevirt-cri-guest") == std::string::npos) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return out;
}

class DualStackTest : public ::testing::Test {
 protected:
  void SetUp() override { RequireIntegrationEnvironment(/*need_guest_images=*/true); }
  void TearDown() override { std::system(("ip link del " + net_.bridge + " >/dev/null 2>&1").c_str()); }
  Net net_ = MakeNet();
};

TEST_F(DualStackTest, BothFamiliesAreReportedConfiguredInTheGuestAndReachable) {
  TempDir ipam;
  TestDaemon::Options opts;
  opts.cni_conflist = Conflist(net_, ipam.path());
  TestDaemon d(opts);
  d.Start();
  ImportGuestImages(d);

  std::string pod, ctr;
  pb::PodSandboxConfig cfg = SandboxConfig("dual-stack", d.log_dir());
  ASSERT_TRUE(StartPodWithConfig(d, cfg, kKernelImage, &pod, &ctr)) << d.DaemonLog();

  // PodSandboxStatus: IPv4 first (the Pod IP), the IPv6 address as the
  // additional IP kubelet takes for the other family.
  pb::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(pod);
  pb::PodSandboxStatusResponse st;
  ASSERT_TRUE(d.runtime().PodSandboxStatus(Ctx().get(), req, &st).ok());
  const std::string ip4 = st.status().network().ip();
  ASSERT_EQ(st.status().network().additional_ips_size(), 1) << st.DebugString();
  const std::string ip6 = st.status().network().additional_ips(0).ip();
  EXPECT_THAT(ip4, ::testing::StartsWith(net_.prefix4));
  EXPECT_THAT(ip6, ::testing::StartsWith(net_.prefix6.substr(0, net_.prefix6.size() - 1)));

  // The guest configured both: DHCPv4 and DHCPv6 say so on the console.
  const fs::path log = d.log_dir() / "default_dual-stack" / "vm" / "0.log";
  EXPECT_EQ(WaitForConsoleIp(log, "IP"), ip4) << d.DaemonLog();
  EXPECT_EQ(WaitForConsoleIp(log, "IP6"), ip6) << d.DaemonLog();
  EXPECT_THAT(d.DaemonLog(), ::testing::Not(HasSubstr("IPv6 gateway MAC not learnt")));

  // Inside: the address, the RA's on-link prefix and default route via the
  // bridge's link-local address (from the bridge's MAC, which the guest's
  // neighbour table took from the RA).
  ASSERT_TRUE(WaitForExec(d, ctr, std::chrono::seconds(120)).ok());
  absl::StatusOr<pb::ExecSyncResponse> addr = ExecSync(d, ctr, {"ip", "-6", "addr", "show", "dev", "eth0"}, 30);
  ASSERT_TRUE(addr.ok()) << addr.status();
  EXPECT_THAT(addr->stdout(), HasSubstr("inet6 " + ip6 + "/128 scope global")) << addr->stdout();
  absl::StatusOr<pb::ExecSyncResponse> routes = ExecSync(d, ctr, {"ip", "-6", "route"}, 30);
  ASSERT_TRUE(routes.ok()) << routes.status();
  EXPECT_THAT(routes->stdout(), ::testing::ContainsRegex("default via fe80::[0-9a-f:]+ dev eth0")) << routes->stdout();
  EXPECT_THAT(routes->stdout(), HasSubstr(net_.prefix6 + "/64 dev eth0")) << routes->stdout();

  // The host reaches the guest over both families (ICMP, and HTTP over IPv6:
  // an answer means the guest routed back through the RA's router).
  EXPECT_TRUE(PingFromHost(ip4));
  EXPECT_TRUE(Ping6FromHost(ip6)) << routes->stdout();
  EXPECT_THAT(CurlOverIpv6(ip6, 8080), HasSubstr("kubevirt-cri-guest dual-stack"));
  // The guest reaches the bridge's IPv6 gateway too (its own traffic, not an answer).
  absl::StatusOr<pb::ExecSyncResponse> out =
      ExecSync(d, ctr, {"ping", "-6", "-c", "1", "-W", "5", net_.prefix6 + "1"}, 30);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->exit_code(), 0) << out->stdout() << out->stderr();

  // kill -9 and a new VM in the same sandbox: served on both families again.
  d.Kill9();
  d.Start();
  ctr = RestartVmContainer(d, pod, ctr, cfg, kKernelImage);
  ASSERT_FALSE(ctr.empty()) << d.DaemonLog();
  const fs::path log1 = d.log_dir() / "default_dual-stack" / "vm" / "1.log";
  EXPECT_EQ(WaitForConsoleIp(log1, "IP"), ip4) << d.DaemonLog();
  EXPECT_EQ(WaitForConsoleIp(log1, "IP6"), ip6) << d.DaemonLog();
  EXPECT_TRUE(Ping6FromHost(ip6));

  RemovePod(d, pod);
}

}  // namespace
}  // namespace kvcri::testing
