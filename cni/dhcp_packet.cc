// DHCPv4 messages and options to and from bytes, with the Ethernet/IPv4/UDP framing around them.
#include "cni/dhcp_packet.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstdio>
#include <cstring>

#include "config/base/big_endian.h"
#include "config/base/str.h"

namespace kvcri::cni::dhcp {
namespace {

using base::GetBe16;
using base::GetBe32;
using base::PutBe16;
using base::PutBe32;

constexpr size_t kFixedLen = 236;  // BOOTP header up to and excluding options
constexpr uint32_t kMagicCookie = 0x63825363;
constexpr size_t kMinBootp = 300;
constexpr size_t kEthLen = 14, kIpLen = 20, kUdpLen = 8;


// RFC 1071 ones' complement sum, folded.
uint32_t SumWords(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += GetBe16(p + i);
  if (n & 1) sum += uint32_t{p[n - 1]} << 8;
  return sum;
}
uint16_t Fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffff);
}

absl::Status Truncated(std::string_view what) {
  return absl::InvalidArgumentError(base::StrCat("truncated ", what));
}

}  // namespace

std::optional<MessageType> Message::type() const {
  auto it = options.find(opt::kMessageType);
  if (it == options.end() || it->second.size() != 1) return std::nullopt;
  uint8_t t = static_cast<uint8_t>(it->second[0]);
  if (t < 1 || t > 8) return std::nullopt;
  return static_cast<MessageType>(t);
}

std::optional<Ip4> Message::Ip4Option(uint8_t code) const {
  auto it = options.find(code);
  if (it == options.end() || it->second.size() != 4) return std::nullopt;
  return GetBe32(reinterpret_cast<const uint8_t*>(it->second.data()));
}

void Message::SetIp4Option(uint8_t code, Ip4 ip) { SetIp4ListOption(code, {ip}); }

void Message::SetIp4ListOption(uint8_t code, const std::vector<Ip4>& ips) {
  std::string v;
  for (Ip4 ip : ips) PutBe32(&v, ip);
  options[code] = std::move(v);
}

void Message::SetU32Option(uint8_t code, uint32_t value) {
  std::string v;
  PutBe32(&v, value);
  options[code] = std::move(v);
}

absl::StatusOr<Message> ParseMessage(std::span<const uint8_t> p) {
  if (p.size() < kFixedLen + 4) return Truncated("DHCP message");
  Message m;
  m.op = p[0];
  m.htype = p[1];
  m.hlen = p[2];
  m.hops = p[3];
  m.xid = GetBe32(&p[4]);
  m.secs = GetBe16(&p[8]);
  m.flags = GetBe16(&p[10]);
  m.ciaddr = GetBe32(&p[12]);
  m.yiaddr = GetBe32(&p[16]);
  m.siaddr = GetBe32(&p[20]);
  m.giaddr = GetBe32(&p[24]);
  std::memcpy(m.chaddr.data(), &p[28], m.chaddr.size());
  if (GetBe32(&p[kFixedLen]) != kMagicCookie) {
    return absl::InvalidArgumentError("DHCP message lacks the magic cookie");
  }
  // Options in sname/file (overload, option 52) are not read: clients do not
  // use them in requests.
  size_t i = kFixedLen + 4;
  while (i < p.size()) {
    uint8_t code = p[i++];
    if (code == opt::kPad) continue;
    if (code == opt::kEnd) return m;
    if (i >= p.size()) return Truncated(base::StrCat("DHCP option ", int{code}));
    size_t len = p[i++];
    if (i + len > p.size()) return Truncated(base::StrCat("DHCP option ", int{code}));
    m.options[code].append(reinterpret_cast<const char*>(&p[i]), len);
    i += len;
  }
  return absl::InvalidArgumentError("DHCP options lack the end option");
}

std::string SerializeMessage(const Message& m) {
  std::string out;
  out.reserve(kMinBootp + 64);
  out.push_back(static_cast<char>(m.op));
  out.push_back(static_cast<char>(m.htype));
  out.push_back(static_cast<char>(m.hlen));
  out.push_back(static_cast<char>(m.hops));
  PutBe32(&out, m.xid);
  PutBe16(&out, m.secs);
  PutBe16(&out, m.flags);
  PutBe32(&out, m.ciaddr);
  PutBe32(&out, m.yiaddr);
  PutBe32(&out, m.siaddr);
  PutBe32(&out, m.giaddr);
  out.append(reinterpret_cast<const char*>(m.chaddr.data()), m.chaddr.size());
  out.append(10 + 64 + 128, '\0');  // rest of chaddr, sname, file
  PutBe32(&out, kMagicCookie);
  // Message type first: some clients look for it there.
  auto put = [&out](uint8_t code, std::string_view v) {
    do {  // RFC 3396: values over 255 bytes span consecutive instances.
      size_t n = std::min<size_t>(v.size(), 255);
      out.push_back(static_cast<char>(code));
      out.push_back(static_cast<char>(n));
      out.append(v.substr(0, n));
      v.remove_prefix(n);
    } while (!v.empty());
  };
  if (auto it = m.options.find(opt::kMessageType); it != m.options.end()) put(it->first, it->second);
  for (const auto& [code, value] : m.options) {
    if (code != opt::kMessageType && code != opt::kPad && code != opt::kEnd) put(code, value);
  }
  out.push_back(static_cast<char>(opt::kEnd));
  if (out.size() < kMinBootp) out.resize(kMinBootp, '\0');
  return out;
}

absl::StatusOr<std::string> EncodeDomainSearch(const std::vector<std::string>& domains) {
  std::string out;
  std::map<std::string, size_t> suffix_at;  // already-written name suffix -> offset
  for (std::string_view d : domains) {
    while (!d.empty() && d.back() == '.') d.remove_suffix(1);
    if (d.empty()) return absl::InvalidArgumentError("empty search domain");
    std::vector<std::string_view> labels;
    for (size_t start = 0;;) {
      size_t dot = d.find('.', start);
      std::string_view label = d.substr(start, dot == std::string_view::npos ? dot : dot - start);
      if (label.empty() || label.size() > 63) {
        return absl::InvalidArgumentError(
            base::StrCat("search domain \"", d, "\" has an empty or over-63-byte label"));
      }
      labels.push_back(label);
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
    bool pointed = false;
    for (size_t i = 0; i < labels.size(); ++i) {
      std::string suffix(d.substr(static_cast<size_t>(labels[i].data() - d.data())));
      for (char& c : suffix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (auto it = suffix_at.find(suffix); it != suffix_at.end()) {
        PutBe16(&out, static_cast<uint16_t>(0xc000 | it->second));
        pointed = true;
        break;
      }
      if (out.size() < 0x4000) suffix_at.emplace(std::move(suffix), out.size());
      out.push_back(static_cast<char>(labels[i].size()));
      out.append(labels[i]);
    }
    if (!pointed) out.push_back('\0');
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> DecodeDomainSearch(std::string_view data) {
  std::vector<std::string> out;
  auto bad = [] { return absl::InvalidArgumentError("malformed domain search list"); };
  size_t pos = 0;
  while (pos < data.size()) {
    std::string name;
    size_t p = pos;
    bool jumped = false;
    int hops = 0;
    for (;;) {
      if (p >= data.size()) return bad();
      uint8_t len = static_cast<uint8_t>(data[p]);
      if ((len & 0xc0) == 0xc0) {
        if (p + 1 >= data.size() || ++hops > 64) return bad();
        size_t target = (len & 0x3f) << 8 | static_cast<uint8_t>(data[p + 1]);
        if (!jumped) pos = p + 2;
        jumped = true;
        if (target >= p) return bad();  // only backwards: no loops
        p = target;
        continue;
      }
      if (len > 63) return bad();
      if (len == 0) {
        if (!jumped) pos = p + 1;
        break;
      }
      if (p + 1 + len > data.size()) return bad();
      if (!name.empty()) name.push_back('.');
      name.append(data.substr(p + 1, len));
      p += 1 + len;
    }
    out.push_back(std::move(name));
  }
  return out;
}

std::string EncodeClasslessRoutes(const std::vector<Route4>& routes) {
  std::string out;
  for (const Route4& r : routes) {
    out.push_back(static_cast<char>(r.prefix_len));
    int significant = (r.prefix_len + 7) / 8;
    for (int i = 0; i < significant; ++i) out.push_back(static_cast<char>(r.dst >> (24 - 8 * i)));
    PutBe32(&out, r.gateway);
  }
  return out;
}

absl::StatusOr<std::vector<Route4>> DecodeClasslessRoutes(std::string_view data) {
  std::vector<Route4> out;
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  size_t i = 0;
  while (i < data.size()) {
    Route4 r;
    r.prefix_len = p[i++];
    if (r.prefix_len > 32) return absl::InvalidArgumentError("classless route prefix over 32");
    size_t significant = static_cast<size_t>(r.prefix_len + 7) / 8;
    if (i + significant + 4 > data.size()) return Truncated("classless static route");
    for (size_t k = 0; k < significant; ++k) r.dst |= uint32_t{p[i + k]} << (24 - 8 * k);
    i += significant;
    r.gateway = GetBe32(p + i);
    i += 4;
    out.push_back(r);
  }
  return out;
}

std::string BuildUdpFrame(const UdpFrame& f) {
  std::string out;
  out.reserve(kEthLen + kIpLen + kUdpLen + f.payload.size());
  out.append(reinterpret_cast<const char*>(f.dst_mac.data()), 6);
  out.append(reinterpret_cast<const char*>(f.src_mac.data()), 6);
  PutBe16(&out, 0x0800);
  const size_t ip_at = out.size();
  const uint16_t udp_len = static_cast<uint16_t>(kUdpLen + f.payload.size());
  out.push_back(0x45);  // IPv4, 20-byte header
  out.push_back(0x10);  // DSCP low delay, as ISC dhcpd and dnsmasq send
  PutBe16(&out, static_cast<uint16_t>(kIpLen + udp_len));
  PutBe16(&out, 0);       // id
  PutBe16(&out, 0x4000);  // DF
  out.push_back(64);     // TTL
  out.push_back(17);     // UDP
  PutBe16(&out, 0);       // checksum, below
  PutBe32(&out, f.src_ip);
  PutBe32(&out, f.dst_ip);
  uint16_t ip_sum = Fold(SumWords(reinterpret_cast<const uint8_t*>(out.data()) + ip_at, kIpLen));
  out[ip_at + 10] = static_cast<char>(ip_sum >> 8);
  out[ip_at + 11] = static_cast<char>(ip_sum & 0xff);

  const size_t udp_at = out.size();
  PutBe16(&out, f.src_port);
  PutBe16(&out, f.dst_port);
  PutBe16(&out, udp_len);
  PutBe16(&out, 0);
  out.append(f.payload);
  uint32_t pseudo =
      (f.src_ip >> 16) + (f.src_ip & 0xffff) + (f.dst_ip >> 16) + (f.dst_ip & 0xffff) + 17 + udp_len;
  uint16_t udp_sum = Fold(SumWords(reinterpret_cast<const uint8_t*>(out.data()) + udp_at, udp_len, pseudo));
  if (udp_sum == 0) udp_sum = 0xffff;  // 0 means "no checksum"
  out[udp_at + 6] = static_cast<char>(udp_sum >> 8);
  out[udp_at + 7] = static_cast<char>(udp_sum & 0xff);
  return out;
}

absl::StatusOr<UdpFrame> ParseUdpFrame(std::span<const uint8_t> p) {
  if (p.size() < kEthLen + kIpLen + kUdpLen) return Truncated("frame");
  UdpFrame f;
  std::memcpy(f.dst_mac.data(), &p[0], 6);
  std::memcpy(f.src_mac.data(), &p[6], 6);
  if (GetBe16(&p[12]) != 0x0800) return absl::InvalidArgumentError("frame is not IPv4");
  const uint8_t* ip = &p[kEthLen];
  size_t ihl = size_t{ip[0] & 0x0fu} * 4;
  if ((ip[0] >> 4) != 4 || ihl < kIpLen) return absl::InvalidArgumentError("bad IPv4 header");
  if (ip[9] != 17) return absl::InvalidArgumentError("IPv4 packet is not UDP");
  if ((GetBe16(&ip[6]) & 0x3fff) != 0) return absl::InvalidArgumentError("IPv4 fragment");
  size_t total = GetBe16(&ip[2]);
  if (total < ihl + kUdpLen || kEthLen + total > p.size()) return Truncated("IPv4 packet");
  f.src_ip = GetBe32(&ip[12]);
  f.dst_ip = GetBe32(&ip[16]);
  const uint8_t* udp = ip + ihl;
  f.src_port = GetBe16(&udp[0]);
  f.dst_port = GetBe16(&udp[2]);
  size_t udp_len = GetBe16(&udp[4]);
  if (udp_len < kUdpLen || ihl + udp_len > total) return Truncated("UDP datagram");
  f.payload.assign(reinterpret_cast<const char*>(udp + kUdpLen), udp_len - kUdpLen);
  return f;
}

absl::StatusOr<Mac> ParseMac(std::string_view text) {
  Mac mac{};
  auto bad = [&] {
    return absl::InvalidArgumentError(base::StrCat("MAC address \"", text, "\" is not aa:bb:cc:dd:ee:ff"));
  };
  if (text.size() != 17) return bad();
  for (size_t i = 0; i < 6; ++i) {
    if (i > 0 && text[i * 3 - 1] != ':') return bad();
    auto [ptr, ec] = std::from_chars(text.data() + i * 3, text.data() + i * 3 + 2, mac[i], 16);
    if (ec != std::errc() || ptr != text.data() + i * 3 + 2) return bad();
  }
  return mac;
}

std::string FormatMac(const Mac& m) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return buf;
}

absl::StatusOr<Ip4> ParseIp4(std::string_view text) {
  in_addr a{};
  std::string s(text);
  if (::inet_pton(AF_INET, s.c_str(), &a) != 1) {
    return absl::InvalidArgumentError(base::StrCat("\"", text, "\" is not an IPv4 address"));
  }
  return ntohl(a.s_addr);
}

std::string FormatIp4(Ip4 ip) {
  return base::StrCat(ip >> 24, ".", (ip >> 16) & 0xff, ".", (ip >> 8) & 0xff, ".", ip & 0xff);
}

Ip4 PrefixToMask(int prefix_len) {
  if (prefix_len <= 0) return 0;
  if (prefix_len >= 32) return 0xffffffff;
  return ~((uint32_t{1} << (32 - prefix_len)) - 1);
}

}  // namespace kvcri::cni::dhcp
