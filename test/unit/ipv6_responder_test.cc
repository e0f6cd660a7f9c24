// Ipv6Responder and the IPv6 codecs: what RAs, NAs and DHCPv6 replies carry, and what is not answered.
#include "cni/ipv6_responder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "cni/ipv6_packet.h"

namespace kvcri::cni {
namespace {

using dhcp6::MessageType;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace o6 = dhcp6::opt;

constexpr dhcp::Mac kGuestMac = {0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05};
constexpr dhcp::Mac kRouterMac = {0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01};
constexpr dhcp::Mac kTapMac = {0xfe, 0x54, 0x00, 0x12, 0x34, 0x56};
const ip6::Addr kGuestLl = ip6::LinkLocalFromMac(kGuestMac);

std::span<const uint8_t> Bytes(const std::string& s) {
  return std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

Lease6 TestLease() {
  Lease6 l;
  l.mac = "0a:58:0a:f4:01:05";
  l.ip = "fd00:10:244:1::5";
  l.prefix_len = 64;
  l.router_mac = "0a:58:0a:f4:01:01";
  l.dns = {"10.96.0.10", "fd00:10:96::a"};
  l.searches = {"default.svc.cluster.local", "cluster.local"};
  l.mtu = 1450;
  return l;
}

Ipv6Responder Make(const Lease6& l = TestLease()) {
  auto r = Ipv6Responder::Create(l, kTapMac);
  EXPECT_TRUE(r.ok()) << r.status();
  return *std::move(r);
}

// A frame from the guest: `upper` is the ICMPv6 message or UDP datagram.
std::string FromGuest(const ip6::Addr& dst, uint8_t next_header, const std::string& upper,
                      uint8_t hop_limit = 255, const ip6::Addr& src = kGuestLl, const dhcp::Mac& mac = kGuestMac) {
  ip6::Frame f;
  f.dst_mac = ip6::MulticastMac(dst);
  f.src_mac = mac;
  f.src = src;
  f.dst = dst;
  f.next_header = next_header;
  f.hop_limit = hop_limit;
  f.payload = upper;
  return ip6::BuildFrame(f);
}

std::string RouterSolicit() {
  const ip6::Addr all_routers = *ip6::ParseAddr("ff02::2");
  return FromGuest(all_routers, ip6::kIcmp6, ip6::Icmp6(kGuestLl, all_routers, 133, 0, std::string(4, '\0')));
}

std::string NeighborSolicit(const ip6::Addr& target, uint8_t hop_limit = 255, const ip6::Addr& src = kGuestLl) {
  std::string body(4, '\0');
  body.append(reinterpret_cast<const char*>(target.data()), 16);
  const ip6::Addr group = ip6::SolicitedNode(target);
  return FromGuest(group, ip6::kIcmp6, ip6::Icmp6(src, group, 135, 0, body), hop_limit, src);
}

std::string Duid() { return dhcp6::DuidLl(kGuestMac); }

dhcp6::Message ClientMessage(MessageType type, bool with_ia = true) {
  dhcp6::Message m;
  m.type = static_cast<uint8_t>(type);
  m.xid = 0xabcdef;
  m.Add(o6::kClientId, Duid());
  if (with_ia) {
    dhcp6::IaNa ia;
    ia.iaid = 0x0a0b0c0d;
    m.Add(o6::kIaNa, dhcp6::SerializeIaNa(ia));
  }
  return m;
}

std::string DhcpFrame(const dhcp6::Message& m, const ip6::Addr& src = kGuestLl) {
  return FromGuest(dhcp6::kAllServers, ip6::kUdp,
                   ip6::Udp6(src, dhcp6::kAllServers, 546, 547, dhcp6::SerializeMessage(m)), 1, src);
}

struct Dhcp6Reply {
  ip6::Frame frame;
  dhcp6::Message message;
};

std::optional<Dhcp6Reply> Ask(const Ipv6Responder& r, const dhcp6::Message& m) {
  auto reply = r.HandleFrame(Bytes(DhcpFrame(m)));
  if (!reply) return std::nullopt;
  auto f = ip6::ParseFrame(Bytes(reply->frame));
  EXPECT_TRUE(f.ok()) << f.status();
  auto udp = ip6::ParseUdp(f->payload);
  EXPECT_TRUE(udp.ok());
  EXPECT_EQ(udp->src_port, 547);
  EXPECT_EQ(udp->dst_port, 546);
  EXPECT_EQ(ip6::UpperChecksum(f->src, f->dst, ip6::kUdp, f->payload), 0) << "UDP checksum";
  auto msg = dhcp6::ParseMessage(udp->data);
  EXPECT_TRUE(msg.ok()) << msg.status();
  return Dhcp6Reply{*f, *msg};
}

// The option-by-code map of an RA: type -> body after type and length.
std::multimap<uint8_t, std::string> RaOptions(const std::string& icmp) {
  std::multimap<uint8_t, std::string> out;
  for (size_t at = 16; at + 8 <= icmp.size();) {
    const size_t len = static_cast<uint8_t>(icmp[at + 1]) * size_t{8};
    if (len == 0 || at + len > icmp.size()) break;
    out.emplace(static_cast<uint8_t>(icmp[at]), icmp.substr(at + 2, len - 2));
    at += len;
  }
  return out;
}

uint32_t U32(const std::string& s, size_t at) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data() + at);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

TEST(Ipv6Packet, AddressHelpersFollowRfc4291) {
  EXPECT_EQ(ip6::FormatAddr(ip6::LinkLocalFromMac(kRouterMac)), "fe80::858:aff:fef4:101");
  EXPECT_EQ(ip6::FormatAddr(ip6::SolicitedNode(*ip6::ParseAddr("fd00::12:3456"))), "ff02::1:ff12:3456");
  EXPECT_EQ(dhcp::FormatMac(ip6::MulticastMac(*ip6::ParseAddr("ff02::1:ff12:3456"))), "33:33:ff:12:34:56");
  EXPECT_EQ(ip6::FormatAddr(ip6::Prefix(*ip6::ParseAddr("fd00:1:2:3:4:5:6:7"), 60)), "fd00:1:2::");
  EXPECT_TRUE(ip6::IsLinkLocal(*ip6::ParseAddr("fe80::1")));
  EXPECT_FALSE(ip6::IsLinkLocal(*ip6::ParseAddr("fd00::1")));
  EXPECT_TRUE(absl::IsInvalidArgument(ip6::ParseAddr("10.0.0.1").status()));
}

TEST(Ipv6Packet, ChecksumOfAMessageWithItsChecksumIsZero) {
  const ip6::Addr a = *ip6::ParseAddr("fe80::1"), b = *ip6::ParseAddr("ff02::1");
  EXPECT_EQ(ip6::UpperChecksum(a, b, ip6::kIcmp6, ip6::Icmp6(a, b, 128, 0, "odd-length")), 0);
  EXPECT_EQ(ip6::UpperChecksum(a, b, ip6::kUdp, ip6::Udp6(a, b, 1, 2, "payload")), 0);
}

TEST(Ipv6Packet, ParsersRefuseWhatDoesNotFit) {
  std::string f = RouterSolicit();
  EXPECT_TRUE(ip6::ParseFrame(Bytes(f)).ok());
  EXPECT_FALSE(ip6::ParseFrame(Bytes(f.substr(0, 50))).ok()) << "short";
  std::string longer = f;
  longer[14 + 5] = static_cast<char>(0xff);  // payload length past the frame
  EXPECT_FALSE(ip6::ParseFrame(Bytes(longer)).ok());
  std::string ext = f;
  ext[14 + 6] = 0;  // hop-by-hop
  EXPECT_FALSE(ip6::ParseFrame(Bytes(ext)).ok());

  EXPECT_FALSE(dhcp6::ParseMessage("\x01\x00").ok());
  std::string overrun = dhcp6::SerializeMessage(ClientMessage(MessageType::kSolicit));
  overrun += std::string("\x00\x17\x01\x00", 4);  // DNS option claiming 256 bytes
  EXPECT_THAT(dhcp6::ParseMessage(overrun).status().message(), HasSubstr("runs past"));
  dhcp6::Message many;
  many.type = 1;
  for (size_t i = 0; i <= dhcp6::kMaxOptions; ++i) many.Add(99, "");
  EXPECT_THAT(dhcp6::ParseMessage(dhcp6::SerializeMessage(many)).status().message(), HasSubstr("more than"));
}

TEST(Ipv6Responder, RouterSolicitationGetsAnRaNamingTheRealGateway) {
  Ipv6Responder r = Make();
  auto reply = r.HandleFrame(Bytes(RouterSolicit()));
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->kind, "ra");
  auto f = ip6::ParseFrame(Bytes(reply->frame));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->hop_limit, 255);
  EXPECT_EQ(f->src, ip6::LinkLocalFromMac(kRouterMac));
  EXPECT_EQ(f->src_mac, kRouterMac);
  EXPECT_EQ(f->dst, ip6::kAllNodes);
  EXPECT_EQ(ip6::UpperChecksum(f->src, f->dst, ip6::kIcmp6, f->payload), 0);
  const std::string& m = f->payload;
  ASSERT_GE(m.size(), 16u);
  EXPECT_EQ(static_cast<uint8_t>(m[0]), 134);
  EXPECT_EQ(static_cast<uint8_t>(m[5]), 0xc0) << "M and O";
  EXPECT_EQ((static_cast<uint8_t>(m[6]) << 8) | static_cast<uint8_t>(m[7]), kRouterLifetimeSeconds);
  auto opts = RaOptions(m);
  ASSERT_EQ(opts.count(1), 1u);
  EXPECT_EQ(opts.find(1)->second, std::string(reinterpret_cast<const char*>(kRouterMac.data()), 6));
  ASSERT_EQ(opts.count(5), 1u);
  EXPECT_EQ(U32(opts.find(5)->second, 2), 1450u);
  ASSERT_EQ(opts.count(3), 1u);
  const std::string& pi = opts.find(3)->second;
  EXPECT_EQ(static_cast<uint8_t>(pi[0]), 64);
  EXPECT_EQ(static_cast<uint8_t>(pi[1]), 0x80) << "on-link, no SLAAC";
  ip6::Addr prefix;
  std::memcpy(prefix.data(), pi.data() + 14, 16);
  EXPECT_EQ(ip6::FormatAddr(prefix), "fd00:10:244:1::");
  ASSERT_EQ(opts.count(25), 1u);
  ip6::Addr dns;
  std::memcpy(dns.data(), opts.find(25)->second.data() + 6, 16);
  EXPECT_EQ(ip6::FormatAddr(dns), "fd00:10:96::a") << "IPv4 servers are left out";

  // The unsolicited one is the same message.
  auto unsolicited = ip6::ParseFrame(Bytes(r.RouterAdvertisement()));
  ASSERT_TRUE(unsolicited.ok());
  EXPECT_EQ(unsolicited->payload, m);
}

TEST(Ipv6Responder, WithoutTheGatewaysMacTheRaNamesNoRouter) {
  Lease6 l = TestLease();
  l.router_mac.clear();
  l.prefix_len = 128;
  l.dns.clear();
  Ipv6Responder r = Make(l);
  EXPECT_FALSE(r.names_router());
  auto f = ip6::ParseFrame(Bytes(r.RouterAdvertisement()));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->src, ip6::LinkLocalFromMac(kTapMac));
  EXPECT_EQ(f->payload[6], 0);
  EXPECT_EQ(f->payload[7], 0) << "router lifetime 0";
  auto opts = RaOptions(f->payload);
  EXPECT_EQ(opts.count(3), 0u) << "a /128 has no on-link prefix";
  EXPECT_EQ(opts.count(25), 0u);
  // And nobody's neighbour solicitations are answered.
  EXPECT_FALSE(r.HandleFrame(Bytes(NeighborSolicit(ip6::LinkLocalFromMac(kTapMac)))).has_value());
}

TEST(Ipv6Responder, AnswersNeighbourSolicitationsForTheRouterOnly) {
  Ipv6Responder r = Make();
  const ip6::Addr router = ip6::LinkLocalFromMac(kRouterMac);
  auto reply = r.HandleFrame(Bytes(NeighborSolicit(router)));
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->kind, "na");
  auto f = ip6::ParseFrame(Bytes(reply->frame));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->dst, kGuestLl);
  EXPECT_EQ(f->dst_mac, kGuestMac);
  EXPECT_EQ(ip6::UpperChecksum(f->src, f->dst, ip6::kIcmp6, f->payload), 0);
  EXPECT_EQ(static_cast<uint8_t>(f->payload[0]), 136);
  EXPECT_EQ(U32(f->payload, 4), 0xe0000000u) << "router, solicited, override";
  EXPECT_EQ(f->payload.substr(8, 16), std::string(reinterpret_cast<const char*>(router.data()), 16));
  EXPECT_EQ(f->payload.substr(26, 6), std::string(reinterpret_cast<const char*>(kRouterMac.data()), 6));

  // DAD for that address (from ::) is told to all nodes, not solicited.
  auto dad = r.HandleFrame(Bytes(NeighborSolicit(router, 255, ip6::Addr{})));
  ASSERT_TRUE(dad.has_value());
  auto df = ip6::ParseFrame(Bytes(dad->frame));
  EXPECT_EQ(df->dst, ip6::kAllNodes);
  EXPECT_EQ(U32(df->payload, 4), 0xa0000000u);

  EXPECT_FALSE(r.HandleFrame(Bytes(NeighborSolicit(*ip6::ParseAddr("fd00:10:244:1::1")))).has_value())
      << "the global gateway answers for itself through the redirect";
  EXPECT_FALSE(r.HandleFrame(Bytes(NeighborSolicit(*ip6::ParseAddr("fd00:10:244:1::5")))).has_value())
      << "the guest's own DAD must not be answered";
  EXPECT_FALSE(r.HandleFrame(Bytes(NeighborSolicit(router, 64))).has_value()) << "hop limit below 255: off-link";
}

TEST(Ipv6Responder, OnlyTheGuestsMacIsAnswered) {
  Ipv6Responder r = Make();
  const ip6::Addr all_routers = *ip6::ParseAddr("ff02::2");
  std::string other = FromGuest(all_routers, ip6::kIcmp6, ip6::Icmp6(kGuestLl, all_routers, 133, 0, std::string(4, '\0')),
                                255, kGuestLl, kRouterMac);
  EXPECT_FALSE(r.HandleFrame(Bytes(other)).has_value());
  EXPECT_FALSE(r.HandleFrame(Bytes(std::string(20, 'x'))).has_value());
}

TEST(Ipv6Responder, SolicitGetsTheOnePodAddressWithDnsAndSearchList) {
  Ipv6Responder r = Make();
  auto adv = Ask(r, ClientMessage(MessageType::kSolicit));
  ASSERT_TRUE(adv.has_value());
  EXPECT_EQ(adv->message.type, static_cast<uint8_t>(MessageType::kAdvertise));
  EXPECT_EQ(adv->message.xid, 0xabcdefu);
  EXPECT_EQ(adv->frame.dst, kGuestLl);
  EXPECT_EQ(adv->frame.dst_mac, kGuestMac);
  ASSERT_NE(adv->message.Find(o6::kClientId), nullptr);
  EXPECT_EQ(*adv->message.Find(o6::kClientId), Duid());
  ASSERT_NE(adv->message.Find(o6::kServerId), nullptr);
  EXPECT_EQ(*adv->message.Find(o6::kServerId), dhcp6::DuidLl(kTapMac));
  ASSERT_NE(adv->message.Find(o6::kPreference), nullptr);
  EXPECT_EQ(*adv->message.Find(o6::kPreference), "\xff");
  const std::string* ia_raw = adv->message.Find(o6::kIaNa);
  ASSERT_NE(ia_raw, nullptr);
  auto ia = dhcp6::ParseIaNa(*ia_raw);
  ASSERT_TRUE(ia.ok());
  EXPECT_EQ(ia->iaid, 0x0a0b0c0du) << "the client's IAID";
  EXPECT_EQ(ia->t1, 43200u);
  EXPECT_EQ(ia->t2, 69120u);
  ASSERT_EQ(ia->options.size(), 1u);
  EXPECT_EQ(ia->options[0].first, o6::kIaAddr);
  EXPECT_EQ(ip6::FormatAddr(*dhcp6::IaAddrAddress(ia->options[0].second)), "fd00:10:244:1::5");
  EXPECT_EQ(U32(ia->options[0].second, 16), 86400u);
  const std::string* dns = adv->message.Find(o6::kDnsServers);
  ASSERT_NE(dns, nullptr);
  ASSERT_EQ(dns->size(), 16u);
  const std::string* domains = adv->message.Find(o6::kDomainList);
  ASSERT_NE(domains, nullptr);
  EXPECT_EQ(*domains, std::string("\x07" "default\x03svc\x07" "cluster\x05local\x00\x07" "cluster\x05local\x00", 42));

  // Rapid Commit: a REPLY at once, saying so.
  dhcp6::Message rapid = ClientMessage(MessageType::kSolicit);
  rapid.Add(o6::kRapidCommit, "");
  auto reply = Ask(r, rapid);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->message.type, static_cast<uint8_t>(MessageType::kReply));
  EXPECT_NE(reply->message.Find(o6::kRapidCommit), nullptr);
  EXPECT_NE(reply->message.Find(o6::kIaNa), nullptr);
}

TEST(Ipv6Responder, RequestRenewAndRebindNeedTheRightServer) {
  Ipv6Responder r = Make();
  const std::string server = dhcp6::DuidLl(kTapMac);
  for (MessageType t : {MessageType::kRequest, MessageType::kRenew}) {
    dhcp6::Message m = ClientMessage(t);
    EXPECT_FALSE(Ask(r, m).has_value()) << "no server id";
    m.Add(o6::kServerId, dhcp6::DuidLl(kRouterMac));
    EXPECT_FALSE(Ask(r, m).has_value()) << "another server's";
    m.options.back().second = server;
    auto reply = Ask(r, m);
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->message.type, static_cast<uint8_t>(MessageType::kReply));
    EXPECT_NE(reply->message.Find(o6::kIaNa), nullptr);
  }
  dhcp6::Message rebind = ClientMessage(MessageType::kRebind);
  ASSERT_TRUE(Ask(r, rebind).has_value());
  rebind.Add(o6::kServerId, server);
  EXPECT_FALSE(Ask(r, rebind).has_value()) << "REBIND must not name a server";
  dhcp6::Message no_client = ClientMessage(MessageType::kSolicit);
  no_client.options.erase(no_client.options.begin());
  EXPECT_FALSE(Ask(r, no_client).has_value());

  // No IA_NA: told there is nothing else to have.
  auto no_ia = Ask(r, ClientMessage(MessageType::kSolicit, false));
  ASSERT_TRUE(no_ia.has_value());
  ASSERT_NE(no_ia->message.Find(o6::kStatusCode), nullptr);
  EXPECT_EQ((*no_ia->message.Find(o6::kStatusCode))[1], dhcp6::status::kNoAddrsAvail);
}

TEST(Ipv6Responder, ConfirmReleaseAndInformationRequest) {
  Ipv6Responder r = Make();
  auto confirm = [&](const std::string& addr) {
    dhcp6::Message m = ClientMessage(MessageType::kConfirm, false);
    dhcp6::IaNa ia;
    ia.options.emplace_back(o6::kIaAddr, dhcp6::IaAddr(*ip6::ParseAddr(addr), 0, 0));
    m.Add(o6::kIaNa, dhcp6::SerializeIaNa(ia));
    return Ask(r, m);
  };
  auto ours = confirm("fd00:10:244:1::5");
  ASSERT_TRUE(ours.has_value());
  EXPECT_EQ((*ours->message.Find(o6::kStatusCode))[1], dhcp6::status::kSuccess);
  auto theirs = confirm("fd00:99::5");
  ASSERT_TRUE(theirs.has_value());
  EXPECT_EQ((*theirs->message.Find(o6::kStatusCode))[1], dhcp6::status::kNotOnLink);

  dhcp6::Message release = ClientMessage(MessageType::kRelease);
  release.Add(o6::kServerId, dhcp6::DuidLl(kTapMac));
  auto released = Ask(r, release);
  ASSERT_TRUE(released.has_value());
  EXPECT_EQ((*released->message.Find(o6::kStatusCode))[1], dhcp6::status::kSuccess);

  auto info = Ask(r, ClientMessage(MessageType::kInformationRequest, false));
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->message.type, static_cast<uint8_t>(MessageType::kReply));
  EXPECT_NE(info->message.Find(o6::kDnsServers), nullptr);
  EXPECT_EQ(info->message.Find(o6::kIaNa), nullptr);

  dhcp6::Message advertise = ClientMessage(MessageType::kAdvertise);
  EXPECT_FALSE(Ask(r, advertise).has_value()) << "server-to-client messages are not answered";
}

TEST(Ipv6Responder, DhcpFromAGlobalSourceOrToAnotherAddressIsIgnored) {
  Ipv6Responder r = Make();
  const ip6::Addr global = *ip6::ParseAddr("fd00:10:244:1::5");
  EXPECT_FALSE(r.HandleFrame(Bytes(DhcpFrame(ClientMessage(MessageType::kSolicit), global))).has_value());
  ip6::Frame f = *ip6::ParseFrame(Bytes(DhcpFrame(ClientMessage(MessageType::kSolicit))));
  f.dst = *ip6::ParseAddr("ff02::1");
  EXPECT_FALSE(r.HandleFrame(Bytes(ip6::BuildFrame(f))).has_value());
}

TEST(Ipv6Responder, CreateNamesTheFieldThatDoesNotParse) {
  struct Case {
    const char* what;
    void (*edit)(Lease6*);
    const char* field;
  };
  const Case cases[] = {
      {"mac", [](Lease6* l) { l->mac = "nope"; }, "lease6.mac"},
      {"ip", [](Lease6* l) { l->ip = "10.0.0.1"; }, "lease6.ip"},
      {"link-local ip", [](Lease6* l) { l->ip = "fe80::5"; }, "lease6.ip"},
      {"multicast ip", [](Lease6* l) { l->ip = "ff02::5"; }, "lease6.ip"},
      {"prefix 0", [](Lease6* l) { l->prefix_len = 0; }, "lease6.prefix_len"},
      {"prefix 129", [](Lease6* l) { l->prefix_len = 129; }, "lease6.prefix_len"},
      {"router mac", [](Lease6* l) { l->router_mac = "zz"; }, "lease6.router_mac"},
      {"dns", [](Lease6* l) { l->dns = {"fd00::zz"}; }, "lease6.dns"},
      {"search", [](Lease6* l) { l->searches = {"a..b"}; }, "lease6.searches"},
      {"mtu", [](Lease6* l) { l->mtu = -1; }, "lease6.mtu"},
      {"lease", [](Lease6* l) { l->lease_seconds = 5; }, "lease6.lease_seconds"},
  };
  for (const Case& c : cases) {
    Lease6 l = TestLease();
    c.edit(&l);
    auto r = Ipv6Responder::Create(l, kTapMac);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << c.what;
    EXPECT_THAT(r.status().message(), HasSubstr(c.field)) << c.what;
  }
}

TEST(Ipv6Responder, ASecondIaIsToldThereIsOneAddressAndALongSearchListIsCutNotRefused) {
  Ipv6Responder r = Make();
  dhcp6::Message two = ClientMessage(MessageType::kSolicit);
  dhcp6::IaNa second;
  second.iaid = 7;
  two.Add(o6::kIaNa, dhcp6::SerializeIaNa(second));
  auto adv = Ask(r, two);
  ASSERT_TRUE(adv.has_value());
  std::vector<dhcp6::IaNa> ias;
  for (const auto& [code, value] : adv->message.options) {
    if (code == o6::kIaNa) ias.push_back(*dhcp6::ParseIaNa(value));
  }
  ASSERT_EQ(ias.size(), 2u);
  EXPECT_EQ(ias[0].iaid, 0x0a0b0c0du);
  EXPECT_EQ(ias[0].options[0].first, o6::kIaAddr);
  EXPECT_EQ(ias[1].iaid, 7u);
  ASSERT_EQ(ias[1].options.size(), 1u);
  EXPECT_EQ(ias[1].options[0].first, o6::kStatusCode);
  EXPECT_EQ(ias[1].options[0].second[1], dhcp6::status::kNoAddrsAvail);

  // Kubernetes' limit: 32 domains, 2048 characters. The list is cut to fit, the Pod still served.
  Lease6 l = TestLease();
  l.searches.clear();
  for (int i = 0; i < 32; ++i) l.searches.push_back("d" + std::to_string(i) + "." + std::string(58, 'x') + ".example");
  auto big = Ipv6Responder::Create(l, kTapMac);
  ASSERT_TRUE(big.ok()) << big.status();
  auto reply = Ask(*big, ClientMessage(MessageType::kSolicit));
  ASSERT_TRUE(reply.has_value());
  const std::string* domains = reply->message.Find(o6::kDomainList);
  ASSERT_NE(domains, nullptr);
  EXPECT_LE(domains->size(), 1024u);
  EXPECT_EQ(domains->substr(0, 3), std::string("\x02" "d0", 3)) << "the first names are kept";

  // An Information-Request carrying an IA is discarded (RFC 8415 16.12).
  EXPECT_FALSE(Ask(r, ClientMessage(MessageType::kInformationRequest, true)).has_value());
}

}  // namespace
}  // namespace kvcri::cni
