// IPv6 framing, NDP and DHCPv6 codecs for the per-Pod responder (RFC 8200, 4861, 8415).
#include "cni/ipv6_packet.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>

#include <cstring>

#include "config/base/big_endian.h"
#include "config/base/str.h"

namespace kvcri::cni::ip6 {
namespace {

using base::GetBe16;
using base::GetBe32;
using base::PutBe16;
using base::PutBe32;

constexpr size_t kEthHeader = 14;
constexpr size_t kIp6Header = 40;


uint32_t Sum(const uint8_t* p, size_t n, uint32_t sum) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += GetBe16(p + i);
  if (n % 2) sum += static_cast<uint32_t>(p[n - 1]) << 8;
  return sum;
}

}  // namespace

absl::StatusOr<Addr> ParseAddr(std::string_view text) {
  std::string s(text);
  in6_addr a{};
  if (::inet_pton(AF_INET6, s.c_str(), &a) != 1) {
    return absl::InvalidArgumentError(base::StrCat("\"", text, "\" is not an IPv6 address"));
  }
  Addr out;
  std::memcpy(out.data(), a.s6_addr, out.size());
  return out;
}

std::string FormatAddr(const Addr& a) {
  char buf[INET6_ADDRSTRLEN];
  ::inet_ntop(AF_INET6, a.data(), buf, sizeof buf);
  return buf;
}

bool IsLinkLocal(const Addr& a) { return a[0] == 0xfe && (a[1] & 0xc0) == 0x80; }

bool IsUnspecified(const Addr& a) { return a == Addr{}; }

Addr LinkLocalFromMac(const dhcp::Mac& mac) {
  Addr a{};
  a[0] = 0xfe;
  a[1] = 0x80;
  a[8] = mac[0] ^ 0x02;  // the universal/local bit, inverted
  a[9] = mac[1];
  a[10] = mac[2];
  a[11] = 0xff;
  a[12] = 0xfe;
  a[13] = mac[3];
  a[14] = mac[4];
  a[15] = mac[5];
  return a;
}

Addr SolicitedNode(const Addr& a) {
  Addr g{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, a[13], a[14], a[15]};
  return g;
}

dhcp::Mac MulticastMac(const Addr& group) { return {0x33, 0x33, group[12], group[13], group[14], group[15]}; }

Addr Prefix(const Addr& a, int prefix_len) {
  Addr out{};
  for (int i = 0; i < 16 && prefix_len > 0; ++i, prefix_len -= 8) {
    out[i] = prefix_len >= 8 ? a[i] : static_cast<uint8_t>(a[i] & (0xff << (8 - prefix_len)));
  }
  return out;
}

absl::StatusOr<Frame> ParseFrame(std::span<const uint8_t> frame) {
  if (frame.size() < kEthHeader + kIp6Header) return absl::InvalidArgumentError("frame too short for IPv6");
  if (GetBe16(frame.data() + 12) != ETH_P_IPV6) return absl::InvalidArgumentError("not an IPv6 frame");
  const uint8_t* ip = frame.data() + kEthHeader;
  if ((ip[0] >> 4) != 6) return absl::InvalidArgumentError("IP version is not 6");
  const size_t payload_len = GetBe16(ip + 4);
  if (payload_len > frame.size() - kEthHeader - kIp6Header) {
    return absl::InvalidArgumentError("IPv6 payload length runs past the frame");
  }
  Frame f;
  std::memcpy(f.dst_mac.data(), frame.data(), 6);
  std::memcpy(f.src_mac.data(), frame.data() + 6, 6);
  f.next_header = ip[6];
  f.hop_limit = ip[7];
  std::memcpy(f.src.data(), ip + 8, 16);
  std::memcpy(f.dst.data(), ip + 24, 16);
  if (f.next_header != kIcmp6 && f.next_header != kUdp) {
    return absl::InvalidArgumentError("IPv6 next header is neither ICMPv6 nor UDP");
  }
  f.payload.assign(reinterpret_cast<const char*>(ip + kIp6Header), payload_len);
  return f;
}

std::string BuildFrame(const Frame& f) {
  std::string out;
  out.reserve(kEthHeader + kIp6Header + f.payload.size());
  out.append(reinterpret_cast<const char*>(f.dst_mac.data()), 6);
  out.append(reinterpret_cast<const char*>(f.src_mac.data()), 6);
  PutBe16(&out, ETH_P_IPV6);
  PutBe32(&out, 0x60000000);  // version 6, traffic class 0, flow label 0
  PutBe16(&out, static_cast<uint16_t>(f.payload.size()));
  out.push_back(static_cast<char>(f.next_header));
  out.push_back(static_cast<char>(f.hop_limit));
  out.append(reinterpret_cast<const char*>(f.src.data()), 16);
  out.append(reinterpret_cast<const char*>(f.dst.data()), 16);
  out += f.payload;
  return out;
}

uint16_t UpperChecksum(const Addr& src, const Addr& dst, uint8_t next_header, std::string_view upper) {
  uint32_t sum = Sum(src.data(), 16, 0);
  sum = Sum(dst.data(), 16, sum);
  const uint32_t len = static_cast<uint32_t>(upper.size());
  sum += len >> 16;
  sum += len & 0xffff;
  sum += next_header;
  sum = Sum(reinterpret_cast<const uint8_t*>(upper.data()), upper.size(), sum);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffff);
}

std::string Icmp6(const Addr& src, const Addr& dst, uint8_t type, uint8_t code, std::string_view body) {
  std::string m;
  m.push_back(static_cast<char>(type));
  m.push_back(static_cast<char>(code));
  PutBe16(&m, 0);
  m += body;
  const uint16_t sum = UpperChecksum(src, dst, kIcmp6, m);
  m[2] = static_cast<char>(sum >> 8);
  m[3] = static_cast<char>(sum & 0xff);
  return m;
}

std::string Udp6(const Addr& src, const Addr& dst, uint16_t src_port, uint16_t dst_port, std::string_view data) {
  std::string u;
  PutBe16(&u, src_port);
  PutBe16(&u, dst_port);
  PutBe16(&u, static_cast<uint16_t>(8 + data.size()));
  PutBe16(&u, 0);
  u += data;
  uint16_t sum = UpperChecksum(src, dst, kUdp, u);
  if (sum == 0) sum = 0xffff;  // over IPv6 a UDP checksum of 0 is not allowed
  u[6] = static_cast<char>(sum >> 8);
  u[7] = static_cast<char>(sum & 0xff);
  return u;
}

absl::StatusOr<UdpView> ParseUdp(std::string_view upper) {
  if (upper.size() < 8) return absl::InvalidArgumentError("UDP datagram shorter than its header");
  const auto* p = reinterpret_cast<const uint8_t*>(upper.data());
  const size_t len = GetBe16(p + 4);
  if (len < 8 || len > upper.size()) return absl::InvalidArgumentError("UDP length does not fit the packet");
  return UdpView{GetBe16(p), GetBe16(p + 2), upper.substr(8, len - 8)};
}

namespace nd {
std::string LinkAddrOption(uint8_t type, const dhcp::Mac& mac) {
  std::string out{static_cast<char>(type), 1};
  out.append(reinterpret_cast<const char*>(mac.data()), mac.size());
  return out;
}

std::optional<Addr> SolicitTarget(std::string_view icmp) {
  // type, code, checksum, reserved (4), target (16).
  if (icmp.size() < 24 || static_cast<uint8_t>(icmp[0]) != kNeighborSolicit || icmp[1] != 0) return std::nullopt;
  Addr t;
  std::memcpy(t.data(), icmp.data() + 8, 16);
  return t;
}
}  // namespace nd

}  // namespace kvcri::cni::ip6

namespace kvcri::cni::dhcp6 {
namespace {

using base::GetBe16;
using base::GetBe32;
using base::PutBe16;
using base::PutBe32;


// A run of options (RFC 8415 21.1): code, length, value.
absl::Status ParseOptions(std::string_view data, std::vector<std::pair<uint16_t, std::string>>* out) {
  size_t at = 0;
  while (at < data.size()) {
    if (data.size() - at < 4) return absl::InvalidArgumentError("DHCPv6 option header truncated");
    const uint16_t code = GetBe16(data, at), len = GetBe16(data, at + 2);
    at += 4;
    if (len > data.size() - at) {
      return absl::InvalidArgumentError(base::StrCat("DHCPv6 option ", code, " runs past the message"));
    }
    if (out->size() == kMaxOptions) {
      return absl::InvalidArgumentError(base::StrCat("DHCPv6 message has more than ", kMaxOptions, " options"));
    }
    out->emplace_back(code, std::string(data.substr(at, len)));
    at += len;
  }
  return absl::OkStatus();
}

void SerializeOptions(const std::vector<std::pair<uint16_t, std::string>>& opts, std::string* out) {
  for (const auto& [code, value] : opts) {
    PutBe16(out, code);
    PutBe16(out, static_cast<uint16_t>(value.size()));
    *out += value;
  }
}

}  // namespace

const std::string* Message::Find(uint16_t code) const {
  for (const auto& [c, v] : options) {
    if (c == code) return &v;
  }
  return nullptr;
}

absl::StatusOr<Message> ParseMessage(std::string_view data) {
  if (data.size() < 4) return absl::InvalidArgumentError("DHCPv6 message shorter than its header");
  Message m;
  m.type = static_cast<uint8_t>(data[0]);
  m.xid = GetBe32(data, 0) & 0xffffff;
  if (absl::Status s = ParseOptions(data.substr(4), &m.options); !s.ok()) return s;
  return m;
}

std::string SerializeMessage(const Message& m) {
  std::string out;
  PutBe32(&out, (static_cast<uint32_t>(m.type) << 24) | (m.xid & 0xffffff));
  SerializeOptions(m.options, &out);
  return out;
}

absl::StatusOr<IaNa> ParseIaNa(std::string_view value) {
  if (value.size() < 12) return absl::InvalidArgumentError("IA_NA shorter than 12 bytes");
  IaNa ia;
  ia.iaid = GetBe32(value, 0);
  ia.t1 = GetBe32(value, 4);
  ia.t2 = GetBe32(value, 8);
  if (absl::Status s = ParseOptions(value.substr(12), &ia.options); !s.ok()) return s;
  return ia;
}

std::string SerializeIaNa(const IaNa& ia) {
  std::string out;
  PutBe32(&out, ia.iaid);
  PutBe32(&out, ia.t1);
  PutBe32(&out, ia.t2);
  SerializeOptions(ia.options, &out);
  return out;
}

std::string IaAddr(const ip6::Addr& a, uint32_t preferred, uint32_t valid) {
  std::string out(reinterpret_cast<const char*>(a.data()), a.size());
  PutBe32(&out, preferred);
  PutBe32(&out, valid);
  return out;
}

std::optional<ip6::Addr> IaAddrAddress(std::string_view value) {
  if (value.size() < 24) return std::nullopt;
  ip6::Addr a;
  std::memcpy(a.data(), value.data(), a.size());
  return a;
}

std::string StatusCode(uint16_t code, std::string_view message) {
  std::string out;
  PutBe16(&out, code);
  out += message;
  return out;
}

std::string DuidLl(const dhcp::Mac& mac) {
  std::string out;
  PutBe16(&out, 3);
  PutBe16(&out, 1);
  out.append(reinterpret_cast<const char*>(mac.data()), mac.size());
  return out;
}

}  // namespace kvcri::cni::dhcp6
