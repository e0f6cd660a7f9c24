// DHCPv4 wire formats and the Ethernet/IPv4/UDP framing of our responder's frames.
#pragma once

// DHCPv4 wire formats (RFC 2131/2132) and the Ethernet/IPv4/UDP framing our
// responder needs, since it talks through an AF_PACKET socket on a tap that
// has no IP address. Pure functions: no sockets, no clocks.

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvcri::cni::dhcp {

using Mac = std::array<uint8_t, 6>;
// IPv4 addresses are host-order integers: 10.1.2.3 == 0x0a010203.
using Ip4 = uint32_t;

constexpr uint16_t kServerPort = 67;
constexpr uint16_t kClientPort = 68;
constexpr uint16_t kBroadcastFlag = 0x8000;

enum class MessageType : uint8_t {
  kDiscover = 1,
  kOffer = 2,
  kRequest = 3,
  kDecline = 4,
  kAck = 5,
  kNak = 6,
  kRelease = 7,
  kInform = 8,
};

namespace opt {
constexpr uint8_t kPad = 0, kSubnetMask = 1, kRouter = 3, kDns = 6, kHostName = 12, kDomainName = 15,
                  kMtu = 26, kBroadcast = 28, kRequestedIp = 50, kLeaseTime = 51, kOverload = 52,
                  kMessageType = 53, kServerId = 54, kParamList = 55, kMessage = 56, kRenewal = 58,
                  kRebinding = 59, kClientId = 61, kDomainSearch = 119, kClasslessRoutes = 121, kEnd = 255;
}  // namespace opt

struct Message {
  uint8_t op = 0;  // 1 BOOTREQUEST, 2 BOOTREPLY
  uint8_t htype = 1;
  uint8_t hlen = 6;
  uint8_t hops = 0;
  uint32_t xid = 0;
  uint16_t secs = 0;
  uint16_t flags = 0;
  Ip4 ciaddr = 0, yiaddr = 0, siaddr = 0, giaddr = 0;
  Mac chaddr{};
  // Option code -> value; an option split over several instances (RFC 3396)
  // is stored concatenated and split again on serialization.
  std::map<uint8_t, std::string> options;

  std::optional<MessageType> type() const;
  std::optional<Ip4> Ip4Option(uint8_t code) const;
  void SetIp4Option(uint8_t code, Ip4 ip);
  void SetIp4ListOption(uint8_t code, const std::vector<Ip4>& ips);
  void SetU32Option(uint8_t code, uint32_t v);
};

// InvalidArgument for a truncated or non-DHCP (no magic cookie) payload.
absl::StatusOr<Message> ParseMessage(std::span<const uint8_t> payload);
// BOOTP header, cookie, options in ascending code order, end; padded to the
// 300-byte BOOTP minimum some clients insist on.
std::string SerializeMessage(const Message& msg);

// Option 119 (RFC 3397): DNS names in RFC 1035 wire format, suffixes shared
// by compression pointers. InvalidArgument for an empty or >63-byte label.
absl::StatusOr<std::string> EncodeDomainSearch(const std::vector<std::string>& domains);
absl::StatusOr<std::vector<std::string>> DecodeDomainSearch(std::string_view data);

// Option 121 (RFC 3442).
struct Route4 {
  Ip4 dst = 0;
  int prefix_len = 0;
  Ip4 gateway = 0;  // 0 = on-link
  bool operator==(const Route4&) const = default;
};
std::string EncodeClasslessRoutes(const std::vector<Route4>& routes);
absl::StatusOr<std::vector<Route4>> DecodeClasslessRoutes(std::string_view data);

// One UDP datagram in an Ethernet II frame.
struct UdpFrame {
  Mac dst_mac{}, src_mac{};
  Ip4 src_ip = 0, dst_ip = 0;
  uint16_t src_port = 0, dst_port = 0;
  std::string payload;
};
// With IPv4 header and UDP checksums computed.
std::string BuildUdpFrame(const UdpFrame& f);
// InvalidArgument unless IPv4 (no fragment) carrying UDP. Checksums are not
// checked: virtio guests may leave them to offload.
absl::StatusOr<UdpFrame> ParseUdpFrame(std::span<const uint8_t> frame);

absl::StatusOr<Mac> ParseMac(std::string_view text);
std::string FormatMac(const Mac& mac);
absl::StatusOr<Ip4> ParseIp4(std::string_view text);
std::string FormatIp4(Ip4 ip);
Ip4 PrefixToMask(int prefix_len);

}  // namespace kvcri::cni::dhcp
