// IPv6 wire formats our per-Pod responder speaks: Ethernet/IPv6 framing, ICMPv6 NDP, DHCPv6 messages.
#pragma once

// The IPv6 half of the responder on each Pod's tap (cni/ipv6_responder.h)
// talks through an AF_PACKET socket, as the DHCPv4 half does, so it frames
// its own packets: Ethernet II + IPv6 (no extension headers) + ICMPv6 or
// UDP, checksums over the RFC 8200 pseudo-header. DHCPv6 messages (RFC 8415)
// are a type, a transaction id and a flat list of options. Pure functions:
// no sockets, no clocks; every parser bounds itself by its input.

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "cni/dhcp_packet.h"

namespace kvcri::cni::ip6 {

using Addr = std::array<uint8_t, 16>;

absl::StatusOr<Addr> ParseAddr(std::string_view text);
std::string FormatAddr(const Addr& a);
bool IsLinkLocal(const Addr& a);
bool IsUnspecified(const Addr& a);
// fe80::/64 with the modified EUI-64 interface id of `mac` (RFC 4291 2.5.1).
Addr LinkLocalFromMac(const dhcp::Mac& mac);
// ff02::1:ffXX:XXXX for `a` (RFC 4291 2.7.1), and a group's Ethernet address 33:33:xx:xx:xx:xx.
Addr SolicitedNode(const Addr& a);
dhcp::Mac MulticastMac(const Addr& group);
// The first `prefix_len` bits of `a`, the rest zero.
Addr Prefix(const Addr& a, int prefix_len);

constexpr Addr kAllNodes = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
constexpr uint8_t kIcmp6 = 58;
constexpr uint8_t kUdp = 17;

// One IPv6 packet in an Ethernet II frame; `payload` is the upper layer
// (ICMPv6 message or UDP datagram), checksum included.
struct Frame {
  dhcp::Mac dst_mac{}, src_mac{};
  Addr src{}, dst{};
  uint8_t next_header = 0;
  uint8_t hop_limit = 0;
  std::string payload;
};
// InvalidArgument unless an untagged IPv6 frame whose payload length fits
// the frame, with no extension header (what RS, NS and DHCPv6 clients send).
// Checksums are not checked: virtio guests may leave them to offload.
absl::StatusOr<Frame> ParseFrame(std::span<const uint8_t> frame);
// Ethernet + IPv6 header + payload, as is.
std::string BuildFrame(const Frame& f);
// The upper-layer checksum of RFC 8200 8.1 over `upper` (its checksum field zeroed).
uint16_t UpperChecksum(const Addr& src, const Addr& dst, uint8_t next_header, std::string_view upper);

// ICMPv6: type, code, checksum (computed), then `body`.
std::string Icmp6(const Addr& src, const Addr& dst, uint8_t type, uint8_t code, std::string_view body);
// UDP over IPv6 with its checksum.
std::string Udp6(const Addr& src, const Addr& dst, uint16_t src_port, uint16_t dst_port, std::string_view data);
struct UdpView {
  uint16_t src_port = 0, dst_port = 0;
  std::string_view data;
};
// InvalidArgument when the datagram is shorter than its header or its length field.
absl::StatusOr<UdpView> ParseUdp(std::string_view upper);

// NDP (RFC 4861) message types and options.
namespace nd {
constexpr uint8_t kRouterSolicit = 133, kRouterAdvert = 134, kNeighborSolicit = 135, kNeighborAdvert = 136;
constexpr uint8_t kOptSourceLinkAddr = 1, kOptTargetLinkAddr = 2, kOptPrefixInfo = 3, kOptMtu = 5,
                  kOptRdnss = 25, kOptDnssl = 31;
// A source (1) or target (2) link-layer address option: type, length 1 (8 octets), the MAC.
std::string LinkAddrOption(uint8_t type, const dhcp::Mac& mac);
// A neighbour solicitation's target, when `icmp` is one (type 135, long enough).
std::optional<Addr> SolicitTarget(std::string_view icmp);
}  // namespace nd

}  // namespace kvcri::cni::ip6

namespace kvcri::cni::dhcp6 {

constexpr uint16_t kClientPort = 546;
constexpr uint16_t kServerPort = 547;
// All_DHCP_Relay_Agents_and_Servers (RFC 8415 7.1).
constexpr ip6::Addr kAllServers = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0x02};

enum class MessageType : uint8_t {
  kSolicit = 1,
  kAdvertise = 2,
  kRequest = 3,
  kConfirm = 4,
  kRenew = 5,
  kRebind = 6,
  kReply = 7,
  kRelease = 8,
  kDecline = 9,
  kInformationRequest = 11,
};

namespace opt {
constexpr uint16_t kClientId = 1, kServerId = 2, kIaNa = 3, kIaAddr = 5, kOro = 6, kPreference = 7,
                   kStatusCode = 13, kRapidCommit = 14, kDnsServers = 23, kDomainList = 24;
}  // namespace opt

namespace status {
constexpr uint16_t kSuccess = 0, kNoAddrsAvail = 2, kNotOnLink = 4;
}  // namespace status

// At most this many options in one message, more than any client sends;
// a message with more is refused whole.
constexpr size_t kMaxOptions = 64;

struct Message {
  uint8_t type = 0;
  uint32_t xid = 0;  // 24 bits
  std::vector<std::pair<uint16_t, std::string>> options;  // in wire order; codes may repeat

  // The first option with `code`, if any.
  const std::string* Find(uint16_t code) const;
  void Add(uint16_t code, std::string value) { options.emplace_back(code, std::move(value)); }
};
// InvalidArgument for a short message, an option running past the end, or
// more than kMaxOptions options.
absl::StatusOr<Message> ParseMessage(std::string_view data);
std::string SerializeMessage(const Message& m);

// Inside IA_NA: IAID, T1, T2 and the IA's own options.
struct IaNa {
  uint32_t iaid = 0, t1 = 0, t2 = 0;
  std::vector<std::pair<uint16_t, std::string>> options;
};
absl::StatusOr<IaNa> ParseIaNa(std::string_view value);
std::string SerializeIaNa(const IaNa& ia);
// IAADDR: address, preferred and valid lifetimes (no sub-options).
std::string IaAddr(const ip6::Addr& a, uint32_t preferred, uint32_t valid);
// The address of an IAADDR option value, when it is one.
std::optional<ip6::Addr> IaAddrAddress(std::string_view value);
std::string StatusCode(uint16_t code, std::string_view message);
// DUID-LL (RFC 8415 11.4): type 3, hardware type 1 (Ethernet), the MAC.
std::string DuidLl(const dhcp::Mac& mac);

}  // namespace kvcri::cni::dhcp6
