// DhcpResponder: which requests get an OFFER, ACK or NAK and what the replies carry.
#include "cni/dhcp_responder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kvcri::cni {
namespace {

using dhcp::MessageType;
using ::testing::ElementsAre;
namespace opt = dhcp::opt;

Lease TestLease() {
  Lease l;
  l.mac = "0a:58:0a:f4:01:05";
  l.ip = "10.244.1.5";
  l.prefix_len = 24;
  l.gateway = "10.244.1.1";
  l.routes = {{"0.0.0.0/0", "10.244.1.1"}, {"10.96.0.0/12", "10.244.1.1"}, {"fd00::/8", "fd00::1"}};
  l.dns = {"10.96.0.10", "fd00::10"};
  l.searches = {"default.svc.cluster.local", "svc.cluster.local", "cluster.local"};
  l.hostname = "web-0";
  l.mtu = 1450;
  return l;
}

dhcp::Message Request(MessageType type) {
  dhcp::Message m;
  m.op = 1;
  m.xid = 42;
  m.chaddr = *dhcp::ParseMac("0a:58:0a:f4:01:05");
  m.options[opt::kMessageType] = std::string(1, static_cast<char>(type));
  return m;
}

DhcpResponder Make(const Lease& l = TestLease()) {
  auto r = DhcpResponder::Create(l);
  EXPECT_TRUE(r.ok()) << r.status();
  return *std::move(r);
}

TEST(DhcpResponder, DiscoverGetsOfferWithEveryOption) {
  auto rep = Make().Handle(Request(MessageType::kDiscover));
  ASSERT_TRUE(rep.has_value());
  EXPECT_EQ(rep->op, 2);
  EXPECT_EQ(rep->xid, 42u);
  EXPECT_EQ(rep->type(), MessageType::kOffer);
  EXPECT_EQ(dhcp::FormatIp4(rep->yiaddr), "10.244.1.5");
  EXPECT_EQ(rep->Ip4Option(opt::kSubnetMask), 0xffffff00u);
  EXPECT_EQ(rep->Ip4Option(opt::kRouter), *dhcp::ParseIp4("10.244.1.1"));
  EXPECT_EQ(rep->Ip4Option(opt::kServerId), *dhcp::ParseIp4("10.244.1.1"));
  EXPECT_EQ(rep->Ip4Option(opt::kBroadcast), *dhcp::ParseIp4("10.244.1.255"));
  EXPECT_EQ(rep->options[opt::kDns], std::string("\x0a\x60\x00\x0a", 4));  // IPv6 server skipped
  EXPECT_EQ(rep->options[opt::kHostName], "web-0");
  EXPECT_EQ(rep->options[opt::kDomainName], "default.svc.cluster.local");
  EXPECT_EQ(rep->options[opt::kMtu], std::string("\x05\xaa", 2));
  EXPECT_EQ(rep->options[opt::kLeaseTime], std::string("\x00\x01\x51\x80", 4));
  EXPECT_TRUE(rep->options.contains(opt::kRenewal));
  EXPECT_TRUE(rep->options.contains(opt::kRebinding));
  auto search = dhcp::DecodeDomainSearch(rep->options[opt::kDomainSearch]);
  ASSERT_TRUE(search.ok());
  EXPECT_THAT(*search, ElementsAre("default.svc.cluster.local", "svc.cluster.local", "cluster.local"));
  auto routes = dhcp::DecodeClasslessRoutes(rep->options[opt::kClasslessRoutes]);
  ASSERT_TRUE(routes.ok());
  EXPECT_THAT(*routes, ElementsAre(dhcp::Route4{0, 0, 0x0af40101}, dhcp::Route4{0x0a600000, 12, 0x0af40101}));
}

TEST(DhcpResponder, NoClasslessRoutesWhenOnlyDefault) {
  Lease l = TestLease();
  l.routes = {{"0.0.0.0/0", "10.244.1.1"}};
  auto rep = Make(l).Handle(Request(MessageType::kDiscover));
  ASSERT_TRUE(rep.has_value());
  EXPECT_FALSE(rep->options.contains(opt::kClasslessRoutes));
  EXPECT_TRUE(rep->options.contains(opt::kRouter));
}

TEST(DhcpResponder, ClasslessRoutesAddDefaultWhenCniListsOnlyOthers) {
  Lease l = TestLease();
  l.routes = {{"10.96.0.0/12", "10.244.1.1"}};
  auto rep = Make(l).Handle(Request(MessageType::kDiscover));
  auto routes = dhcp::DecodeClasslessRoutes(rep->options[opt::kClasslessRoutes]);
  ASSERT_TRUE(routes.ok());
  EXPECT_THAT(*routes, ElementsAre(dhcp::Route4{0, 0, 0x0af40101}, dhcp::Route4{0x0a600000, 12, 0x0af40101}));
}

TEST(DhcpResponder, RequestForLeasedAddressIsAcked) {
  auto req = Request(MessageType::kRequest);
  req.SetIp4Option(opt::kRequestedIp, *dhcp::ParseIp4("10.244.1.5"));
  req.SetIp4Option(opt::kServerId, *dhcp::ParseIp4("10.244.1.1"));
  auto rep = Make().Handle(req);
  ASSERT_TRUE(rep.has_value());
  EXPECT_EQ(rep->type(), MessageType::kAck);
  EXPECT_EQ(dhcp::FormatIp4(rep->yiaddr), "10.244.1.5");
}

TEST(DhcpResponder, RenewalByCiaddrIsAcked) {
  auto req = Request(MessageType::kRequest);
  req.ciaddr = *dhcp::ParseIp4("10.244.1.5");
  auto rep = Make().Handle(req);
  ASSERT_TRUE(rep.has_value());
  EXPECT_EQ(rep->type(), MessageType::kAck);
}

TEST(DhcpResponder, RequestForOtherAddressIsNakedWithoutOptions) {
  auto req = Request(MessageType::kRequest);
  req.SetIp4Option(opt::kRequestedIp, *dhcp::ParseIp4("192.168.1.9"));
  auto rep = Make().Handle(req);
  ASSERT_TRUE(rep.has_value());
  EXPECT_EQ(rep->type(), MessageType::kNak);
  EXPECT_EQ(rep->yiaddr, 0u);
  EXPECT_FALSE(rep->options.contains(opt::kLeaseTime));
  EXPECT_TRUE(rep->options.contains(opt::kServerId));
}

TEST(DhcpResponder, RequestNamingAnotherServerIsIgnored) {
  auto req = Request(MessageType::kRequest);
  req.SetIp4Option(opt::kRequestedIp, *dhcp::ParseIp4("10.244.1.5"));
  req.SetIp4Option(opt::kServerId, *dhcp::ParseIp4("10.244.1.254"));
  EXPECT_FALSE(Make().Handle(req).has_value());
}

TEST(DhcpResponder, InformGetsAckWithoutLease) {
  auto req = Request(MessageType::kInform);
  req.ciaddr = *dhcp::ParseIp4("10.244.1.5");
  auto rep = Make().Handle(req);
  ASSERT_TRUE(rep.has_value());
  EXPECT_EQ(rep->type(), MessageType::kAck);
  EXPECT_EQ(rep->yiaddr, 0u);
  EXPECT_EQ(rep->ciaddr, req.ciaddr);
  EXPECT_FALSE(rep->options.contains(opt::kLeaseTime));
  EXPECT_TRUE(rep->options.contains(opt::kDns));
}

TEST(DhcpResponder, IgnoresOtherMacsReleaseAndDecline) {
  auto other = Request(MessageType::kDiscover);
  other.chaddr[5] ^= 1;
  EXPECT_FALSE(Make().Handle(other).has_value());
  EXPECT_FALSE(Make().Handle(Request(MessageType::kRelease)).has_value());
  EXPECT_FALSE(Make().Handle(Request(MessageType::kDecline)).has_value());
  auto reply = Request(MessageType::kDiscover);
  reply.op = 2;
  EXPECT_FALSE(Make().Handle(reply).has_value());
}

TEST(DhcpResponder, LinkLocalServerIdWithoutGateway) {
  Lease l = TestLease();
  l.gateway.clear();
  l.routes.clear();
  auto rep = Make(l).Handle(Request(MessageType::kDiscover));
  ASSERT_TRUE(rep.has_value());
  EXPECT_EQ(dhcp::FormatIp4(*rep->Ip4Option(opt::kServerId)), "169.254.1.1");
  EXPECT_FALSE(rep->options.contains(opt::kRouter));
}

TEST(DhcpResponder, CreateRejectsBadLeasesNamingTheField) {
  Lease l = TestLease();
  l.mac = "nope";
  EXPECT_THAT(std::string(DhcpResponder::Create(l).status().message()), ::testing::HasSubstr("lease.mac"));
  l = TestLease();
  l.prefix_len = 0;
  EXPECT_THAT(std::string(DhcpResponder::Create(l).status().message()),
              ::testing::HasSubstr("lease.prefix_len"));
  l = TestLease();
  l.routes = {{"10.0.0.0", "10.244.1.1"}};
  EXPECT_THAT(std::string(DhcpResponder::Create(l).status().message()), ::testing::HasSubstr("lease.routes"));
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::string ClientFrame(const dhcp::Message& m) {
  dhcp::UdpFrame f;
  f.dst_mac.fill(0xff);
  f.src_mac = m.chaddr;
  f.src_ip = m.ciaddr;
  f.dst_ip = 0xffffffff;
  f.src_port = 68;
  f.dst_port = 67;
  f.payload = dhcp::SerializeMessage(m);
  return dhcp::BuildUdpFrame(f);
}

TEST(DhcpResponder, FrameRepliesAreAddressedPerRfc2131) {
  const dhcp::Mac server_mac = {0x02, 0, 0, 0, 0, 0x99};
  DhcpResponder r = Make();
  // No broadcast flag: unicast to the client MAC and the offered address.
  auto rep = r.HandleFrame(Bytes(ClientFrame(Request(MessageType::kDiscover))), server_mac);
  ASSERT_TRUE(rep.has_value());
  EXPECT_EQ(rep->type, MessageType::kOffer);
  auto f = dhcp::ParseUdpFrame(Bytes(rep->frame));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(dhcp::FormatMac(f->dst_mac), "0a:58:0a:f4:01:05");
  EXPECT_EQ(f->src_mac, server_mac);
  EXPECT_EQ(dhcp::FormatIp4(f->dst_ip), "10.244.1.5");
  EXPECT_EQ(dhcp::FormatIp4(f->src_ip), "10.244.1.1");
  EXPECT_EQ(f->src_port, 67);
  EXPECT_EQ(f->dst_port, 68);
  // Broadcast flag: broadcast.
  auto bcast = Request(MessageType::kDiscover);
  bcast.flags = dhcp::kBroadcastFlag;
  rep = r.HandleFrame(Bytes(ClientFrame(bcast)), server_mac);
  ASSERT_TRUE(rep.has_value());
  f = dhcp::ParseUdpFrame(Bytes(rep->frame));
  EXPECT_EQ(f->dst_ip, 0xffffffffu);
  EXPECT_EQ(dhcp::FormatMac(f->dst_mac), "ff:ff:ff:ff:ff:ff");
  // Frames to other ports are not DHCP requests.
  auto not_dhcp = dhcp::ParseUdpFrame(Bytes(ClientFrame(Request(MessageType::kDiscover))));
  not_dhcp->dst_port = 53;
  EXPECT_FALSE(r.HandleFrame(Bytes(dhcp::BuildUdpFrame(*not_dhcp)), server_mac).has_value());
}

TEST(LeaseFromWiredNic, TakesFirstAddressOfEachFamilyAndTheIpv4Routes) {
  WiredNic nic;
  nic.cni_ifname = "eth0";
  nic.mac = "0a:58:0a:f4:01:05";
  nic.mtu = 1450;
  nic.addresses = {{"10.244.1.5", 24}, {"fd00::5", 64}};
  nic.gateway4 = "10.244.1.1";
  nic.routes = {{"0.0.0.0/0", "10.244.1.1"}, {"::/0", "fd00::1"}};
  auto lease = LeaseFromWiredNic(nic, {"10.96.0.10"}, {"cluster.local"}, "web-0");
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->ip, "10.244.1.5");
  EXPECT_EQ(lease->prefix_len, 24);
  EXPECT_EQ(lease->gateway, "10.244.1.1");
  ASSERT_EQ(lease->routes.size(), 1u);
  EXPECT_EQ(lease->mtu, 1450);
  ASSERT_TRUE(lease->v6.has_value());
  EXPECT_EQ(lease->v6->ip, "fd00::5");
  EXPECT_EQ(lease->v6->prefix_len, 64);
  EXPECT_EQ(lease->v6->router_mac, "");
  EXPECT_EQ(lease->v6->mac, nic.mac);

  // IPv6 only: no DHCPv4, the router's MAC carried over.
  nic.addresses = {{"fd00::5", 64}};
  nic.gateway6_mac = "0a:58:0a:f4:01:01";
  lease = LeaseFromWiredNic(nic, {"fd00::10"}, {}, "x");
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->ip, "");
  EXPECT_EQ(lease->v6->router_mac, "0a:58:0a:f4:01:01");
  EXPECT_THAT(lease->v6->dns, ElementsAre("fd00::10"));

  nic.addresses.clear();
  EXPECT_TRUE(absl::IsFailedPrecondition(LeaseFromWiredNic(nic, {}, {}, "x").status()));
}

}  // namespace
}  // namespace kvcri::cni
