// DHCPv4 encoding: domain search lists, classless static routes, messages and framing.
#include "cni/dhcp_packet.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kvcri::cni::dhcp {
namespace {

using ::testing::ElementsAre;

std::span<const uint8_t> Bytes(const std::string& s) {
  return std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(DhcpDomainSearch, EncodesRfc3397ExampleWithCompression) {
  auto enc = EncodeDomainSearch({"eng.apple.com", "marketing.apple.com"});
  ASSERT_TRUE(enc.ok()) << enc.status();
  const std::string want(
      "\x03"
      "eng"
      "\x05"
      "apple"
      "\x03"
      "com"
      "\x00"
      "\x09"
      "marketing"
      "\xc0\x04",
      27);
  EXPECT_EQ(*enc, want);
}

TEST(DhcpDomainSearch, RoundTripsKubernetesSearchList) {
  std::vector<std::string> in = {"default.svc.cluster.local", "svc.cluster.local", "cluster.local",
                                 "example.org."};
  auto enc = EncodeDomainSearch(in);
  ASSERT_TRUE(enc.ok()) << enc.status();
  // svc.cluster.local and cluster.local are pure pointers into the first name.
  EXPECT_EQ(enc->size(), 27u + 2 + 2 + 13);
  auto dec = DecodeDomainSearch(*enc);
  ASSERT_TRUE(dec.ok()) << dec.status();
  EXPECT_THAT(*dec,
              ElementsAre("default.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.org"));
}

TEST(DhcpDomainSearch, RejectsEmptyAndOverlongLabels) {
  EXPECT_FALSE(EncodeDomainSearch({"a..b"}).ok());
  EXPECT_FALSE(EncodeDomainSearch({std::string(64, 'x') + ".com"}).ok());
  EXPECT_FALSE(EncodeDomainSearch({""}).ok());
}

TEST(DhcpDomainSearch, DecodeRejectsForwardPointerLoops) {
  EXPECT_FALSE(DecodeDomainSearch(std::string("\xc0\x00", 2)).ok());
  EXPECT_FALSE(DecodeDomainSearch(std::string("\x03"
                                              "ab",
                                              3))
                   .ok());
}

TEST(DhcpClasslessRoutes, EncodesRfc3442Widths) {
  std::vector<Route4> routes = {
      {0, 0, 0x0a000001},            // default via 10.0.0.1
      {0x0a000000, 8, 0x0a010101},   // 10/8 via 10.1.1.1
      {0x0a110000, 16, 0x0a010101},  // 10.17/16
      {0xc0a80180, 25, 0},           // 192.168.1.128/25 on-link
  };
  std::string enc = EncodeClasslessRoutes(routes);
  const std::string want(
      "\x00"
      "\x0a\x00\x00\x01"
      "\x08"
      "\x0a"
      "\x0a\x01\x01\x01"
      "\x10"
      "\x0a\x11"
      "\x0a\x01\x01\x01"
      "\x19"
      "\xc0\xa8\x01\x80"
      "\x00\x00\x00\x00",
      5 + 6 + 7 + 9);
  EXPECT_EQ(enc, want);
  auto dec = DecodeClasslessRoutes(enc);
  ASSERT_TRUE(dec.ok()) << dec.status();
  EXPECT_EQ(*dec, routes);
  EXPECT_FALSE(DecodeClasslessRoutes(std::string("\x18\x0a\x01", 3)).ok());
}

TEST(DhcpMessage, SerializeParseRoundTripSplitsLongOptions) {
  Message m;
  m.op = 1;
  m.xid = 0xdeadbeef;
  m.flags = kBroadcastFlag;
  m.ciaddr = 0x0a000002;
  m.chaddr = {0x02, 0x42, 0xac, 0x11, 0x00, 0x02};
  m.options[opt::kMessageType] = std::string(1, 3);
  m.SetIp4Option(opt::kRequestedIp, 0x0a000002);
  m.options[opt::kDomainSearch] = std::string(600, 'x');
  std::string wire = SerializeMessage(m);
  EXPECT_GE(wire.size(), 300u);
  EXPECT_EQ(static_cast<uint8_t>(wire[240]), opt::kMessageType);  // type first after the cookie
  auto back = ParseMessage(Bytes(wire));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->xid, 0xdeadbeef);
  EXPECT_EQ(back->flags, kBroadcastFlag);
  EXPECT_EQ(back->ciaddr, 0x0a000002u);
  EXPECT_EQ(back->chaddr, m.chaddr);
  EXPECT_EQ(back->type(), MessageType::kRequest);
  EXPECT_EQ(back->Ip4Option(opt::kRequestedIp), 0x0a000002u);
  EXPECT_EQ(back->options[opt::kDomainSearch], std::string(600, 'x'));
}

TEST(DhcpMessage, ParseRejectsTruncatedAndCookieless) {
  EXPECT_FALSE(ParseMessage(Bytes(std::string(100, '\0'))).ok());
  EXPECT_FALSE(ParseMessage(Bytes(std::string(300, '\0'))).ok());
  Message m;
  m.op = 1;
  std::string wire = SerializeMessage(m);
  wire.resize(243);  // option code without length, no end
  wire[240] = opt::kHostName;
  EXPECT_FALSE(ParseMessage(Bytes(wire)).ok());
}

TEST(DhcpFrame, BuildsValidIpv4UdpAndParsesBack) {
  UdpFrame f;
  f.dst_mac.fill(0xff);
  f.src_mac = {0x02, 0, 0, 0, 0, 1};
  f.src_ip = 0x0a000001;
  f.dst_ip = 0xffffffff;
  f.src_port = 67;
  f.dst_port = 68;
  f.payload = "hello dhcp";
  std::string wire = BuildUdpFrame(f);
  ASSERT_EQ(wire.size(), 14u + 20 + 8 + f.payload.size());
  // An IPv4 header with a correct checksum sums to 0xffff.
  uint32_t sum = 0;
  for (int i = 14; i < 34; i += 2)
    sum += static_cast<uint8_t>(wire[i]) << 8 | static_cast<uint8_t>(wire[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  EXPECT_EQ(sum, 0xffffu);
  auto back = ParseUdpFrame(Bytes(wire));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->src_ip, f.src_ip);
  EXPECT_EQ(back->dst_ip, f.dst_ip);
  EXPECT_EQ(back->src_port, 67);
  EXPECT_EQ(back->dst_port, 68);
  EXPECT_EQ(back->payload, f.payload);
  EXPECT_EQ(back->src_mac, f.src_mac);
  wire[14 + 9] = 6;  // TCP
  EXPECT_FALSE(ParseUdpFrame(Bytes(wire)).ok());
}

TEST(DhcpAddresses, ParseAndFormat) {
  auto mac = ParseMac("0a:58:0A:f4:01:05");
  ASSERT_TRUE(mac.ok());
  EXPECT_EQ(FormatMac(*mac), "0a:58:0a:f4:01:05");
  EXPECT_FALSE(ParseMac("0a:58:0a:f4:01").ok());
  EXPECT_FALSE(ParseMac("0a-58-0a-f4-01-05").ok());
  EXPECT_EQ(*ParseIp4("10.244.1.5"), 0x0af40105u);
  EXPECT_EQ(FormatIp4(0x0af40105u), "10.244.1.5");
  EXPECT_FALSE(ParseIp4("10.244.1").ok());
  EXPECT_EQ(PrefixToMask(24), 0xffffff00u);
  EXPECT_EQ(PrefixToMask(0), 0u);
  EXPECT_EQ(PrefixToMask(32), 0xffffffffu);
}

}  // namespace
}  // namespace kvcri::cni::dhcp
