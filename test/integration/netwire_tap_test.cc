// Wires a Pod-like netns (veth eth0 whose peer sits in a "host" netns), then
// plays the guest on tap0: DHCP through our responder, ARP through the tc
// redirect to the peer and back. Needs root; all traffic stays inside the
// two test namespaces.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/if.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "cni/dhcp_packet.h"
#include "cni/dhcp_server.h"
#include "cni/netns_links.h"
#include "cni/result.h"
#include "cni/tap.h"
#include "config/base/metrics.h"
#include "config/base/netns_exec.h"
#include "config/base/str.h"
#include "test/client/tap_util.h"
#include "config/base/unique_fd.h"
#include "test/fakes/shell.h"

namespace kvcri::cni {
namespace {

using kvcri::testing::Sh;
using kvcri::testing::ShResult;

using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace opt = dhcp::opt;


std::span<const uint8_t> Bytes(const std::string& s) {
  return std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// Reads frames from `fd` until `want` accepts one or 5 s pass.
std::optional<std::string> ReadUntil(int fd, const std::function<bool(const std::string&)>& want) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) continue;
    std::string frame(buf, static_cast<size_t>(n));
    if (want(frame)) return frame;
  }
  return std::nullopt;
}

std::optional<dhcp::Message> AsDhcpReply(const std::string& frame) {
  auto udp = dhcp::ParseUdpFrame(Bytes(frame));
  if (!udp.ok() || udp->dst_port != dhcp::kClientPort) return std::nullopt;
  auto m = dhcp::ParseMessage(Bytes(udp->payload));
  if (!m.ok() || m->op != 2) return std::nullopt;
  return *m;
}

class NetwireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "netwire tests need root (netns, veth, tap, tc): run as root";
    ASSERT_EQ(Sh("command -v ip").exit_code, 0) << "iproute2 (ip) is missing";
    ASSERT_EQ(Sh("test -c /dev/net/tun").exit_code, 0) << "/dev/net/tun is missing";
    std::string id = std::to_string(::getpid());
    pod_ = "kvcri-nw-pod-" + id;
    host_ = "kvcri-nw-host-" + id;
    netns_ = "/run/netns/" + pod_;
    const std::string setup =
        "set -e; ip netns add " + pod_ + "; ip netns add " + host_ + "; ip -n " + pod_ +
        " link add eth0 mtu 1400 type veth peer name peer0 netns " + host_ + "; ip -n " + host_ +
        " link set peer0 mtu 1400 up" + "; ip -n " + host_ + " addr add 10.252.7.1/24 dev peer0" +
        "; ip -n " + pod_ + " link set lo up; ip -n " + pod_ + " link set eth0 up" + "; ip -n " + pod_ +
        " addr add 10.252.7.2/24 dev eth0" + "; ip -n " + pod_ + " route add default via 10.252.7.1" +
        "; ip -n " + pod_ + " route add 10.96.0.0/12 via 10.252.7.1";
    ShResult r = Sh(setup);
    ASSERT_EQ(r.exit_code, 0) << setup << "\n" << r.output;
    mac_ = Sh("ip netns exec " + pod_ + " cat /sys/class/net/eth0/address").output;
    while (!mac_.empty() && mac_.back() == '\n') mac_.pop_back();
  }
  void TearDown() override {
    Sh("ip netns del " + pod_);
    Sh("ip netns del " + host_);
  }

  // The test's end of tap0, opened inside the Pod netns like QEMU would.
  base::UniqueFd OpenTap() { return testing::OpenGuestTap(netns_, pod_, "tap0"); }

  // A capture of everything peer0 receives, in the host netns.
  base::UniqueFd CapturePeer() { return testing::OpenPacketSocket("/run/netns/" + host_, "peer0"); }

  std::string ClientFrame(const dhcp::Message& m) {
    dhcp::UdpFrame f;
    f.dst_mac.fill(0xff);
    f.src_mac = m.chaddr;
    f.src_ip = 0;
    f.dst_ip = 0xffffffff;
    f.src_port = dhcp::kClientPort;
    f.dst_port = dhcp::kServerPort;
    f.payload = dhcp::SerializeMessage(m);
    return dhcp::BuildUdpFrame(f);
  }

  std::string pod_, host_, netns_, mac_;
};

TEST_F(NetwireTest, WireTapReportsCniConfigAndMovesTheIpToTheGuest) {
  auto nic = WireTap(netns_);
  ASSERT_TRUE(nic.ok()) << nic.status();
  EXPECT_EQ(nic->tap_name, "tap0");
  EXPECT_EQ(nic->mac, mac_);
  EXPECT_EQ(nic->mtu, 1400);
  EXPECT_THAT(nic->addresses, ElementsAre(IpPrefix{"10.252.7.2", 24}));
  EXPECT_EQ(nic->gateway4, "10.252.7.1");
  EXPECT_THAT(nic->routes,
              ElementsAre(IpRoute{"0.0.0.0/0", "10.252.7.1"}, IpRoute{"10.96.0.0/12", "10.252.7.1"}));

  ShResult addrs = Sh("ip -n " + pod_ + " -o addr show dev eth0");
  EXPECT_THAT(addrs.output, ::testing::Not(HasSubstr("inet ")));
  ShResult eth0 = Sh("ip -n " + pod_ + " link show eth0");
  EXPECT_THAT(eth0.output, HasSubstr("state UP"));
  ShResult tap = Sh("ip -n " + pod_ + " -d link show tap0");
  EXPECT_THAT(tap.output, HasSubstr("mtu 1400"));
  EXPECT_THAT(tap.output, HasSubstr("vnet_hdr on"));
  EXPECT_THAT(tap.output, HasSubstr("persist on"));
  EXPECT_THAT(Sh("ip netns exec " + pod_ + " tc filter show dev eth0 ingress").output,
              HasSubstr("Egress Redirect to device tap0"));
  EXPECT_THAT(Sh("ip netns exec " + pod_ + " tc filter show dev tap0 ingress").output,
              HasSubstr("Egress Redirect to device eth0"));

  // After a daemon restart the same call must give the same answer.
  auto again = WireTap(netns_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *nic);
}

TEST_F(NetwireTest, GuestGetsDhcpLeaseAndReachesPeerThroughRedirect) {
  auto nic = WireTap(netns_);
  ASSERT_TRUE(nic.ok()) << nic.status();
  auto lease =
      LeaseFromWiredNic(*nic, {"10.96.0.10"}, {"default.svc.cluster.local", "svc.cluster.local"}, "web-0");
  ASSERT_TRUE(lease.ok()) << lease.status();
  base::MetricsRegistry registry;
  DhcpMetrics metrics{*registry.Gauge("kvcri_dhcp_leases", "h"),
                      *registry.Counter("kvcri_dhcp_replies_total", "h", {"type"})};
  auto server = DhcpServer::Start(metrics);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT(registry.Expose(), HasSubstr("\nkvcri_dhcp_leases 0\n"));
  ASSERT_TRUE((*server)->Add("pod-1", netns_, *lease).ok());
  EXPECT_THAT(registry.Expose(), HasSubstr("\nkvcri_dhcp_leases 1\n"));

  base::UniqueFd peer = CapturePeer();
  base::UniqueFd tap = OpenTap();
  ASSERT_TRUE(tap.valid());
  dhcp::Mac mac = *dhcp::ParseMac(mac_);

  // DISCOVER -> OFFER
  dhcp::Message discover;
  discover.op = 1;
  discover.xid = 0x1234;
  discover.chaddr = mac;
  discover.options[opt::kMessageType] = std::string(1, static_cast<char>(dhcp::MessageType::kDiscover));
  std::string frame = ClientFrame(discover);
  ASSERT_EQ(::write(tap.get(), frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
  auto offer_frame = ReadUntil(tap.get(), [](const std::string& f) { return AsDhcpReply(f).has_value(); });
  ASSERT_TRUE(offer_frame.has_value()) << "no DHCP OFFER on tap0 within 5s";
  dhcp::Message offer = *AsDhcpReply(*offer_frame);
  auto offer_udp = dhcp::ParseUdpFrame(Bytes(*offer_frame));
  EXPECT_EQ(dhcp::FormatMac(offer_udp->dst_mac), mac_);
  EXPECT_EQ(offer.type(), dhcp::MessageType::kOffer);
  EXPECT_EQ(offer.xid, 0x1234u);
  EXPECT_EQ(dhcp::FormatIp4(offer.yiaddr), "10.252.7.2");
  EXPECT_EQ(offer.Ip4Option(opt::kSubnetMask), 0xffffff00u);
  EXPECT_EQ(dhcp::FormatIp4(*offer.Ip4Option(opt::kRouter)), "10.252.7.1");
  EXPECT_EQ(dhcp::FormatIp4(*offer.Ip4Option(opt::kDns)), "10.96.0.10");
  EXPECT_EQ(offer.options[opt::kHostName], "web-0");
  EXPECT_EQ(offer.options[opt::kMtu], std::string("\x05\x78", 2));
  auto search = dhcp::DecodeDomainSearch(offer.options[opt::kDomainSearch]);
  ASSERT_TRUE(search.ok());
  EXPECT_THAT(*search, ElementsAre("default.svc.cluster.local", "svc.cluster.local"));
  auto routes = dhcp::DecodeClasslessRoutes(offer.options[opt::kClasslessRoutes]);
  ASSERT_TRUE(routes.ok());
  EXPECT_EQ(routes->size(), 2u);

  // REQUEST -> ACK
  dhcp::Message request = discover;
  request.xid = 0x1235;
  request.options[opt::kMessageType] = std::string(1, static_cast<char>(dhcp::MessageType::kRequest));
  request.SetIp4Option(opt::kRequestedIp, offer.yiaddr);
  request.SetIp4Option(opt::kServerId, *offer.Ip4Option(opt::kServerId));
  frame = ClientFrame(request);
  ASSERT_EQ(::write(tap.get(), frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
  auto ack = ReadUntil(tap.get(), [](const std::string& f) {
    auto m = AsDhcpReply(f);
    return m && m->xid == 0x1235;
  });
  ASSERT_TRUE(ack.has_value()) << "no DHCP ACK on tap0 within 5s";
  EXPECT_EQ(AsDhcpReply(*ack)->type(), dhcp::MessageType::kAck);

  // REQUEST for another address -> NAK
  request.xid = 0x1236;
  request.options.erase(opt::kServerId);
  request.SetIp4Option(opt::kRequestedIp, *dhcp::ParseIp4("10.252.7.99"));
  frame = ClientFrame(request);
  ASSERT_EQ(::write(tap.get(), frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
  auto nak = ReadUntil(tap.get(), [](const std::string& f) {
    auto m = AsDhcpReply(f);
    return m && m->xid == 0x1236;
  });
  ASSERT_TRUE(nak.has_value()) << "no DHCP NAK on tap0 within 5s";
  EXPECT_EQ(AsDhcpReply(*nak)->type(), dhcp::MessageType::kNak);

  // ARP who-has 10.252.7.1 from the guest: out through tap0 -> eth0, the
  // peer answers to the guest's MAC, back through eth0 -> tap0.
  std::string arp(42, '\0');
  std::memset(arp.data(), 0xff, 6);
  std::memcpy(arp.data() + 6, mac.data(), 6);
  const uint8_t hdr[] = {0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01};
  std::memcpy(arp.data() + 12, hdr, sizeof hdr);
  std::memcpy(arp.data() + 22, mac.data(), 6);
  const uint8_t spa[] = {10, 252, 7, 2}, tpa[] = {10, 252, 7, 1};
  std::memcpy(arp.data() + 28, spa, 4);
  std::memcpy(arp.data() + 38, tpa, 4);
  ASSERT_EQ(::write(tap.get(), arp.data(), arp.size()), static_cast<ssize_t>(arp.size()));
  auto reply = ReadUntil(tap.get(), [&](const std::string& f) {
    return f.size() >= 42 && static_cast<uint8_t>(f[12]) == 0x08 && f[13] == 0x06 && f[21] == 2 &&
           std::memcmp(f.data() + 28, tpa, 4) == 0 && std::memcmp(f.data() + 32, mac.data(), 6) == 0;
  });
  ASSERT_TRUE(reply.has_value()) << "no ARP reply from the peer on tap0 within 5s: tc redirect broken";

  // The peer saw the ARP request but none of the DHCP exchange.
  bool saw_arp = false, saw_dhcp = false;
  char buf[4096];
  for (ssize_t n; (n = ::recv(peer.get(), buf, sizeof buf, 0)) > 0;) {
    std::string f(buf, static_cast<size_t>(n));
    if (f.size() >= 14 && static_cast<uint8_t>(f[12]) == 0x08 && f[13] == 0x06) saw_arp = true;
    auto udp = dhcp::ParseUdpFrame(Bytes(f));
    if (udp.ok() && (udp->dst_port == 67 || udp->dst_port == 68)) saw_dhcp = true;
  }
  EXPECT_TRUE(saw_arp);
  EXPECT_FALSE(saw_dhcp) << "DHCP leaked onto the Pod network";
  // The server counts a reply once it is sent, on its own thread: the NAK
  // the test has read may not be counted yet on a loaded machine.
  auto counted = [&](const std::string& text) {
    for (const char* type : {"offer", "ack", "nak"}) {
      if (text.find(base::StrCat("kvcri_dhcp_replies_total{type=\"", type, "\"} 1\n")) == std::string::npos) {
        return false;
      }
    }
    return true;
  };
  std::string text = registry.Expose();
  for (int i = 0; i < 500 && !counted(text); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    text = registry.Expose();
  }
  for (const char* type : {"offer", "ack", "nak"}) {
    EXPECT_THAT(text, HasSubstr(base::StrCat("kvcri_dhcp_replies_total{type=\"", type, "\"} 1\n")));
  }

  ASSERT_TRUE((*server)->Remove("pod-1").ok());
  EXPECT_TRUE((*server)->Remove("pod-1").ok());
  EXPECT_THAT(registry.Expose(), HasSubstr("\nkvcri_dhcp_leases 0\n"));
}

TEST_F(NetwireTest, UnwireLeavesNoTapOrQdiscAndToleratesRepeats) {
  ASSERT_TRUE(WireTap(netns_).ok());
  ASSERT_TRUE(Unwire(netns_).ok());
  EXPECT_NE(Sh("ip -n " + pod_ + " link show tap0").exit_code, 0);
  EXPECT_THAT(Sh("ip netns exec " + pod_ + " tc qdisc show dev eth0").output,
              ::testing::Not(HasSubstr("ingress")));
  EXPECT_TRUE(Unwire(netns_).ok());
  EXPECT_TRUE(Unwire("/run/netns/kvcri-nw-does-not-exist").ok());
}

TEST_F(NetwireTest, RewireWithoutWiringRecordIsFailedPrecondition) {
  ASSERT_TRUE(WireTap(netns_).ok());
  ShResult clear = Sh("ip -n " + pod_ + " link set dev tap0 alias ''");
  ASSERT_EQ(clear.exit_code, 0) << clear.output;
  auto again = WireTap(netns_);
  EXPECT_TRUE(absl::IsFailedPrecondition(again.status())) << again.status();
}

TEST_F(NetwireTest, WireTapWithoutCniInterfaceIsNotFound) {
  auto nic = WireTap(netns_, "eth9");
  EXPECT_TRUE(absl::IsNotFound(nic.status())) << nic.status();
  EXPECT_NE(Sh("ip -n " + pod_ + " link show tap0").exit_code, 0);
}

TEST_F(NetwireTest, DhcpAddForMissingTapIsNotFound) {
  auto server = DhcpServer::Start();
  ASSERT_TRUE(server.ok());
  Lease lease;
  lease.mac = "02:00:00:00:00:01";
  lease.ip = "10.252.7.2";
  lease.prefix_len = 24;
  absl::Status s = (*server)->Add("pod-x", netns_, lease);
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
}

// Several networks (Multus): net1 with its own subnet and no routes, net2
// with no address at all, next to eth0. Each gets its own tap; DHCP answers
// on each tap with that NIC's lease (no router on net1), and one Remove ends
// them all.
TEST_F(NetwireTest, EachCniInterfaceGetsItsTapAndItsOwnDhcpAnswers) {
  const std::string setup = "set -e; ip -n " + pod_ + " link add net1 mtu 1300 type veth peer name peer1 netns " +
                            host_ + "; ip -n " + pod_ + " link set net1 up; ip -n " + pod_ +
                            " addr add 10.252.8.5/24 dev net1; ip -n " + pod_ +
                            " link add net2 type veth peer name peer2 netns " + host_ + "; ip -n " + pod_ +
                            " link set net2 up; ip -n " + host_ + " link set peer1 up; ip -n " + host_ +
                            " link set peer2 up";
  ShResult r = Sh(setup);
  ASSERT_EQ(r.exit_code, 0) << setup << "\n" << r.output;
  NetlinkTapWiring wiring;
  auto eth0 = wiring.Wire(netns_, "eth0", "tap0");
  auto net1 = wiring.Wire(netns_, "net1", "tap1");
  auto net2 = wiring.Wire(netns_, "net2", "tap2");
  ASSERT_TRUE(eth0.ok()) << eth0.status();
  ASSERT_TRUE(net1.ok()) << net1.status();
  ASSERT_TRUE(net2.ok()) << net2.status();
  EXPECT_EQ(eth0->gateway4, "10.252.7.1");
  EXPECT_THAT(net1->addresses, ElementsAre(IpPrefix{"10.252.8.5", 24}));
  EXPECT_EQ(net1->mtu, 1300);
  EXPECT_TRUE(net1->gateway4.empty());
  EXPECT_TRUE(net1->routes.empty());
  EXPECT_TRUE(net2->addresses.empty());
  EXPECT_THAT(Sh("ip -n " + pod_ + " link show tap1").output, HasSubstr("mtu 1300"));
  EXPECT_THAT(Sh("ip netns exec " + pod_ + " tc filter show dev net1 ingress").output,
              HasSubstr("Egress Redirect to device tap1"));
  EXPECT_THAT(Sh("ip netns exec " + pod_ + " tc filter show dev tap1 ingress").output, HasSubstr("bpf"));
  // The L2-only NIC: joined, but with no guard (no address to hold the guest to).
  const std::string tap2 = Sh("ip netns exec " + pod_ + " tc filter show dev tap2 ingress").output;
  EXPECT_THAT(tap2, HasSubstr("Egress Redirect to device net2"));
  EXPECT_THAT(tap2, ::testing::Not(HasSubstr("bpf")));
  // Re-wiring (a daemon restart) gives the same NICs.
  auto again = wiring.Wire(netns_, "net1", "tap1");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *net1);
  auto again2 = wiring.Wire(netns_, "net2", "tap2");
  ASSERT_TRUE(again2.ok()) << again2.status();
  EXPECT_EQ(*again2, *net2);

  auto server = DhcpServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  auto lease0 = LeaseFromWiredNic(*eth0, {}, {}, "web-0");
  auto lease1 = LeaseFromWiredNic(*net1, {}, {}, "web-0");
  ASSERT_TRUE(lease0.ok() && lease1.ok());
  ASSERT_TRUE((*server)->Add("pod-m", netns_, *lease0, "tap0").ok());
  ASSERT_TRUE((*server)->Add("pod-m", netns_, *lease1, "tap1").ok());
  base::UniqueFd t0 = OpenTap();
  base::UniqueFd t1 = testing::OpenGuestTap(netns_, pod_, "tap1");
  ASSERT_TRUE(t0.valid() && t1.valid());
  auto offer_on = [&](int fd, const std::string& mac, uint32_t xid) -> std::optional<dhcp::Message> {
    dhcp::Message discover;
    discover.op = 1;
    discover.xid = xid;
    discover.chaddr = *dhcp::ParseMac(mac);
    discover.options[opt::kMessageType] = std::string(1, static_cast<char>(dhcp::MessageType::kDiscover));
    std::string frame = ClientFrame(discover);
    if (::write(fd, frame.data(), frame.size()) != static_cast<ssize_t>(frame.size())) return std::nullopt;
    auto f = ReadUntil(fd, [&](const std::string& f) {
      auto m = AsDhcpReply(f);
      return m && m->xid == xid;
    });
    if (!f) return std::nullopt;
    return AsDhcpReply(*f);
  };
  auto o1 = offer_on(t1.get(), net1->mac, 0x7001);
  ASSERT_TRUE(o1.has_value()) << "no DHCP OFFER on tap1 within 5s";
  EXPECT_EQ(dhcp::FormatIp4(o1->yiaddr), "10.252.8.5");
  EXPECT_FALSE(o1->Ip4Option(opt::kRouter).has_value()) << "net1 has no default route: no router";
  EXPECT_EQ(o1->options[opt::kMtu], std::string("\x05\x14", 2));  // 1300
  auto o0 = offer_on(t0.get(), eth0->mac, 0x7000);
  ASSERT_TRUE(o0.has_value()) << "no DHCP OFFER on tap0 within 5s";
  EXPECT_EQ(dhcp::FormatIp4(o0->yiaddr), "10.252.7.2");
  EXPECT_EQ(dhcp::FormatIp4(*o0->Ip4Option(opt::kRouter)), "10.252.7.1");
  // eth0's guest MAC asking on tap1 is not net1's guest: no answer.
  EXPECT_FALSE(offer_on(t1.get(), eth0->mac, 0x7002).has_value());
  EXPECT_GT(*(*server)->FramesSeen("pod-m", "tap1"), 0u);

  ASSERT_TRUE((*server)->Remove("pod-m").ok());
  EXPECT_TRUE(absl::IsNotFound((*server)->FramesSeen("pod-m", "tap0").status()));
  EXPECT_TRUE(absl::IsNotFound((*server)->FramesSeen("pod-m", "tap1").status()));
  for (auto [ifname, tap] : {std::pair{"eth0", "tap0"}, std::pair{"net1", "tap1"}, std::pair{"net2", "tap2"}}) {
    EXPECT_TRUE(wiring.Unwire(netns_, ifname, tap).ok());
    EXPECT_NE(Sh("ip -n " + pod_ + " link show " + tap).exit_code, 0) << tap;
  }
}


// The IPv6 gateway's MAC is learnt at wiring (the guest's RAs name that
// router), recorded on the tap so a re-wire keeps it, and a gateway that does
// not answer costs at most the probe's five seconds without failing the wiring.
TEST_F(NetwireTest, WireTapLearnsTheIpv6GatewaysMac) {
  const std::string setup = "set -e; ip -n " + host_ + " -6 addr add fd00:7::1/64 dev peer0 nodad; ip -n " + pod_ +
                            " -6 addr add fd00:7::2/64 dev eth0 nodad; ip -n " + pod_ +
                            " -6 route add default via fd00:7::1 dev eth0";
  ShResult r = Sh(setup);
  ASSERT_EQ(r.exit_code, 0) << setup << "\n" << r.output;
  std::string peer_mac = Sh("ip netns exec " + host_ + " cat /sys/class/net/peer0/address").output;
  while (!peer_mac.empty() && peer_mac.back() == '\n') peer_mac.pop_back();
  auto nic = WireTap(netns_);
  ASSERT_TRUE(nic.ok()) << nic.status();
  EXPECT_THAT(nic->addresses, ElementsAre(IpPrefix{"10.252.7.2", 24}, IpPrefix{"fd00:7::2", 64}));
  EXPECT_EQ(nic->gateway6, "fd00:7::1");
  EXPECT_EQ(nic->gateway6_mac, peer_mac);
  auto again = WireTap(netns_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *nic);
  ASSERT_TRUE(Unwire(netns_).ok());

  // A gateway nobody answers for (Unwire gave eth0 its addresses back).
  const std::string setup2 = "set -e; ip -n " + pod_ + " -6 addr replace fd00:7::2/64 dev eth0 nodad; ip -n " + pod_ +
                             " -6 route replace default via fd00:7::99 dev eth0; sysctl -q -w net.ipv6.conf.eth0.disable_ipv6=0";
  r = Sh("ip netns exec " + pod_ + " sh -c 'sysctl -q -w net.ipv6.conf.eth0.disable_ipv6=0'; " + setup2);
  ASSERT_EQ(r.exit_code, 0) << setup2 << "\n" << r.output;
  auto start = std::chrono::steady_clock::now();
  auto silent = WireTap(netns_);
  ASSERT_TRUE(silent.ok()) << silent.status();
  EXPECT_EQ(silent->gateway6, "fd00:7::99");
  EXPECT_EQ(silent->gateway6_mac, "");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(7));
}

// Real IPv6 clients against our responder: a kernel stack (the "guest"
// netns, at the far end of a veth standing in for the tap) takes our RAs,
// rdisc6 (ndisc6) shows what they carry, and ISC dhclient -6 gets the Pod
// address, DNS and search list by DHCPv6.
TEST_F(NetwireTest, RealIpv6ClientsConfigureThemselvesFromOurResponder) {
  ASSERT_EQ(Sh("command -v rdisc6 && command -v dhclient").exit_code, 0)
      << "rdisc6 (ndisc6) and dhclient (isc-dhcp-client) are missing: scripts/install-deps.sh --test";
  const std::string guest = "kvcri-nw-guest-" + std::to_string(::getpid());
  struct DelNetns {
    std::string name;
    ~DelNetns() { Sh("ip netns del " + name); }
  } del{guest};
  const std::string setup = "set -e; ip netns add " + guest + "; ip -n " + pod_ +
                            " link add vtap0 type veth peer name geth0 netns " + guest + "; ip -n " + pod_ +
                            " link set vtap0 up; ip netns exec " + guest +
                            " sh -c 'sysctl -q -w net.ipv6.conf.geth0.accept_dad=0 net.ipv6.conf.geth0.accept_ra=1'";
  ShResult r = Sh(setup);
  ASSERT_EQ(r.exit_code, 0) << setup << "\n" << r.output;
  std::string guest_mac = Sh("ip netns exec " + guest + " cat /sys/class/net/geth0/address").output;
  while (!guest_mac.empty() && guest_mac.back() == '\n') guest_mac.pop_back();

  Lease lease;
  lease.mac = guest_mac;
  Lease6 v6;
  v6.mac = guest_mac;
  v6.ip = "fd00:7::2";
  v6.prefix_len = 64;
  v6.router_mac = "0a:58:0a:fc:07:01";
  v6.dns = {"10.96.0.10", "fd00:7::53"};
  v6.searches = {"default.svc.cluster.local", "example.test"};
  v6.mtu = 1400;
  lease.v6 = v6;
  base::MetricsRegistry registry;
  DhcpMetrics metrics{*registry.Gauge("kvcri_dhcp_leases", "h"),
                      *registry.Counter("kvcri_dhcp_replies_total", "h", {"type"})};
  auto server = DhcpServer::Start(metrics);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Add("pod-6", netns_, lease, "vtap0").ok());

  // The guest's kernel: link up sends router solicitations; our RA gives it
  // the on-link prefix and a default route via the gateway's link-local
  // address, whose MAC it learns from the RA itself.
  r = Sh("ip -n " + guest + " link set geth0 up");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string router_ll = "fe80::858:aff:fefc:701";
  std::string routes;
  for (int i = 0; i < 50; ++i) {
    routes = Sh("ip -n " + guest + " -6 route show dev geth0").output;
    if (routes.find("default via " + router_ll) != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_THAT(routes, HasSubstr("default via " + router_ll));
  EXPECT_THAT(routes, HasSubstr("fd00:7::/64 "));  // on-link from the prefix option
  EXPECT_THAT(Sh("ip -n " + guest + " -6 neigh show dev geth0").output,
              HasSubstr(router_ll + " lladdr 0a:58:0a:fc:07:01 router"));
  EXPECT_THAT(Sh("ip -n " + guest + " -6 addr show dev geth0").output, ::testing::Not(HasSubstr("fd00:7:")))
      << "A=0: no SLAAC address";

  // rdisc6: what the RA says, field by field.
  r = Sh("ip netns exec " + guest + " rdisc6 -1 -w 3000 geth0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ::testing::ContainsRegex("Stateful address conf\\.\\s*:\\s*Yes"));
  EXPECT_THAT(r.output, ::testing::ContainsRegex("Stateful other conf\\.\\s*:\\s*Yes"));
  EXPECT_THAT(r.output, ::testing::ContainsRegex("Router lifetime\\s*:\\s*1800"));
  EXPECT_THAT(r.output, ::testing::ContainsRegex("Prefix\\s*:\\s*fd00:7::/64"));
  EXPECT_THAT(r.output, ::testing::ContainsRegex("Autonomous address conf\\.\\s*:\\s*No"));
  EXPECT_THAT(r.output, ::testing::ContainsRegex("MTU\\s*:\\s*1400"));
  EXPECT_THAT(r.output, ::testing::ContainsRegex("Recursive DNS server\\s*:\\s*fd00:7::53"));
  EXPECT_THAT(r.output, HasSubstr("from " + router_ll));

  // dhclient -6, once, with a script that only records what it was given.
  const std::string dir = "/tmp/kvcri-nw-dhclient-" + std::to_string(::getpid());
  Sh("rm -rf " + dir + "; mkdir -p " + dir);
  Sh("printf '#!/bin/sh\\nenv | grep -E \"^(reason|new_)\" >> " + dir + "/env\\n' > " + dir +
     "/script; chmod +x " + dir + "/script");
  r = Sh("timeout 30 ip netns exec " + guest + " dhclient -6 -1 -v -lf " + dir + "/leases -pf " + dir +
         "/pid -sf " + dir + "/script geth0");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  Sh("test -s " + dir + "/pid && kill $(cat " + dir + "/pid)");
  const std::string env = Sh("cat " + dir + "/env").output;
  EXPECT_THAT(env, HasSubstr("reason=BOUND6"));
  EXPECT_THAT(env, HasSubstr("new_ip6_address=fd00:7::2"));
  EXPECT_THAT(env, HasSubstr("new_dhcp6_name_servers=fd00:7::53"));
  EXPECT_THAT(env, HasSubstr("new_dhcp6_domain_search=default.svc.cluster.local. example.test."));
  Sh("rm -rf " + dir);
  EXPECT_THAT(registry.Expose(), HasSubstr("kvcri_dhcp_replies_total{type=\"reply\"} 1\n"));
  EXPECT_THAT(registry.Expose(), HasSubstr("kvcri_dhcp_replies_total{type=\"advertise\"} 1\n"));
  ASSERT_TRUE((*server)->Remove("pod-6").ok());
}

// containerd-shim mode: containerd's CRI ran CNI, our shim reads what it
// left. eth0 comes first whatever its ifindex, net1 (a Multus-style second
// network, dual-stack here) after it; lo and our taps are not interfaces of
// the result; the default route's gateway is eth0's.
TEST_F(NetwireTest, WhatCniLeftInTheNetnsReadsAsACniResult) {
  const std::string setup = "set -e; ip -n " + pod_ + " link add net1 mtu 1300 type veth peer name peer1 netns " +
                            host_ + "; ip -n " + pod_ + " link set net1 up; ip -n " + pod_ +
                            " addr add 10.252.8.5/24 dev net1; ip -n " + pod_ +
                            " addr add fd00:8::5/64 dev net1 nodad";
  ShResult r = Sh(setup);
  ASSERT_EQ(r.exit_code, 0) << setup << "\n" << r.output;
  absl::StatusOr<CniResult> result = ReadNetnsAsCniResult(netns_, "eth0");
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->interfaces.size(), 2u);
  EXPECT_EQ(result->interfaces[0].name, "eth0");
  EXPECT_EQ(result->interfaces[0].mac, mac_);
  EXPECT_EQ(result->interfaces[0].mtu, 1400);
  EXPECT_EQ(result->interfaces[0].sandbox, netns_);
  EXPECT_EQ(result->interfaces[1].name, "net1");
  EXPECT_THAT(result->ips, ElementsAre(CniIpConfig{"10.252.7.2/24", "10.252.7.1", 0},
                                       CniIpConfig{"10.252.8.5/24", "", 1}, CniIpConfig{"fd00:8::5/64", "", 1}));
  EXPECT_THAT(result->routes, ElementsAre(CniRoute{"0.0.0.0/0", "10.252.7.1"}, CniRoute{"10.96.0.0/12", "10.252.7.1"}));
  EXPECT_THAT(PodIps(*result, "eth0"), ElementsAre("10.252.7.2"));
  EXPECT_THAT(SandboxInterfaces(*result, netns_), ElementsAre("eth0", "net1"));
  // Its JSON is a result our own parser reads back to the same thing.
  absl::StatusOr<CniResult> again = ParseCniResult(result->raw_json);
  ASSERT_TRUE(again.ok()) << again.status();
  again->raw_json = result->raw_json;
  EXPECT_EQ(*again, *result);

  // After the wiring (a shim restart reads it again) the taps are left out.
  NetlinkTapWiring wiring;
  ASSERT_TRUE(wiring.Wire(netns_, "eth0", "tap0").ok());
  absl::StatusOr<CniResult> wired = ReadNetnsAsCniResult(netns_, "eth0");
  ASSERT_TRUE(wired.ok()) << wired.status();
  EXPECT_EQ(wired->interfaces.size(), 2u);

  EXPECT_TRUE(absl::IsNotFound(ReadNetnsAsCniResult("/run/netns/kvcri-no-such-netns").status()));
  ASSERT_EQ(Sh("ip netns add " + host_ + "-empty").exit_code, 0);
  absl::StatusOr<CniResult> empty = ReadNetnsAsCniResult("/run/netns/" + host_ + "-empty");
  Sh("ip netns del " + host_ + "-empty");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kFailedPrecondition) << empty.status();
}

}  // namespace
}  // namespace kvcri::cni
