// The tc guards on a wired Pod netns, judged by the kernel: spoofed, RA and DHCP-server frames die; the rest flows.
//
// A Pod-like netns (veth eth0, its peer in a "host" netns) is wired with
// WireTap; the test plays the guest on tap0 (the fd QEMU would hold) and a
// rogue Pod on the peer with packet sockets. Needs root; all traffic stays
// inside the two test namespaces.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/if.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "cni/dhcp_packet.h"
#include "cni/dhcp_server.h"
#include "cni/tap.h"
#include "config/base/netns_exec.h"
#include "test/client/tap_util.h"
#include "config/base/unique_fd.h"
#include "test/fakes/frames.h"
#include "test/fakes/shell.h"

namespace kvcri::cni {
namespace {

namespace fr = kvcri::testing::frames;
using kvcri::testing::Sh;
using kvcri::testing::ShResult;
using ::testing::HasSubstr;

constexpr uint32_t kPodIp = 0x0afd0702;    // 10.253.7.2
constexpr uint32_t kPeerIp = 0x0afd0701;   // 10.253.7.1
constexpr uint32_t kOtherIp = 0x0afd0763;  // 10.253.7.99
constexpr fr::Mac kPeerMac = {0x0a, 0x58, 0x0a, 0xfd, 0x07, 0x01};
constexpr fr::Mac kOtherMac = {0x0a, 0x58, 0x0a, 0xfd, 0x07, 0x63};
const fr::Ip6 kPodIp6 = fr::Ip6Of({0xfd00, 0x7e, 0, 0, 0, 0, 0, 2});
const fr::Ip6 kGuestLinkLocal = fr::Ip6Of({0xfe80, 0, 0, 0, 0, 0, 0, 2});
const fr::Ip6 kGatewayLinkLocal = fr::Ip6Of({0xfe80, 0, 0, 0, 0, 0, 0, 1});
const fr::Ip6 kRogueLinkLocal = fr::Ip6Of({0xfe80, 0, 0, 0, 0, 0, 0, 0x66});
const fr::Ip6 kAllNodes = fr::Ip6Of({0xff02, 0, 0, 0, 0, 0, 0, 1});

// A frame is recognised by a tag in its payload.
bool Carries(const std::string& frame, const std::string& tag) { return frame.find(tag) != std::string::npos; }

// Every frame readable from `fd` within `wait`.
std::vector<std::string> Drain(int fd, std::chrono::milliseconds wait) {
  std::vector<std::string> out;
  auto deadline = std::chrono::steady_clock::now() + wait;
  char buf[4096];
  do {
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.emplace_back(buf, static_cast<size_t>(n));
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 50);
  } while (std::chrono::steady_clock::now() < deadline);
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.emplace_back(buf, static_cast<size_t>(n));
  return out;
}

std::set<std::string> TagsSeen(const std::vector<std::string>& frames, const std::vector<std::string>& tags) {
  std::set<std::string> seen;
  for (const std::string& f : frames) {
    for (const std::string& t : tags) {
      if (Carries(f, t)) seen.insert(t);
    }
  }
  return seen;
}

class L2FilterTest : public ::testing::TestWithParam<bool> {
 protected:
  bool dual_stack() const { return GetParam(); }

  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "L2 filter tests need root (netns, veth, tap, tc): run as root";
    ASSERT_EQ(Sh("command -v ip").exit_code, 0) << "iproute2 (ip) is missing";
    ASSERT_EQ(Sh("test -c /dev/net/tun").exit_code, 0) << "/dev/net/tun is missing";
    std::string id = std::to_string(::getpid());
    pod_ = "kvcri-l2-pod-" + id;
    host_ = "kvcri-l2-host-" + id;
    netns_ = "/run/netns/" + pod_;
    std::string setup = "set -e; ip netns add " + pod_ + "; ip netns add " + host_ + "; ip -n " + pod_ +
                        " link add eth0 type veth peer name peer0 netns " + host_ + "; ip -n " + host_ +
                        " link set peer0 address 0a:58:0a:fd:07:01 up; ip -n " + host_ +
                        " addr add 10.253.7.1/24 dev peer0; ip -n " + pod_ + " link set eth0 up; ip -n " + pod_ +
                        " addr add 10.253.7.2/24 dev eth0; ip -n " + pod_ + " route add default via 10.253.7.1";
    if (dual_stack()) {
      setup += "; ip -n " + pod_ + " addr add fd00:7e::2/64 dev eth0 nodad; ip -n " + pod_ +
               " -6 route add default via fe80::1 dev eth0";
    }
    ShResult r = Sh(setup);
    ASSERT_EQ(r.exit_code, 0) << setup << "\n" << r.output;
    std::string mac = Sh("ip netns exec " + pod_ + " cat /sys/class/net/eth0/address").output;
    auto parsed = dhcp::ParseMac(mac.substr(0, 17));
    ASSERT_TRUE(parsed.ok()) << mac;
    std::copy(parsed->begin(), parsed->end(), guest_mac_.begin());
    auto nic = WireTap(netns_);
    ASSERT_TRUE(nic.ok()) << nic.status();
    nic_ = *nic;
  }

  void TearDown() override {
    Sh("ip netns del " + pod_);
    Sh("ip netns del " + host_);
  }

  // The guest's end of tap0, opened inside the Pod netns like QEMU would.
  base::UniqueFd OpenTap() { return testing::OpenGuestTap(netns_, pod_, "tap0"); }

  // A packet socket on peer0: sees what reaches the Pod network from the
  // guest, and sends as another Pod would.
  base::UniqueFd OpenPeer() { return testing::OpenPacketSocket("/run/netns/" + host_, "peer0"); }

  static void Send(int fd, const std::string& frame) {
    ASSERT_EQ(::write(fd, frame.data(), frame.size()), static_cast<ssize_t>(frame.size())) << std::strerror(errno);
  }

  std::string FromGuest4(uint32_t src, uint16_t sport, uint16_t dport, const std::string& tag,
                         const fr::Mac* mac = nullptr) {
    return fr::Ethernet(kPeerMac, mac ? *mac : guest_mac_, ETH_P_IP,
                        fr::Ipv4(src, kPeerIp, IPPROTO_UDP, fr::Udp(sport, dport, tag)));
  }
  std::string FromGuest6(const fr::Ip6& src, uint8_t nh, const std::string& payload) {
    return fr::Ethernet(fr::kAllNodes6, guest_mac_, ETH_P_IPV6, fr::Ipv6(src, kAllNodes, nh, payload));
  }
  static std::string Ra(const std::string& tag) { return fr::Icmp6(134, std::string(12, '\0') + tag); }

  std::string DhcpDiscover(uint32_t xid) {
    dhcp::Message m;
    m.op = 1;
    m.xid = xid;
    std::copy(guest_mac_.begin(), guest_mac_.end(), m.chaddr.begin());
    m.options[dhcp::opt::kMessageType] = std::string(1, static_cast<char>(dhcp::MessageType::kDiscover));
    dhcp::UdpFrame f;
    f.dst_mac.fill(0xff);
    f.src_mac = m.chaddr;
    f.dst_ip = 0xffffffff;
    f.src_port = dhcp::kClientPort;
    f.dst_port = dhcp::kServerPort;
    f.payload = dhcp::SerializeMessage(m);
    return dhcp::BuildUdpFrame(f);
  }

  std::string pod_, host_, netns_;
  fr::Mac guest_mac_{};
  WiredNic nic_;
};

TEST_P(L2FilterTest, GuestReachesThePodNetworkOnlyAsItself) {
  base::UniqueFd peer = OpenPeer();
  base::UniqueFd tap = OpenTap();
  ASSERT_TRUE(peer.valid() && tap.valid());
  Send(tap.get(), FromGuest4(kPodIp, 5000, 5001, "tag-good-udp"));
  Send(tap.get(), fr::Ethernet(fr::kBroadcast, guest_mac_, ETH_P_ARP,
                               fr::Arp(1, guest_mac_, kPodIp, {}, kPeerIp) + "tag-good-arp"));
  Send(tap.get(), FromGuest4(kOtherIp, 5000, 5001, "tag-spoofed-ip"));
  Send(tap.get(), FromGuest4(kPodIp, 5000, 5001, "tag-spoofed-mac", &kOtherMac));
  Send(tap.get(), fr::Ethernet(fr::kBroadcast, guest_mac_, ETH_P_ARP,
                               fr::Arp(2, guest_mac_, kOtherIp, kPeerMac, kPeerIp) + "tag-spoofed-arp"));
  Send(tap.get(), FromGuest4(kPodIp, 67, 68, "tag-dhcp-server"));
  Send(tap.get(), fr::Ethernet(kPeerMac, guest_mac_, ETH_P_IP,
                               fr::Ipv4(kPodIp, kPeerIp, IPPROTO_UDP, fr::Udp(67, 68, "tag-dhcp-server-ihl6"), 6)));
  Send(tap.get(), fr::Ethernet(fr::kBroadcast, guest_mac_, ETH_P_IP,
                               fr::Ipv4(0, 0xffffffff, IPPROTO_UDP, fr::Udp(68, 67, "tag-dhcp-client-ihl6"), 6)));
  Send(tap.get(), FromGuest6(kGuestLinkLocal, 58, Ra("tag-ra")));
  Send(tap.get(), FromGuest6(kGuestLinkLocal, 0, fr::Ext6(58, Ra("tag-ra-hbh"))));
  Send(tap.get(), FromGuest6(kPodIp6, IPPROTO_UDP, fr::Udp(5000, 5001, "tag-v6-good")));

  std::set<std::string> seen =
      TagsSeen(Drain(peer.get(), std::chrono::milliseconds(1500)),
               {"tag-good-udp", "tag-good-arp", "tag-spoofed-ip", "tag-spoofed-mac", "tag-spoofed-arp",
                "tag-dhcp-server", "tag-dhcp-client-ihl6", "tag-ra", "tag-v6-good"});
  EXPECT_TRUE(seen.count("tag-good-udp")) << "the guest's own UDP did not reach the Pod network";
  EXPECT_TRUE(seen.count("tag-good-arp")) << "the guest's own ARP did not reach the Pod network";
  EXPECT_EQ(seen.count("tag-v6-good"), dual_stack() ? 1u : 0u) << "IPv6 flows on IPv6 Pods only";
  for (const char* bad :
       {"tag-spoofed-ip", "tag-spoofed-mac", "tag-spoofed-arp", "tag-dhcp-server", "tag-dhcp-client-ihl6", "tag-ra"}) {
    EXPECT_FALSE(seen.count(bad)) << bad << " reached the Pod network";
  }
  // The kernel counted the drops on tap0's guard.
  EXPECT_THAT(Sh("ip netns exec " + pod_ + " tc -s filter show dev tap0 ingress").output, HasSubstr("bpf"));
  EXPECT_THAT(Sh("ip netns exec " + pod_ + " tc -s qdisc show dev tap0 ingress").output,
              ::testing::Not(HasSubstr("dropped 0,")));
}

TEST_P(L2FilterTest, RogueRouterAdvertsAndDhcpServersDoNotReachTheGuest) {
  base::UniqueFd peer = OpenPeer();
  base::UniqueFd tap = OpenTap();
  ASSERT_TRUE(peer.valid() && tap.valid());
  auto to_guest6 = [&](const fr::Ip6& src, uint8_t nh, const std::string& payload) {
    return fr::Ethernet(fr::kAllNodes6, kOtherMac, ETH_P_IPV6, fr::Ipv6(src, kAllNodes, nh, payload));
  };
  Send(peer.get(), fr::Ethernet(guest_mac_, kPeerMac, ETH_P_IP,
                                fr::Ipv4(kPeerIp, kPodIp, IPPROTO_UDP, fr::Udp(5001, 5000, "tag-good-udp"))));
  Send(peer.get(), fr::Ethernet(guest_mac_, kOtherMac, ETH_P_IP,
                                fr::Ipv4(kOtherIp, kPodIp, IPPROTO_UDP, fr::Udp(67, 68, "tag-dhcp-server"))));
  Send(peer.get(), fr::Ethernet(fr::kBroadcast, kOtherMac, ETH_P_IP,
                                fr::Ipv4(kOtherIp, 0xffffffff, IPPROTO_UDP, fr::Udp(67, 68, "tag-dhcp-bcast"), 6)));
  Send(peer.get(), to_guest6(kRogueLinkLocal, 58, Ra("tag-ra-rogue")));
  Send(peer.get(), to_guest6(kRogueLinkLocal, 60, fr::Ext6(58, Ra("tag-ra-rogue-dstopt"))));
  Send(peer.get(), to_guest6(kGatewayLinkLocal, 58, Ra("tag-ra-gateway")));
  Send(peer.get(), to_guest6(kRogueLinkLocal, 58, fr::Icmp6(128, "tag-echo6")));

  std::set<std::string> seen =
      TagsSeen(Drain(tap.get(), std::chrono::milliseconds(1500)),
               {"tag-good-udp", "tag-dhcp-server", "tag-dhcp-bcast", "tag-ra-rogue", "tag-ra-gateway", "tag-echo6"});
  EXPECT_TRUE(seen.count("tag-good-udp")) << "UDP to the guest did not arrive";
  EXPECT_TRUE(seen.count("tag-echo6")) << "ICMPv6 echo to the guest did not arrive";
  EXPECT_FALSE(seen.count("tag-dhcp-server")) << "a DHCP server on the Pod network reached the guest";
  EXPECT_FALSE(seen.count("tag-dhcp-bcast")) << "a broadcast DHCP reply reached the guest";
  EXPECT_FALSE(seen.count("tag-ra-rogue")) << "a rogue router advertisement reached the guest";
  // RAs from the gateway: on an IPv6 Pod only.
  EXPECT_EQ(seen.count("tag-ra-gateway"), dual_stack() ? 1u : 0u);
}

TEST_P(L2FilterTest, DhcpSocketSeesOnlyDhcpDuringBulkTraffic) {
  auto lease = LeaseFromWiredNic(nic_, {}, {}, "bulk");
  ASSERT_TRUE(lease.ok()) << lease.status();
  auto server = DhcpServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Add("pod-bulk", netns_, *lease).ok());
  base::UniqueFd peer = OpenPeer();
  base::UniqueFd tap = OpenTap();
  ASSERT_TRUE(peer.valid() && tap.valid());

  // Both ways, everything a busy guest and its Pod network exchange.
  constexpr int kRounds = 500;
  const std::string tcp_out =
      fr::Ethernet(kPeerMac, guest_mac_, ETH_P_IP, fr::Ipv4(kPodIp, kPeerIp, IPPROTO_TCP, fr::Tcp(40000, 80)));
  const std::string udp_out = FromGuest4(kPodIp, 5000, 5001, std::string(1200, 'u'));
  const std::string opts_out = fr::Ethernet(kPeerMac, guest_mac_, ETH_P_IP,
                                            fr::Ipv4(kPodIp, kPeerIp, IPPROTO_UDP, fr::Udp(5000, 5001, "opts"), 8));
  const std::string arp_out =
      fr::Ethernet(fr::kBroadcast, guest_mac_, ETH_P_ARP, fr::Arp(1, guest_mac_, kPodIp, {}, kPeerIp));
  const std::string ip6_out = FromGuest6(kGuestLinkLocal, IPPROTO_UDP, fr::Udp(5000, 5001, "v6"));
  const std::string tcp_in =
      fr::Ethernet(guest_mac_, kPeerMac, ETH_P_IP, fr::Ipv4(kPeerIp, kPodIp, IPPROTO_TCP, fr::Tcp(80, 40000)));
  const std::string udp_in =
      fr::Ethernet(guest_mac_, kPeerMac, ETH_P_IP, fr::Ipv4(kPeerIp, kPodIp, IPPROTO_UDP, fr::Udp(5001, 5000, "in")));
  const std::string dhcp_port_in = fr::Ethernet(  // to port 67, but towards the guest: outgoing on tap0
      guest_mac_, kPeerMac, ETH_P_IP, fr::Ipv4(kPeerIp, kPodIp, IPPROTO_UDP, fr::Udp(68, 67, "in67")));
  for (int i = 0; i < kRounds; ++i) {
    for (const std::string* f : {&tcp_out, &udp_out, &opts_out, &arp_out, &ip6_out}) Send(tap.get(), *f);
    for (const std::string* f : {&tcp_in, &udp_in, &dhcp_port_in}) Send(peer.get(), *f);
    if (i % 50 == 0) Drain(tap.get(), std::chrono::milliseconds(0));  // keep the tap's queue from filling
  }
  constexpr int kDiscovers = 3;
  int offers = 0;
  for (int i = 0; i < kDiscovers; ++i) {
    Send(tap.get(), DhcpDiscover(0x4200 + i));
    for (const std::string& f : Drain(tap.get(), std::chrono::milliseconds(1000))) {
      auto udp = dhcp::ParseUdpFrame(std::span(reinterpret_cast<const uint8_t*>(f.data()), f.size()));
      if (udp.ok() && udp->dst_port == dhcp::kClientPort) ++offers;
    }
  }
  EXPECT_EQ(offers, kDiscovers) << "the responder did not answer every DISCOVER";
  auto seen = (*server)->FramesSeen("pod-bulk");
  ASSERT_TRUE(seen.ok()) << seen.status();
  // 8 * 500 frames crossed tap0 (in both directions) besides the DHCP ones.
  EXPECT_EQ(*seen, static_cast<uint64_t>(kDiscovers)) << "frames copied into the daemon besides DHCP";
}

INSTANTIATE_TEST_SUITE_P(Pods, L2FilterTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "DualStack" : "Ipv4Only"; });

}  // namespace
}  // namespace kvcri::cni
