// Crafted Ethernet frames for filter tests: IPv4 (with options, fragments), UDP, TCP, ARP, IPv6, ICMPv6.
#pragma once

// Builders return raw bytes in a std::string. Checksums are left zero where
// nothing on the path checks them (BPF filters, packet sockets, taps).

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace kvcri::testing::frames {

using Mac = std::array<uint8_t, 6>;
using Ip6 = std::array<uint8_t, 16>;

inline void Put16(std::string* s, uint16_t v) {
  s->push_back(static_cast<char>(v >> 8));
  s->push_back(static_cast<char>(v));
}
inline void Put32(std::string* s, uint32_t v) {
  Put16(s, static_cast<uint16_t>(v >> 16));
  Put16(s, static_cast<uint16_t>(v));
}
inline void PutMac(std::string* s, const Mac& m) { s->append(reinterpret_cast<const char*>(m.data()), m.size()); }
inline void PutIp6(std::string* s, const Ip6& a) { s->append(reinterpret_cast<const char*>(a.data()), a.size()); }

inline constexpr Mac kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
inline constexpr Mac kAllNodes6 = {0x33, 0x33, 0, 0, 0, 1};

inline std::string Ethernet(const Mac& dst, const Mac& src, uint16_t type, std::string_view payload) {
  std::string f;
  PutMac(&f, dst);
  PutMac(&f, src);
  Put16(&f, type);
  f += payload;
  return f;
}

// An 802.1Q-tagged frame.
inline std::string Tagged(const Mac& dst, const Mac& src, uint16_t vid, uint16_t type, std::string_view payload) {
  std::string f;
  PutMac(&f, dst);
  PutMac(&f, src);
  Put16(&f, 0x8100);
  Put16(&f, vid);
  Put16(&f, type);
  f += payload;
  return f;
}

// IPv4 header with `ihl` 32-bit words (options are NOPs) and the raw
// flags+fragment-offset word `frag` (0x2000 = more fragments).
inline std::string Ipv4(uint32_t src, uint32_t dst, uint8_t proto, std::string_view payload, int ihl = 5,
                        uint16_t frag = 0) {
  std::string h;
  h.push_back(static_cast<char>(0x40 | ihl));
  h.push_back(0);
  Put16(&h, static_cast<uint16_t>(ihl * 4 + payload.size()));
  Put16(&h, 0x1234);
  Put16(&h, frag);
  h.push_back(64);
  h.push_back(static_cast<char>(proto));
  Put16(&h, 0);
  Put32(&h, src);
  Put32(&h, dst);
  h.append(static_cast<size_t>(ihl * 4 - 20), '\x01');
  uint32_t sum = 0;
  for (size_t i = 0; i < h.size(); i += 2) {
    sum += static_cast<uint32_t>(static_cast<uint8_t>(h[i]) << 8 | static_cast<uint8_t>(h[i + 1]));
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  h[10] = static_cast<char>(~sum >> 8);
  h[11] = static_cast<char>(~sum);
  return h + std::string(payload);
}

inline std::string Udp(uint16_t sport, uint16_t dport, std::string_view payload = "hello") {
  std::string u;
  Put16(&u, sport);
  Put16(&u, dport);
  Put16(&u, static_cast<uint16_t>(8 + payload.size()));
  Put16(&u, 0);  // no checksum (legal for IPv4)
  return u + std::string(payload);
}

inline std::string Tcp(uint16_t sport, uint16_t dport) {
  std::string t;
  Put16(&t, sport);
  Put16(&t, dport);
  Put32(&t, 1);
  Put32(&t, 0);
  Put16(&t, 0x5002);  // 20-byte header, SYN
  Put16(&t, 65535);
  Put32(&t, 0);
  return t;
}

// ARP for Ethernet/IPv4: op 1 request, 2 reply.
inline std::string Arp(uint16_t op, const Mac& sha, uint32_t spa, const Mac& tha, uint32_t tpa) {
  std::string a;
  Put16(&a, 1);
  Put16(&a, 0x0800);
  a.push_back(6);
  a.push_back(4);
  Put16(&a, op);
  PutMac(&a, sha);
  Put32(&a, spa);
  PutMac(&a, tha);
  Put32(&a, tpa);
  return a;
}

inline std::string Ipv6(const Ip6& src, const Ip6& dst, uint8_t next_header, std::string_view payload) {
  std::string h;
  Put32(&h, 0x60000000);
  Put16(&h, static_cast<uint16_t>(payload.size()));
  h.push_back(static_cast<char>(next_header));
  h.push_back(static_cast<char>(255));
  PutIp6(&h, src);
  PutIp6(&h, dst);
  return h + std::string(payload);
}

// A hop-by-hop/routing/destination-options header of 8 * (1 + len8) bytes
// (PadN filled) in front of `rest`.
inline std::string Ext6(uint8_t next_header, std::string_view rest, int len8 = 0) {
  std::string e;
  e.push_back(static_cast<char>(next_header));
  e.push_back(static_cast<char>(len8));
  e.push_back(1);  // PadN
  e.push_back(static_cast<char>(8 * (1 + len8) - 4));
  e.append(static_cast<size_t>(8 * (1 + len8) - 4), '\0');
  return e + std::string(rest);
}

// A fragment header at 8-octet offset `offset8` in front of `rest`.
inline std::string Frag6(uint8_t next_header, uint16_t offset8, bool more, std::string_view rest) {
  std::string f;
  f.push_back(static_cast<char>(next_header));
  f.push_back(0);
  Put16(&f, static_cast<uint16_t>(offset8 << 3 | (more ? 1 : 0)));
  Put32(&f, 0xabcd);
  return f + std::string(rest);
}

// ICMPv6 of `type` with a 4-byte zero field, then `body`.
inline std::string Icmp6(uint8_t type, std::string_view body = std::string_view("\0\0\0\0\0\0\0\0\0\0\0\0", 12)) {
  std::string m;
  m.push_back(static_cast<char>(type));
  m.push_back(0);
  Put16(&m, 0);
  Put32(&m, 0);
  return m + std::string(body);
}

// An IPv6 frame carrying ICMPv6 `message` with its checksum filled in (what a
// real guest kernel insists on), hop limit 255 as neighbour discovery needs.
inline std::string Icmp6Frame(const Mac& dst_mac, const Mac& src_mac, const Ip6& src, const Ip6& dst,
                              std::string message) {
  uint32_t sum = 0;
  auto add = [&sum](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | (i + 1 < n ? p[i + 1] : 0));
  };
  add(src.data(), src.size());
  add(dst.data(), dst.size());
  const uint8_t pseudo[8] = {static_cast<uint8_t>(message.size() >> 24),
                             static_cast<uint8_t>(message.size() >> 16),
                             static_cast<uint8_t>(message.size() >> 8),
                             static_cast<uint8_t>(message.size()),
                             0,
                             0,
                             0,
                             58};
  add(pseudo, sizeof pseudo);
  message[2] = message[3] = 0;
  add(reinterpret_cast<const uint8_t*>(message.data()), message.size());
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  message[2] = static_cast<char>(~sum >> 8);
  message[3] = static_cast<char>(~sum);
  return Ethernet(dst_mac, src_mac, 0x86dd, Ipv6(src, dst, 58, message));
}

// A router advertisement (lifetime 1800 s) with one prefix-information option
// for `prefix`/64, on-link and autonomous: what makes a guest configure an
// address and a default route by itself (SLAAC).
inline std::string RouterAdvert(const Ip6& prefix) {
  std::string m;
  m.push_back(static_cast<char>(134));
  m.push_back(0);
  Put16(&m, 0);                          // checksum, filled by Icmp6Frame
  m.push_back(64);                       // current hop limit
  m.push_back(0);                        // flags
  Put16(&m, 1800);                       // router lifetime
  Put32(&m, 0);                          // reachable time
  Put32(&m, 0);                          // retransmission timer
  m.push_back(3);                        // option: prefix information
  m.push_back(4);                        // 4 * 8 bytes
  m.push_back(64);                       // prefix length
  m.push_back(static_cast<char>(0xc0));  // on-link, autonomous
  Put32(&m, 86400);                      // valid lifetime
  Put32(&m, 14400);                      // preferred lifetime
  Put32(&m, 0);
  PutIp6(&m, prefix);
  return m;
}

inline Ip6 Ip6Of(std::initializer_list<uint16_t> groups_then_last) {
  // {0xfe80, 0, 0, 0, 0, 0, 0, 1} style: all eight groups.
  Ip6 a{};
  int i = 0;
  for (uint16_t g : groups_then_last) {
    a[2 * i] = static_cast<uint8_t>(g >> 8);
    a[2 * i + 1] = static_cast<uint8_t>(g);
    ++i;
  }
  return a;
}

}  // namespace kvcri::testing::frames
