// The BPF programs on the tap/eth0 pair and the DHCP socket, run over crafted frames by our interpreter and the kernel.
#include "cni/l2_filter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cni/bpf_program.h"
#include "cni/dhcp_server.h"
#include "config/base/unique_fd.h"
#include "test/fakes/cbpf.h"
#include "test/fakes/frames.h"

namespace kvcri::cni {
namespace {

namespace fr = kvcri::testing::frames;
using kvcri::testing::CbpfPacket;
using kvcri::testing::RunCbpf;

constexpr fr::Mac kGuestMac = {0x0a, 0x58, 0x0a, 0xfc, 0x07, 0x02};
constexpr fr::Mac kOtherMac = {0x0a, 0x58, 0x0a, 0xfc, 0x07, 0x63};
constexpr fr::Mac kGatewayMac = {0x0a, 0x58, 0x0a, 0xfc, 0x07, 0x01};
constexpr uint32_t kGuestIp = 0x0afc0702;  // 10.252.7.2
constexpr uint32_t kOtherIp = 0x0afc0763;  // 10.252.7.99
constexpr uint32_t kPeerIp = 0x0afc0701;   // 10.252.7.1
const fr::Ip6 kGuestIp6 = fr::Ip6Of({0xfd00, 7, 0, 0, 0, 0, 0, 2});
const fr::Ip6 kOtherIp6 = fr::Ip6Of({0xfd00, 7, 0, 0, 0, 0, 0, 0x99});
const fr::Ip6 kGuestLinkLocal = fr::Ip6Of({0xfe80, 0, 0, 0, 0x858, 0xaff, 0xfefc, 0x702});
const fr::Ip6 kRouterLinkLocal = fr::Ip6Of({0xfe80, 0, 0, 0, 0, 0, 0, 1});
const fr::Ip6 kRogueLinkLocal = fr::Ip6Of({0xfe80, 0, 0, 0, 0, 0, 0, 0x66});
const fr::Ip6 kAllNodes = fr::Ip6Of({0xff02, 0, 0, 0, 0, 0, 0, 1});
const fr::Ip6 kUnspecified{};

constexpr uint32_t kKeep = l2::kKeepLocal, kDrop = l2::kDrop, kGo = l2::kContinue;

WiredNic DualStackNic() {
  WiredNic nic;
  nic.mac = "0a:58:0a:fc:07:02";
  nic.addresses = {{"10.252.7.2", 24}, {"fd00:7::2", 64}};
  nic.gateway4 = "10.252.7.1";
  nic.gateway6 = "fe80::1";
  return nic;
}

WiredNic Ipv4OnlyNic() {
  WiredNic nic = DualStackNic();
  nic.addresses.pop_back();
  nic.gateway6.clear();
  return nic;
}

std::vector<sock_filter> Egress(const WiredNic& nic) {
  auto addrs = GuestAddressesFromNic(nic);
  EXPECT_TRUE(addrs.ok()) << addrs.status();
  auto prog = GuestEgressFilter(*addrs);
  EXPECT_TRUE(prog.ok()) << prog.status();
  return prog.ok() ? *prog : std::vector<sock_filter>{};
}

std::vector<sock_filter> Ingress(const WiredNic& nic) {
  auto addrs = GuestAddressesFromNic(nic);
  EXPECT_TRUE(addrs.ok()) << addrs.status();
  auto prog = PodIngressFilter(*addrs);
  EXPECT_TRUE(prog.ok()) << prog.status();
  return prog.ok() ? *prog : std::vector<sock_filter>{};
}

// What a datagram socket with `prog` attached delivers of `frame`: nothing
// (-1), or how many bytes. The kernel trims a datagram to the program's
// return value, so a tc verdict shows as a length: TC_ACT_OK (0) nothing,
// TC_ACT_SHOT (2) two bytes, TC_ACT_UNSPEC (-1) the whole frame. `marker`
// must pass whole; it shows that `frame` was dropped rather than delayed.
long KernelDelivers(const std::vector<sock_filter>& prog, const std::string& frame, const std::string& marker) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) {
    ADD_FAILURE() << "socketpair: " << std::strerror(errno);
    return -2;
  }
  base::UniqueFd tx(sv[0]), rx(sv[1]);
  sock_fprog fprog{static_cast<unsigned short>(prog.size()), const_cast<sock_filter*>(prog.data())};
  if (::setsockopt(rx.get(), SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) != 0) {
    ADD_FAILURE() << "SO_ATTACH_FILTER refused the program: " << std::strerror(errno);
    return -2;
  }
  EXPECT_EQ(::send(tx.get(), frame.data(), frame.size(), 0), static_cast<ssize_t>(frame.size()));
  EXPECT_EQ(::send(tx.get(), marker.data(), marker.size(), 0), static_cast<ssize_t>(marker.size()));
  char buf[4096];
  ssize_t n = ::recv(rx.get(), buf, sizeof buf, 0);
  if (n < 0) {
    ADD_FAILURE() << "the marker did not arrive either: " << std::strerror(errno);
    return -2;
  }
  if (std::string(buf, static_cast<size_t>(n)) == marker) {
    // Dropped, unless the frame is the marker itself.
    return frame == marker ? n : -1;
  }
  return n;
}

// The length a datagram socket delivers for program result `r`.
long Delivered(uint32_t r, const std::string& frame) {
  if (r == 0) return -1;
  return static_cast<long>(std::min<uint64_t>(r, frame.size()));
}

struct Case {
  std::string name;
  std::string frame;
  uint32_t want;
  uint32_t pkttype = PACKET_HOST;
  bool vlan = false;
};

void RunCases(const std::vector<sock_filter>& prog, const std::vector<Case>& cases, const std::string& marker) {
  ASSERT_FALSE(prog.empty());
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(RunCbpf(prog, CbpfPacket{c.frame, c.pkttype, c.vlan}), c.want);
    // The kernel is the real judge; a datagram socket cannot fake a packet
    // type or a VLAN tag taken off, so those cases are the interpreter's.
    if (c.pkttype == PACKET_HOST && !c.vlan) {
      EXPECT_EQ(KernelDelivers(prog, c.frame, marker), Delivered(c.want, c.frame));
    }
  }
}

std::string Ip4Frame(const fr::Mac& src_mac, const fr::Mac& dst_mac, uint32_t src, uint32_t dst, uint8_t proto,
                     const std::string& l4, int ihl = 5, uint16_t frag = 0) {
  return fr::Ethernet(dst_mac, src_mac, ETH_P_IP, fr::Ipv4(src, dst, proto, l4, ihl, frag));
}

std::string Ip6Frame(const fr::Mac& src_mac, const fr::Mac& dst_mac, const fr::Ip6& src, const fr::Ip6& dst, uint8_t nh,
                     const std::string& payload) {
  return fr::Ethernet(dst_mac, src_mac, ETH_P_IPV6, fr::Ipv6(src, dst, nh, payload));
}

std::string DhcpDiscover(const fr::Mac& mac, int ihl = 5, uint16_t frag = 0) {
  return Ip4Frame(mac, fr::kBroadcast, 0, 0xffffffff, IPPROTO_UDP, fr::Udp(68, 67, std::string(240, 'd')), ihl, frag);
}

// Type, code, checksum, flags, then the target address.
std::string NeighborAdvert(const fr::Ip6& target) {
  return fr::Icmp6(136, std::string(reinterpret_cast<const char*>(target.data()), target.size()));
}

TEST(DhcpSocketFilter, PassesOnlyIncomingDhcpAndTheGuestsIpv6Solicitations) {
  auto prog = DhcpSocketFilter();
  ASSERT_TRUE(prog.ok()) << prog.status();
  const std::string discover = DhcpDiscover(kGuestMac);
  const uint32_t kAll = 0xffff;
  RunCases(
      *prog,
      {
          {"DHCP discover", discover, kAll},
          {"DHCP discover, IP options (IHL 6)", DhcpDiscover(kGuestMac, 6), kAll},
          {"DHCP discover, IHL 15", DhcpDiscover(kGuestMac, 15), kAll},
          {"DHCP, first fragment", DhcpDiscover(kGuestMac, 5, 0x2000), kAll},
          {"DHCP, later fragment", DhcpDiscover(kGuestMac, 5, 0x2010), 0},
          {"our own reply going out", discover, 0, PACKET_OUTGOING},
          {"ARP", fr::Ethernet(fr::kBroadcast, kGuestMac, ETH_P_ARP, fr::Arp(1, kGuestMac, kGuestIp, {}, kPeerIp)), 0},
          {"IPv6 UDP to 67",
           Ip6Frame(kGuestMac, fr::kAllNodes6, kGuestLinkLocal, kAllNodes, IPPROTO_UDP, fr::Udp(68, 67)), 0},
          {"router solicitation", Ip6Frame(kGuestMac, fr::kAllNodes6, kGuestLinkLocal, kAllNodes, 58, fr::Icmp6(133)),
           kAll},
          {"neighbour solicitation",
           Ip6Frame(kGuestMac, fr::kAllNodes6, kGuestLinkLocal, kAllNodes, 58, fr::Icmp6(135, std::string(20, '\0'))),
           kAll},
          {"DHCPv6 solicit",
           Ip6Frame(kGuestMac, fr::kAllNodes6, kGuestLinkLocal, kAllNodes, IPPROTO_UDP, fr::Udp(546, 547)), kAll},
          {"neighbour advertisement",
           Ip6Frame(kGuestMac, fr::kAllNodes6, kGuestLinkLocal, kAllNodes, 58, NeighborAdvert(kGuestIp6)), 0},
          {"IPv6 echo request", Ip6Frame(kGuestMac, fr::kAllNodes6, kGuestIp6, kAllNodes, 58, fr::Icmp6(128)), 0},
          {"DHCPv6 server reply",
           Ip6Frame(kGuestMac, fr::kAllNodes6, kGuestLinkLocal, kAllNodes, IPPROTO_UDP, fr::Udp(547, 546)), 0},
          {"RS behind hop-by-hop (clients send none)",
           Ip6Frame(kGuestMac, fr::kAllNodes6, kGuestLinkLocal, kAllNodes, 0, fr::Ext6(58, fr::Icmp6(133))), 0},
          {"TCP to 67", Ip4Frame(kGuestMac, kGatewayMac, kGuestIp, kPeerIp, IPPROTO_TCP, fr::Tcp(5000, 67)), 0},
          {"UDP to 68", Ip4Frame(kGuestMac, kGatewayMac, kGuestIp, kPeerIp, IPPROTO_UDP, fr::Udp(67, 68)), 0},
          {"UDP to 53", Ip4Frame(kGuestMac, kGatewayMac, kGuestIp, kPeerIp, IPPROTO_UDP, fr::Udp(5000, 53)), 0},
          {"truncated IPv4", fr::Ethernet(fr::kBroadcast, kGuestMac, ETH_P_IP, "\x45\x00"), 0},
      },
      discover);
}

TEST(DhcpSocketFilter, IgnoresPort67InsideIpOptions) {
  auto prog = DhcpSocketFilter();
  ASSERT_TRUE(prog.ok());
  // IHL 6: the 4 option bytes say 00 43 00 43, the real UDP header says 9.
  std::string ip = fr::Ipv4(kGuestIp, kPeerIp, IPPROTO_UDP, fr::Udp(5000, 9), 6);
  ip[20] = 0;
  ip[21] = 0x43;
  ip[22] = 0;
  ip[23] = 0x43;
  std::string frame = fr::Ethernet(kGatewayMac, kGuestMac, ETH_P_IP, ip);
  EXPECT_EQ(RunCbpf(*prog, CbpfPacket{frame}), 0u);
  EXPECT_EQ(KernelDelivers(*prog, frame, DhcpDiscover(kGuestMac)), -1);
}

TEST(GuestEgressFilter, GuestSendsOnlyAsItselfAndDhcpStaysLocal) {
  const fr::Mac gw = kGatewayMac;
  auto udp = [&](uint32_t src, uint16_t sport, uint16_t dport, int ihl = 5) {
    return Ip4Frame(kGuestMac, gw, src, kPeerIp, IPPROTO_UDP, fr::Udp(sport, dport), ihl);
  };
  auto arp = [&](const fr::Mac& sha, uint32_t spa) {
    return fr::Ethernet(fr::kBroadcast, kGuestMac, ETH_P_ARP, fr::Arp(1, sha, spa, {}, kPeerIp));
  };
  auto ip6 = [&](const fr::Ip6& src, uint8_t nh, const std::string& payload) {
    return Ip6Frame(kGuestMac, fr::kAllNodes6, src, kAllNodes, nh, payload);
  };
  const std::string ok = udp(kGuestIp, 5000, 5001);
  std::string five_ext = fr::Icmp6(128);
  for (int i = 0; i < 5; ++i) five_ext = fr::Ext6(i == 0 ? 58 : 60, five_ext);
  RunCases(
      Egress(DualStackNic()),
      {
          {"UDP from the Pod IP", ok, kGo},
          {"UDP from the Pod IP, IHL 7", udp(kGuestIp, 5000, 5001, 7), kGo},
          {"TCP from the Pod IP", Ip4Frame(kGuestMac, gw, kGuestIp, kPeerIp, IPPROTO_TCP, fr::Tcp(40000, 80)), kGo},
          {"later fragment from the Pod IP",
           Ip4Frame(kGuestMac, gw, kGuestIp, kPeerIp, IPPROTO_UDP, "payload", 5, 0x0010), kGo},
          {"DHCP discover from 0.0.0.0", DhcpDiscover(kGuestMac), kKeep},
          {"DHCP discover, IHL 6", DhcpDiscover(kGuestMac, 6), kKeep},
          {"DHCP renew from the Pod IP", udp(kGuestIp, 68, 67), kKeep},
          {"spoofed source IP", udp(kOtherIp, 5000, 5001), kDrop},
          {"spoofed source IP, later fragment",
           Ip4Frame(kGuestMac, gw, kOtherIp, kPeerIp, IPPROTO_UDP, "payload", 5, 0x0010), kDrop},
          {"spoofed source MAC", Ip4Frame(kOtherMac, gw, kGuestIp, kPeerIp, IPPROTO_UDP, fr::Udp(1, 2)), kDrop},
          {"DHCP discover from a spoofed MAC", DhcpDiscover(kOtherMac), kDrop},
          {"DHCP server reply", udp(kGuestIp, 67, 68), kDrop},
          {"DHCP server reply, IHL 6", udp(kGuestIp, 67, 68, 6), kDrop},
          {"ARP request", arp(kGuestMac, kGuestIp), kGo},
          {"ARP probe", arp(kGuestMac, 0), kGo},
          {"ARP with a spoofed sender IP", arp(kGuestMac, kOtherIp), kDrop},
          {"ARP with a spoofed sender MAC", arp(kOtherMac, kGuestIp), kDrop},
          {"VLAN tag in the frame", fr::Tagged(gw, kGuestMac, 5, ETH_P_IP, fr::Ipv4(kGuestIp, kPeerIp, 17, "x")),
           kDrop},
          {"VLAN tag taken off by the kernel", ok, kDrop, PACKET_HOST, true},
          {"LLDP", fr::Ethernet(fr::kBroadcast, kGuestMac, 0x88cc, std::string(40, 'l')), kDrop},
          {"802.3 length field (STP)", fr::Ethernet(fr::kBroadcast, kGuestMac, 39, std::string(39, 's')), kDrop},
          {"truncated IPv4 header", fr::Ethernet(gw, kGuestMac, ETH_P_IP, "\x45\x00\x00"), kKeep},
          {"IPv6 UDP from the Pod IPv6", ip6(kGuestIp6, IPPROTO_UDP, fr::Udp(5000, 5001)), kGo},
          {"IPv6 from link-local", ip6(kGuestLinkLocal, IPPROTO_TCP, fr::Tcp(1, 2)), kGo},
          {"IPv6 NS from :: (DAD)", ip6(kUnspecified, 58, fr::Icmp6(135, std::string(20, '\0'))), kGo},
          {"IPv6 from a spoofed address", ip6(kOtherIp6, IPPROTO_UDP, fr::Udp(5000, 5001)), kDrop},
          {"router advertisement", ip6(kGuestLinkLocal, 58, fr::Icmp6(134)), kDrop},
          {"RA behind hop-by-hop", ip6(kGuestLinkLocal, 0, fr::Ext6(58, fr::Icmp6(134))), kDrop},
          {"RA behind two extension headers", ip6(kGuestLinkLocal, 0, fr::Ext6(60, fr::Ext6(58, fr::Icmp6(134), 1))),
           kDrop},
          {"RA in a first fragment", ip6(kGuestLinkLocal, 44, fr::Frag6(58, 0, true, fr::Icmp6(134))), kDrop},
          {"later IPv6 fragment", ip6(kGuestLinkLocal, 44, fr::Frag6(58, 100, false, "tail....")), kGo},
          {"five extension headers", ip6(kGuestLinkLocal, 0, five_ext), kDrop},
          {"ICMPv6 redirect", ip6(kGuestLinkLocal, 58, fr::Icmp6(137, std::string(32, '\0'))), kDrop},
          {"echo request", ip6(kGuestIp6, 58, fr::Icmp6(128)), kGo},
          {"NA for the Pod IPv6", ip6(kGuestLinkLocal, 58, NeighborAdvert(kGuestIp6)), kGo},
          {"NA for a link-local address", ip6(kGuestLinkLocal, 58, NeighborAdvert(kGuestLinkLocal)), kGo},
          {"NA for another Pod's IPv6", ip6(kGuestLinkLocal, 58, NeighborAdvert(kOtherIp6)), kDrop},
          {"DHCPv6 server reply", ip6(kGuestLinkLocal, IPPROTO_UDP, fr::Udp(547, 546)), kDrop},
          {"DHCPv6 solicit", ip6(kGuestLinkLocal, IPPROTO_UDP, fr::Udp(546, 547)), kKeep},
          {"DHCPv6 solicit behind hop-by-hop", ip6(kGuestLinkLocal, 0, fr::Ext6(17, fr::Udp(546, 547))), kKeep},
      },
      ok);
}

TEST(GuestEgressFilter, Ipv4OnlyPodSendsNoIpv6) {
  const std::string ok = Ip4Frame(kGuestMac, kGatewayMac, kGuestIp, kPeerIp, IPPROTO_UDP, fr::Udp(1, 2));
  RunCases(Egress(Ipv4OnlyNic()),
           {
               {"IPv4", ok, kGo},
               {"IPv6 from link-local",
                Ip6Frame(kGuestMac, fr::kAllNodes6, kGuestLinkLocal, kAllNodes, IPPROTO_UDP, fr::Udp(1, 2)), kDrop},
               {"router solicitation",
                Ip6Frame(kGuestMac, fr::kAllNodes6, kGuestLinkLocal, kAllNodes, 58, fr::Icmp6(133)), kDrop},
           },
           ok);
}

TEST(PodIngressFilter, DropsRogueRouterAdvertsAndDhcpServers) {
  auto to_guest4 = [](uint8_t proto, const std::string& l4, int ihl = 5) {
    return Ip4Frame(kGatewayMac, kGuestMac, kPeerIp, kGuestIp, proto, l4, ihl);
  };
  auto ra_from = [](const fr::Ip6& src, const std::string& payload, uint8_t nh = 58) {
    return Ip6Frame(kGatewayMac, fr::kAllNodes6, src, kAllNodes, nh, payload);
  };
  const std::string ok = to_guest4(IPPROTO_UDP, fr::Udp(5001, 5000));
  std::string five_ext = fr::Icmp6(128);
  for (int i = 0; i < 5; ++i) five_ext = fr::Ext6(i == 0 ? 58 : 60, five_ext);
  const std::vector<sock_filter> dual = Ingress(DualStackNic());
  RunCases(
      dual,
      {
          {"UDP to the guest", ok, kGo},
          {"TCP to the guest", to_guest4(IPPROTO_TCP, fr::Tcp(80, 40000)), kGo},
          {"ARP", fr::Ethernet(fr::kBroadcast, kGatewayMac, ETH_P_ARP, fr::Arp(1, kGatewayMac, kPeerIp, {}, kGuestIp)),
           kGo},
          {"DHCP server reply", to_guest4(IPPROTO_UDP, fr::Udp(67, 68)), kDrop},
          {"DHCP server reply, IHL 6", to_guest4(IPPROTO_UDP, fr::Udp(67, 68), 6), kDrop},
          {"UDP from port 67 to another port", to_guest4(IPPROTO_UDP, fr::Udp(67, 9999)), kGo},
          {"RA from the gateway", ra_from(kRouterLinkLocal, fr::Icmp6(134)), kGo},
          {"RA from another host", ra_from(kRogueLinkLocal, fr::Icmp6(134)), kDrop},
          {"RA from another host behind hop-by-hop", ra_from(kRogueLinkLocal, fr::Ext6(58, fr::Icmp6(134)), 0), kDrop},
          {"RA from another host in a first fragment",
           ra_from(kRogueLinkLocal, fr::Frag6(58, 0, true, fr::Icmp6(134)), 44), kDrop},
          {"echo request from another host", ra_from(kRogueLinkLocal, fr::Icmp6(128)), kGo},
          {"five extension headers", ra_from(kRogueLinkLocal, five_ext, 0), kDrop},
          {"DHCPv6 server reply", ra_from(kRogueLinkLocal, fr::Udp(547, 546), 17), kDrop},
          {"DHCPv6 server reply behind hop-by-hop", ra_from(kRogueLinkLocal, fr::Ext6(17, fr::Udp(547, 546)), 0),
           kDrop},
          {"UDP from port 547 to another port", ra_from(kRogueLinkLocal, fr::Udp(547, 9999), 17), kGo},
          {"UDP to the guest over IPv6", ra_from(kRogueLinkLocal, fr::Udp(5001, 5000), 17), kGo},
      },
      ok);
  RunCases(Ingress(Ipv4OnlyNic()),
           {
               {"RA from the would-be gateway", ra_from(kRouterLinkLocal, fr::Icmp6(134)), kDrop},
               {"UDP to the guest", ok, kGo},
           },
           ok);
}

TEST(GuestAddressesFromNic, TakesTheRouterOnlyWhenLinkLocalAndIpv6) {
  auto dual = GuestAddressesFromNic(DualStackNic());
  ASSERT_TRUE(dual.ok()) << dual.status();
  EXPECT_EQ(dual->mac, kGuestMac);
  EXPECT_THAT(dual->ipv4, ::testing::ElementsAre(kGuestIp));
  EXPECT_THAT(dual->ipv6, ::testing::ElementsAre(kGuestIp6));
  EXPECT_EQ(dual->router6, kRouterLinkLocal);

  WiredNic global_gw = DualStackNic();
  global_gw.gateway6 = "fd00:7::1";
  EXPECT_EQ(GuestAddressesFromNic(global_gw)->router6, std::nullopt);
  auto v4 = GuestAddressesFromNic(Ipv4OnlyNic());
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->router6, std::nullopt);

  WiredNic bad = DualStackNic();
  bad.addresses.push_back({"fd00::zz", 64});
  EXPECT_THAT(GuestAddressesFromNic(bad).status().message(), ::testing::HasSubstr("\"fd00::zz\""));
  bad = DualStackNic();
  bad.mac = "nope";
  EXPECT_TRUE(absl::IsInvalidArgument(GuestAddressesFromNic(bad).status()));
  bad = DualStackNic();
  for (int i = 0; i < 17; ++i) bad.addresses.push_back({"10.0.0." + std::to_string(i), 32});
  EXPECT_TRUE(absl::IsInvalidArgument(GuestAddressesFromNic(bad).status()));
}

TEST(GuestFilters, FitWithTheMostAddressesAllowed) {
  WiredNic nic = DualStackNic();
  for (size_t i = 1; i < kMaxAddresses; ++i) {
    nic.addresses.push_back({"10.1.0." + std::to_string(i), 32});
    nic.addresses.push_back({"fd00:1::" + std::to_string(i), 128});
  }
  auto addrs = GuestAddressesFromNic(nic);
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  ASSERT_EQ(addrs->ipv6.size(), kMaxAddresses);
  auto egress = GuestEgressFilter(*addrs);
  ASSERT_TRUE(egress.ok()) << egress.status();
  std::string last = Ip6Frame(kGuestMac, fr::kAllNodes6, fr::Ip6Of({0xfd00, 1, 0, 0, 0, 0, 0, 0x15}), kAllNodes,
                              IPPROTO_UDP, fr::Udp(1, 2));
  EXPECT_EQ(RunCbpf(*egress, CbpfPacket{last}), kGo);
  EXPECT_TRUE(PodIngressFilter(*addrs).ok());
}

TEST(BpfAssembler, ResolvesForwardLabelsAndRefusesBadOnes) {
  bpf::Assembler a("t");
  auto yes = a.NewLabel(), no = a.NewLabel();
  a.LoadByte(0);
  a.JumpIfEqual(1, yes, no);
  a.Bind(yes);
  a.Return(7);
  a.Bind(no);
  a.Return(0);
  auto prog = a.Finish();
  ASSERT_TRUE(prog.ok()) << prog.status();
  EXPECT_EQ((*prog)[1].jt, 0);
  EXPECT_EQ((*prog)[1].jf, 1);
  EXPECT_EQ(RunCbpf(*prog, CbpfPacket{std::string("\x01", 1)}), 7u);
  EXPECT_EQ(RunCbpf(*prog, CbpfPacket{std::string("\x02", 1)}), 0u);

  bpf::Assembler unbound("u");
  unbound.JumpIfEqual(1, unbound.NewLabel(), bpf::Assembler::kNext);
  unbound.Return(0);
  EXPECT_THAT(unbound.Finish().status().message(), ::testing::HasSubstr("never bound"));

  // Branches past 255 instructions go through a BPF_JA trampoline.
  bpf::Assembler far("far");
  auto end = far.NewLabel(), other = far.NewLabel();
  far.LoadByte(0);
  far.JumpIfEqual(1, end, bpf::Assembler::kNext);
  far.JumpIfEqual(2, bpf::Assembler::kNext, other);
  for (int i = 0; i < 300; ++i) far.LoadByte(0);
  far.Return(20);
  far.Bind(end);
  far.Return(10);
  for (int i = 0; i < 300; ++i) far.LoadByte(0);
  far.Bind(other);
  far.Return(30);
  auto long_prog = far.Finish();
  ASSERT_TRUE(long_prog.ok()) << long_prog.status();
  EXPECT_EQ((*long_prog)[2].code, BPF_JMP | BPF_JA);
  EXPECT_EQ(RunCbpf(*long_prog, CbpfPacket{std::string("\x01", 1)}), 10u);
  EXPECT_EQ(RunCbpf(*long_prog, CbpfPacket{std::string("\x02", 1)}), 20u);
  EXPECT_EQ(RunCbpf(*long_prog, CbpfPacket{std::string("\x03", 1)}), 30u);
  EXPECT_EQ(KernelDelivers(*long_prog, std::string("\x02", 1), std::string("\x01", 1)), 1);
  EXPECT_EQ(KernelDelivers(*long_prog, std::string("\x03", 1), std::string("\x01", 1)), 1);

  bpf::Assembler back("back");
  auto before = back.NewLabel();
  back.Bind(before);
  back.LoadByte(0);
  back.JumpIfEqual(1, before, bpf::Assembler::kNext);
  back.Return(0);
  EXPECT_THAT(back.Finish().status().message(), ::testing::HasSubstr("backward"));

  bpf::Assembler no_ret("r");
  no_ret.LoadByte(0);
  EXPECT_FALSE(no_ret.Finish().ok());
}

TEST(ReplyLogLimiter, OneInfoLinePerIntervalCountingTheRest) {
  ReplyLogLimiter limiter(absl::Seconds(60));
  absl::Time t = absl::FromUnixSeconds(1000);
  uint64_t suppressed = 99;
  EXPECT_TRUE(limiter.Allow(t, &suppressed));
  EXPECT_EQ(suppressed, 0u);
  for (int i = 1; i <= 500; ++i) EXPECT_FALSE(limiter.Allow(t + absl::Milliseconds(100 * i), &suppressed));
  EXPECT_TRUE(limiter.Allow(t + absl::Seconds(60), &suppressed));
  EXPECT_EQ(suppressed, 500u);
  EXPECT_FALSE(limiter.Allow(t + absl::Seconds(61), &suppressed));
  EXPECT_TRUE(limiter.Allow(t + absl::Seconds(200), &suppressed));
  EXPECT_EQ(suppressed, 1u);
}

}  // namespace
}  // namespace kvcri::cni
