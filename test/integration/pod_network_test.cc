// Pod networking end to end with the real bridge + host-local + portmap
// plugins: VM Pods get Pod IPs over DHCP from our responder, the host and the
// other guest reach them, a port mapping reaches a guest, and teardown (also
// after kill -9) releases everything. Needs root; the Pod bridge lives in the
// host's network namespace, as under containerd.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include "config/base/unique_fd.h"
#include "nlohmann/json.hpp"
#include "test/client/host_util.h"
#include "test/client/pod_helpers.h"
#include "test/client/test_daemon.h"
#include "test/fakes/frames.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr auto kBootTimeout = std::chrono::seconds(240);

// The address the guest's DHCP client configured, from its console in the CRI log.
std::string WaitForGuestIp(const fs::path& log) {
  static const std::regex kIpLine("KUBEVIRT-CRI-GUEST-IP eth0 ([0-9.]+)/([0-9]+)");
  auto deadline = Clock::now() + kBootTimeout;
  while (Clock::now() < deadline) {
    std::string text = ReadFileOrEmpty(log);
    std::smatch m;
    if (std::regex_search(text, m, kIpLine)) return m[1];
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return "";
}

std::string PodIp(TestDaemon& d, const std::string& pod_id) {
  pb::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(pod_id);
  pb::PodSandboxStatusResponse resp;
  grpc::Status s = d.runtime().PodSandboxStatus(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp.status().network().ip();
}

std::string SubnetPrefix(const TestDaemon& d) {  // "10.x.y."
  return d.subnet().substr(0, d.subnet().rfind('.') + 1);
}

// Files in host-local's store that are IP allocations.
std::vector<std::string> AllocatedIps(const TestDaemon& d) {
  std::vector<std::string> ips;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(d.ipam_dir() / "kvcri-test", ec)) {
    std::string name = e.path().filename();
    if (name != "lock" && name.rfind("last_reserved_ip", 0) != 0) ips.push_back(name);
  }
  return ips;
}

fs::path CriLog(const TestDaemon& d, const std::string& pod_name) {
  return d.log_dir() / ("default_" + pod_name) / "vm" / "0.log";
}

class PodNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override { RequireIntegrationEnvironment(/*need_guest_images=*/true); }
};

TEST_F(PodNetworkTest, TwoVmPodsGetPodIpsAndReachHostEachOtherAndPortMapping) {
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);

  std::random_device rd;
  const int host_port = 30000 + static_cast<int>(rd() % 20000);
  pb::PodSandboxConfig a_cfg = SandboxConfig("net-a", d.log_dir());
  pb::PortMapping* pm = a_cfg.add_port_mappings();
  pm->set_protocol(pb::TCP);
  pm->set_container_port(8080);
  pm->set_host_port(host_port);
  a_cfg.mutable_dns_config()->add_servers("10.96.0.10");
  a_cfg.mutable_dns_config()->add_searches("default.svc.cluster.local");
  pb::PodSandboxConfig b_cfg = SandboxConfig("net-b", d.log_dir());

  std::string a_pod, a_ctr, b_pod, b_ctr;
  ASSERT_TRUE(StartPodWithConfig(d, a_cfg, kKernelImage, &a_pod, &a_ctr));
  ASSERT_TRUE(StartPodWithConfig(d, b_cfg, kKernelImage, &b_pod, &b_ctr));

  // PodSandboxStatus reports the CNI address, and the guest configured the same one via DHCP.
  const std::string a_ip = PodIp(d, a_pod), b_ip = PodIp(d, b_pod);
  EXPECT_THAT(a_ip, ::testing::StartsWith(SubnetPrefix(d)));
  EXPECT_THAT(b_ip, ::testing::StartsWith(SubnetPrefix(d)));
  EXPECT_NE(a_ip, b_ip);
  EXPECT_THAT(AllocatedIps(d), ::testing::UnorderedElementsAre(a_ip, b_ip));
  EXPECT_EQ(WaitForGuestIp(CriLog(d, "net-a")), a_ip) << d.DaemonLog();
  EXPECT_EQ(WaitForGuestIp(CriLog(d, "net-b")), b_ip) << d.DaemonLog();

  // The host reaches both guests: ICMP and TCP 8080 (httpd in the guest).
  EXPECT_TRUE(PingFromHost(a_ip));
  EXPECT_TRUE(PingFromHost(b_ip));
  EXPECT_THAT(HttpGetUntil(a_ip, 8080, "/", "kubevirt-cri-guest net-a"), HasSubstr("kubevirt-cri-guest net-a"));
  EXPECT_THAT(HttpGetUntil(b_ip, 8080, "/", "kubevirt-cri-guest net-b"), HasSubstr("kubevirt-cri-guest net-b"));

  // Guest to guest, both ways (the guest fetches from the other one).
  EXPECT_THAT(HttpGetUntil(a_ip, 8080, "/cgi-bin/fetch?" + b_ip + ":8080", "net-b"),
              HasSubstr("kubevirt-cri-guest net-b"));
  EXPECT_THAT(HttpGetUntil(b_ip, 8080, "/cgi-bin/fetch?" + a_ip + ":8080", "net-a"),
              HasSubstr("kubevirt-cri-guest net-a"));

  // The port mapping (portmap plugin) reaches guest A through the host's address on the bridge.
  const std::string gateway = SubnetPrefix(d) + "1";
  EXPECT_THAT(HttpGetUntil(gateway, host_port, "/", "net-a"), HasSubstr("kubevirt-cri-guest net-a"));

  // The guest NIC carries the MAC of the interface CNI made in the Pod netns
  // (from the cached ADD result) and the MTU the daemon found on it.
  {
    nlohmann::json cached = nlohmann::json::parse(
        ReadFileOrEmpty(d.root() / "cni-cache" / "results" / ("kvcri-test-" + a_pod + "-eth0")), nullptr, false);
    ASSERT_TRUE(cached.is_object()) << "no cached CNI result for " << a_pod;
    std::string cni_mac;
    for (const nlohmann::json& i : cached["result"]["interfaces"]) {
      if (i.value("name", "") == "eth0" && !i.value("sandbox", "").empty()) cni_mac = i.value("mac", "");
    }
    ASSERT_FALSE(cni_mac.empty()) << cached.dump();
    pb::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(a_pod);
    req.set_verbose(true);
    pb::PodSandboxStatusResponse resp;
    ASSERT_TRUE(d.runtime().PodSandboxStatus(Ctx().get(), req, &resp).ok());
    nlohmann::json info = nlohmann::json::parse(resp.info().at("info"));
    EXPECT_EQ(info["guestNic"]["mac"], cni_mac);
    const std::string mtu = std::to_string(info["guestNic"]["mtu"].get<int>());
    EXPECT_THAT(HttpGetUntil(a_ip, 8080, "/cgi-bin/nic", "NIC "), HasSubstr("NIC " + cni_mac + " " + mtu));
  }

  // The sandbox's DNS config reached the guest through DHCP.
  std::string resolv = HttpGetUntil(a_ip, 8080, "/cgi-bin/resolv", "10.96.0.10");
  EXPECT_THAT(resolv, HasSubstr("nameserver 10.96.0.10"));
  EXPECT_THAT(resolv, HasSubstr("default.svc.cluster.local"));

  RemovePod(d, a_pod);
  RemovePod(d, b_pod);
  EXPECT_TRUE(AllocatedIps(d).empty());
  EXPECT_FALSE(PingFromHost(a_ip));
  ExpectNoLeftovers(d);
}

// The tc guard on the tap (cni/l2_filter.h) with a real guest: its pings
// from its own address reach the node, pings from an address it took for
// itself do not (without the guard, the node answers them: the guest's ARP
// replies for that address go through too); a DHCP server reply and a router
// advertisement the guest crafts never reach the Pod bridge, while a control
// broadcast does.
TEST_F(PodNetworkTest, GuestSendsOnlyAsItself) {
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  std::string pod, ctr;
  ASSERT_TRUE(StartPodWithConfig(d, SandboxConfig("net-spoof", d.log_dir()), kKernelImage, &pod, &ctr));
  const std::string ip = PodIp(d, pod);
  ASSERT_EQ(WaitForGuestIp(CriLog(d, "net-spoof")), ip) << d.DaemonLog();
  const std::string gateway = SubnetPrefix(d) + "1", other = SubnetPrefix(d) + "250";
  ASSERT_NE(ip, other);
  std::string answer = HttpGetUntil(ip, 8080, "/cgi-bin/spoof?" + other + ":" + gateway, "SPOOF-");
  EXPECT_THAT(answer, HasSubstr("OWN-OK")) << "the guest cannot ping the node from its own address";
  EXPECT_THAT(answer, HasSubstr("SPOOF-FAILED")) << "a ping from a spoofed source address reached the node";

  // Everything the host netns receives, on any interface (the bridge's ports included).
  base::UniqueFd capture(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL)));
  ASSERT_TRUE(capture.valid()) << std::strerror(errno);
  // Only IPv4 UDP and IPv6 are queued, in a large buffer: the frames looked
  // for are those, and a test beside this one (port_forward_test pushes
  // gigabytes of TCP through bridges) must not overflow the socket.
  sock_filter code[] = {
      {BPF_LD | BPF_H | BPF_ABS, 0, 0, 12},     {BPF_JMP | BPF_JEQ | BPF_K, 1, 0, ETH_P_IP},
      {BPF_JMP | BPF_JEQ | BPF_K, 2, 3, ETH_P_IPV6}, {BPF_LD | BPF_B | BPF_ABS, 0, 0, 23},
      {BPF_JMP | BPF_JEQ | BPF_K, 0, 1, IPPROTO_UDP}, {BPF_RET | BPF_K, 0, 0, 0xffff},
      {BPF_RET | BPF_K, 0, 0, 0},
  };
  sock_fprog prog{static_cast<unsigned short>(std::size(code)), code};
  ASSERT_EQ(::setsockopt(capture.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog), 0) << std::strerror(errno);
  const int rcvbuf = 8 << 20;
  ::setsockopt(capture.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
  const std::string run = std::to_string(::getpid());
  const std::vector<std::pair<std::string, std::string>> sent = {
      {"udp", "kvcri-control-" + run}, {"dhcp-server", "kvcri-dhcpsrv-" + run}, {"ra", "kvcri-ra-" + run}};
  for (const auto& [kind, tag] : sent) {
    EXPECT_THAT(HttpGetUntil(ip, 8080, "/cgi-bin/frame?" + kind + ":" + tag, "SENT"), HasSubstr("SENT " + kind));
  }
  std::set<std::string> seen;
  auto deadline = Clock::now() + std::chrono::seconds(3);
  char buf[4096];
  while (Clock::now() < deadline) {
    pollfd p{capture.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    sockaddr_ll from{};
    socklen_t from_len = sizeof from;
    for (ssize_t n;
         (n = ::recvfrom(capture.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &from_len)) > 0;
         from_len = sizeof from) {
      std::string_view f(buf, static_cast<size_t>(n));
      // Our own HTTP requests carry the tags too: only frames arriving from
      // a guest count, and no TCP.
      const bool tcp4 = f.size() > 23 && f[12] == 0x08 && f[13] == 0x00 && f[23] == IPPROTO_TCP;
      if (from.sll_pkttype == PACKET_OUTGOING || tcp4) continue;
      for (const auto& [kind, tag] : sent) {
        if (f.find(tag) != std::string_view::npos) seen.insert(kind);
      }
    }
  }
  EXPECT_TRUE(seen.count("udp")) << "the guest's control broadcast did not reach the node";
  EXPECT_FALSE(seen.count("dhcp-server")) << "a DHCP server reply from the guest reached the node";
  EXPECT_FALSE(seen.count("ra")) << "a router advertisement from the guest reached the node";
  RemovePod(d, pod);
  ExpectNoLeftovers(d);
}

// A rogue router advertisement on the Pod bridge (CVE-2020-10749 class): the
// guest of an IPv4-only Pod neither configures an address from its prefix
// nor takes the sender as its default router (the guard on eth0 drops it).
TEST_F(PodNetworkTest, RogueRouterAdvertOnTheBridgeDoesNotReachTheGuest) {
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  std::string pod, ctr;
  ASSERT_TRUE(StartPodWithConfig(d, SandboxConfig("net-ra", d.log_dir()), kKernelImage, &pod, &ctr));
  const std::string ip = PodIp(d, pod);
  ASSERT_EQ(WaitForGuestIp(CriLog(d, "net-ra")), ip) << d.DaemonLog();
  // IPv6 is alive in the guest (else the test would prove nothing).
  ASSERT_THAT(HttpGetUntil(ip, 8080, "/cgi-bin/ip6", "ADDR6 fe80:"), HasSubstr("ADDR6 fe80:"));

  base::UniqueFd sock(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(sock.valid()) << std::strerror(errno);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = static_cast<int>(::if_nametoindex(d.bridge().c_str()));
  to.sll_halen = 6;
  ASSERT_NE(to.sll_ifindex, 0) << "bridge \"" << d.bridge() << "\" not found";
  namespace fr = frames;
  const fr::Mac rogue_mac = {0x02, 0x52, 0x4f, 0x47, 0x55, 0x45};
  const std::string ra = fr::Icmp6Frame(fr::kAllNodes6, rogue_mac, fr::Ip6Of({0xfe80, 0, 0, 0, 0, 0, 0, 0x66}),
                                        fr::Ip6Of({0xff02, 0, 0, 0, 0, 0, 0, 1}),
                                        fr::RouterAdvert(fr::Ip6Of({0x2001, 0xdb8, 0x6b76, 0, 0, 0, 0, 0})));
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(::sendto(sock.get(), ra.data(), ra.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
              static_cast<ssize_t>(ra.size()))
        << std::strerror(errno);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));  // SLAAC takes effect within a second of an RA
  std::string ip6 = HttpGetUntil(ip, 8080, "/cgi-bin/ip6", "IP6-END");
  EXPECT_THAT(ip6, HasSubstr("IP6-END"));
  EXPECT_THAT(ip6, ::testing::Not(HasSubstr("2001:db8:6b76:"))) << "the guest configured the rogue prefix";
  EXPECT_THAT(ip6, ::testing::Not(HasSubstr("ROUTE6 default"))) << "the guest took the rogue router";
  RemovePod(d, pod);
  ExpectNoLeftovers(d);
}

TEST_F(PodNetworkTest, AfterKill9DhcpIsServedAgainAndDelReleasesTheIp) {
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  std::string pod, ctr;
  pb::PodSandboxConfig cfg = SandboxConfig("net-restart", d.log_dir());
  ASSERT_TRUE(StartPodWithConfig(d, cfg, kKernelImage, &pod, &ctr));
  const std::string ip = PodIp(d, pod);
  ASSERT_EQ(WaitForGuestIp(CriLog(d, "net-restart")), ip);

  d.Kill9();
  d.Start();
  EXPECT_EQ(PodIp(d, pod), ip);
  EXPECT_THAT(HttpGetUntil(ip, 8080, "/", "net-restart"), HasSubstr("kubevirt-cri-guest net-restart"));

  // kubelet restarts the VM container: the new guest asks DHCP again and
  // must be answered by the responder restored after the restart.
  const std::string restarted = RestartVmContainer(d, pod, ctr, cfg, kKernelImage);
  ASSERT_FALSE(restarted.empty());
  EXPECT_EQ(WaitForGuestIp(d.log_dir() / "default_net-restart" / "vm" / "1.log"), ip) << d.DaemonLog();

  // A second crash, then DEL through the restarted daemon releases the IP.
  d.Kill9();
  d.Start();
  RemovePod(d, pod);
  EXPECT_TRUE(AllocatedIps(d).empty());
  ExpectNoLeftovers(d);
}

// RunPodSandbox with a bad node network: a clear error, nothing left.
class PodNetworkFailureTest : public ::testing::Test {
 protected:
  void SetUp() override { RequireIntegrationEnvironment(/*need_guest_images=*/false); }

  static void WriteConflist(TestDaemon& d, const std::string& text) {
    for (const auto& e : fs::directory_iterator(d.cni_dir())) fs::remove(e.path());
    std::ofstream(d.cni_dir() / "10-test.conflist") << text;
  }

  static grpc::Status RunSandbox(TestDaemon& d) {
    pb::RunPodSandboxRequest run;
    *run.mutable_config() = SandboxConfig("net-fail", d.log_dir());
    run.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse resp;
    return d.runtime().RunPodSandbox(Ctx(std::chrono::seconds(60)).get(), run, &resp);
  }

  static std::string Chain(const TestDaemon& d, const std::string& ipam, const std::string& extra) {
    return R"({"cniVersion": "1.0.0", "name": "kvcri-test", "plugins": [
      {"type": "bridge", "bridge": ")" + d.bridge() + R"(", "isGateway": true, "ipam": )" + ipam + "}" + extra +
           "]}";
  }
  static std::string GoodIpam(const TestDaemon& d) {
    return R"({"type": "host-local", "ranges": [[{"subnet": ")" + d.subnet() + R"("}]], "dataDir": ")" +
           d.ipam_dir().string() + R"("})";
  }
};

TEST_F(PodNetworkFailureTest, BrokenConflistMissingPluginAndFailingPluginLeaveNothing) {
  TestDaemon d;
  d.Start();

  WriteConflist(d, "{ \"cniVersion\": \"1.0.0\", \"name\": ");
  grpc::Status s = RunSandbox(d);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("CNI"));
  EXPECT_THAT(s.error_message(), HasSubstr("10-test.conflist"));
  ExpectNoLeftovers(d);

  WriteConflist(d, Chain(d, GoodIpam(d), R"(, {"type": "no-such-plugin"})"));
  s = RunSandbox(d);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.error_message(), HasSubstr("no-such-plugin"));
  ExpectNoLeftovers(d);

  // bridge and host-local succeed (an IP is allocated, a veth made), then
  // tuning fails: the chain is rolled back.
  WriteConflist(d, Chain(d, GoodIpam(d),
                         R"(, {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}})"));
  s = RunSandbox(d);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.error_message(), HasSubstr("tuning"));
  EXPECT_TRUE(AllocatedIps(d).empty());
  ExpectNoLeftovers(d);

  // A plugin whose own IPAM fails (range without a usable address).
  WriteConflist(d, Chain(d, R"({"type": "host-local", "ranges": [[{"subnet": "10.255.255.252/32"}]], "dataDir": ")" +
                                d.ipam_dir().string() + R"("})",
                         ""));
  s = RunSandbox(d);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.error_message(), HasSubstr("bridge"));
  // Its DEL fails the same way, so the rollback cannot prove nothing is
  // allocated: the sandbox is kept NOTREADY (never half-made and forgotten).
  pb::ListPodSandboxResponse kept;
  ASSERT_TRUE(d.runtime().ListPodSandbox(Ctx().get(), pb::ListPodSandboxRequest(), &kept).ok());
  ASSERT_EQ(kept.items_size(), 1);
  EXPECT_EQ(kept.items(0).state(), pb::SANDBOX_NOTREADY);

  // The operator fixes the network: RemovePodSandbox (kubelet's GC) finishes
  // the teardown, and the daemon works again.
  WriteConflist(d, Chain(d, GoodIpam(d), ""));
  RemovePod(d, kept.items(0).id());
  ExpectNoLeftovers(d);
  s = RunSandbox(d);
  EXPECT_TRUE(s.ok()) << s.error_message();
  pb::ListPodSandboxResponse list;
  ASSERT_TRUE(d.runtime().ListPodSandbox(Ctx().get(), pb::ListPodSandboxRequest(), &list).ok());
  ASSERT_EQ(list.items_size(), 1);
  EXPECT_EQ(AllocatedIps(d).size(), 1u);
  RemovePod(d, list.items(0).id());
  ExpectNoLeftovers(d);
}

// kill -9 while CNI ADD is half done (bridge and host-local ran, the last
// plugin still works): the restarted daemon rolls the sandbox back and DEL
// releases the IP although no ADD result was ever cached.
TEST_F(PodNetworkFailureTest, Kill9DuringCniAddLeaksNothing) {
  TempDir bins;
  const fs::path slow = bins.path() / "kvcri-slow";
  std::ofstream(slow) << R"(#!/bin/sh
# A last plugin in the chain that takes its time: ADD sleeps, then passes prevResult on.
case "$CNI_COMMAND" in
  ADD) sleep 60; jq -c .prevResult ;;
  VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
  *) cat >/dev/null ;;
esac
)";
  fs::permissions(slow, fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
  TestDaemon::Options opts;
  opts.cni_bin_dirs = {bins.path().string()};
  TestDaemon d(opts);
  WriteConflist(d, Chain(d, GoodIpam(d), R"(, {"type": "kvcri-slow"})"));
  d.Start();

  std::thread run([&] { (void)RunSandbox(d); });  // fails when the daemon dies
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (AllocatedIps(d).empty() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(AllocatedIps(d).size(), 1u) << "host-local never allocated; daemon log:\n" << d.DaemonLog();
  d.Kill9();
  run.join();

  d.Start();  // recovery: the sandbox was still "creating"
  EXPECT_TRUE(AllocatedIps(d).empty()) << d.DaemonLog();
  ExpectNoLeftovers(d);
  // The name is free again and a good network works.
  WriteConflist(d, Chain(d, GoodIpam(d), ""));
  grpc::Status s = RunSandbox(d);
  ASSERT_TRUE(s.ok()) << s.error_message();
  pb::ListPodSandboxResponse list;
  ASSERT_TRUE(d.runtime().ListPodSandbox(Ctx().get(), pb::ListPodSandboxRequest(), &list).ok());
  ASSERT_EQ(list.items_size(), 1);
  RemovePod(d, list.items(0).id());
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
