// The guest-egress and Pod-ingress classic BPF programs, and the guest's identity they check.
#include "cni/l2_filter.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <netinet/in.h>

#include "cni/bpf_program.h"
#include "config/base/str.h"

namespace kvcri::cni {
namespace {

using bpf::Assembler;
using Label = Assembler::Label;
constexpr Label kNext = Assembler::kNext;

constexpr uint32_t kEthType = 12;
constexpr uint32_t kL3 = 14;                // Ethernet header length
constexpr uint32_t kIp4Proto = kL3 + 9;     // IPv4 protocol byte
constexpr uint32_t kIp4FragWord = kL3 + 6;  // flags + fragment offset
constexpr uint32_t kIp4Src = kL3 + 12;
constexpr uint32_t kIp6NextHeader = kL3 + 6;
constexpr uint32_t kIp6Src = kL3 + 8;
constexpr uint32_t kIp6Payload = kL3 + 40;
constexpr int kMaxIp6ExtHeaders = 4;

constexpr uint8_t kIcmp6 = 58, kUdp = 17, kHopByHop = 0, kRouting = 43, kFragment = 44, kDestOpts = 60;
constexpr uint8_t kRouterAdvert = 134, kNeighborAdvert = 136, kRedirect = 137;
constexpr uint16_t kDhcpServerPort = dhcp::kServerPort, kDhcpClientPort = dhcp::kClientPort;
constexpr uint16_t kDhcp6ServerPort = 547;
constexpr uint16_t kDhcp6ClientPort = 546;

uint32_t MacHigh(const dhcp::Mac& m) {
  return uint32_t{m[0]} << 24 | uint32_t{m[1]} << 16 | uint32_t{m[2]} << 8 | m[3];
}
uint32_t MacLow(const dhcp::Mac& m) { return uint32_t{m[4]} << 8 | m[5]; }
uint32_t Word(const Ip6& a, int i) {
  return uint32_t{a[4 * i]} << 24 | uint32_t{a[4 * i + 1]} << 16 | uint32_t{a[4 * i + 2]} << 8 | a[4 * i + 3];
}

// Jumps to `yes` when the 16 bytes at `offset` (from the frame start, or from
// X when `indexed`) are `addr`; falls through otherwise.
void JumpIfAddress(Assembler& a, uint32_t offset, bool indexed, const Ip6& addr, Label yes) {
  Label no = a.NewLabel();
  for (int i = 0; i < 4; ++i) {
    if (indexed) {
      a.LoadWordX(offset + 4 * i);
    } else {
      a.LoadWord(offset + 4 * i);
    }
    a.JumpIfEqual(Word(addr, i), i == 3 ? yes : kNext, no);
  }
  a.Bind(no);
}

// Jumps to `yes` when the 16 bytes at X + `offset` (or at `offset`) are
// link-local (fe80::/10); falls through otherwise.
void JumpIfLinkLocal(Assembler& a, uint32_t offset, bool indexed, Label yes) {
  if (indexed) {
    a.LoadHalfX(offset);
  } else {
    a.LoadHalf(offset);
  }
  a.Stmt(BPF_ALU | BPF_AND | BPF_K, 0xffc0);
  a.JumpIfEqual(0xfe80, yes, kNext);
}

// Follows an IPv6 frame's extension headers. Jumps to `icmp6` or `udp6` with
// X at the upper-layer header, to `other` for any other upper layer or a
// non-first fragment, and to `too_deep` past kMaxIp6ExtHeaders headers.
// Scratch memory M[0] holds the next-header value being followed.
void WalkIpv6(Assembler& a, Label icmp6, Label udp6, Label other, Label too_deep) {
  a.LoadByte(kIp6NextHeader);
  a.Stmt(BPF_ST, 0);
  a.Stmt(BPF_LDX | BPF_W | BPF_IMM, kIp6Payload);
  for (int i = 0; i < kMaxIp6ExtHeaders; ++i) {
    Label ext = a.NewLabel(), frag = a.NewLabel(), next_round = a.NewLabel();
    a.Stmt(BPF_LD | BPF_MEM, 0);
    a.JumpIfEqual(kIcmp6, icmp6, kNext);
    a.JumpIfEqual(kUdp, udp6, kNext);
    a.JumpIfEqual(kFragment, frag, kNext);
    a.JumpIfEqual(kHopByHop, ext, kNext);
    a.JumpIfEqual(kRouting, ext, kNext);
    a.JumpIfEqual(kDestOpts, ext, other);
    // Generic extension header: next header at +0, length in 8-octet units
    // (not counting the first 8) at +1.
    a.Bind(ext);
    a.LoadByteX(0);
    a.Stmt(BPF_ST, 0);
    a.LoadByteX(1);
    a.Stmt(BPF_ALU | BPF_ADD | BPF_K, 1);
    a.Stmt(BPF_ALU | BPF_LSH | BPF_K, 3);
    a.Stmt(BPF_ALU | BPF_ADD | BPF_X);
    a.Stmt(BPF_MISC | BPF_TAX);
    a.Goto(next_round);
    // Fragment header (8 bytes): only the first fragment carries the upper
    // layer's header; later ones have nothing to judge.
    a.Bind(frag);
    a.LoadByteX(0);
    a.Stmt(BPF_ST, 0);
    a.LoadHalfX(2);
    a.JumpIfAnySet(0xfff8, other, kNext);
    a.Stmt(BPF_MISC | BPF_TXA);
    a.Stmt(BPF_ALU | BPF_ADD | BPF_K, 8);
    a.Stmt(BPF_MISC | BPF_TAX);
    a.Bind(next_round);
  }
  a.Goto(too_deep);
}

}  // namespace

absl::StatusOr<GuestAddresses> GuestAddressesFromNic(const WiredNic& nic) {
  GuestAddresses out;
  absl::StatusOr<dhcp::Mac> mac = dhcp::ParseMac(nic.mac);
  if (!mac.ok()) return absl::InvalidArgumentError(base::StrCat("guest MAC \"", nic.mac, "\" does not parse"));
  out.mac = *mac;
  auto parse6 = [](const std::string& text, Ip6* addr) {
    in6_addr a{};
    if (::inet_pton(AF_INET6, text.c_str(), &a) != 1) return false;
    std::copy(std::begin(a.s6_addr), std::end(a.s6_addr), addr->begin());
    return true;
  };
  for (const IpPrefix& p : nic.addresses) {
    if (p.ipv6()) {
      Ip6 a{};
      if (!parse6(p.address, &a)) {
        return absl::InvalidArgumentError(base::StrCat("guest address \"", p.address, "\" does not parse"));
      }
      out.ipv6.push_back(a);
    } else {
      absl::StatusOr<dhcp::Ip4> a = dhcp::ParseIp4(p.address);
      if (!a.ok()) {
        return absl::InvalidArgumentError(base::StrCat("guest address \"", p.address, "\" does not parse"));
      }
      out.ipv4.push_back(*a);
    }
  }
  if (out.ipv4.size() > kMaxAddresses || out.ipv6.size() > kMaxAddresses) {
    return absl::InvalidArgumentError(base::StrCat("guest has ", out.ipv4.size(), " IPv4 and ", out.ipv6.size(),
                                                   " IPv6 addresses; the L2 filter takes at most ", kMaxAddresses,
                                                   " of each"));
  }
  if (!out.ipv6.empty() && !nic.gateway6.empty()) {
    Ip6 gw{};
    if (!parse6(nic.gateway6, &gw)) {
      return absl::InvalidArgumentError(base::StrCat("IPv6 gateway \"", nic.gateway6, "\" does not parse"));
    }
    // RAs come from a link-local source (RFC 4861 4.2): only a link-local
    // gateway can be recognised in one.
    if (gw[0] == 0xfe && (gw[1] & 0xc0) == 0x80) out.router6 = gw;
  }
  return out;
}

absl::StatusOr<std::vector<sock_filter>> GuestEgressFilter(const GuestAddresses& guest) {
  Assembler a("guest egress");
  const Label drop = a.NewLabel(), keep_local = a.NewLabel(), pass = a.NewLabel();
  const Label ipv4 = a.NewLabel(), src4 = a.NewLabel(), arp = a.NewLabel();
  const bool has6 = !guest.ipv6.empty();
  const Label ipv6 = has6 ? a.NewLabel() : drop;

  // A tag would hide the frame's real ethertype from what follows.
  a.Stmt(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT));
  a.JumpIfEqual(0, kNext, drop);
  a.LoadWord(6);
  a.JumpIfEqual(MacHigh(guest.mac), kNext, drop);
  a.LoadHalf(10);
  a.JumpIfEqual(MacLow(guest.mac), kNext, drop);
  a.LoadHalf(kEthType);
  a.JumpIfEqual(ETH_P_IP, ipv4, kNext);
  a.JumpIfEqual(ETH_P_ARP, arp, kNext);
  a.JumpIfEqual(ETH_P_IPV6, ipv6, drop);

  a.Bind(ipv4);
  a.LoadByte(kL3);
  a.Stmt(BPF_ALU | BPF_AND | BPF_K, 0xf0);
  a.JumpIfEqual(0x40, kNext, drop);
  a.LoadHalf(kIp4FragWord);
  a.JumpIfAnySet(0x1fff, src4, kNext);  // later fragments: no UDP header
  a.LoadByte(kIp4Proto);
  a.JumpIfEqual(kUdp, kNext, src4);
  a.Stmt(BPF_LDX | BPF_B | BPF_MSH, kL3);  // X = IPv4 header length, options included
  a.LoadHalfX(kL3 + 2);
  a.JumpIfEqual(kDhcpServerPort, keep_local, kNext);  // DHCP client, possibly from 0.0.0.0
  a.LoadHalfX(kL3);
  a.JumpIfEqual(kDhcpServerPort, drop, kNext);  // a DHCP server in the guest
  a.Bind(src4);
  a.LoadWord(kIp4Src);
  for (dhcp::Ip4 ip : guest.ipv4) a.JumpIfEqual(ip, pass, kNext);
  a.Goto(drop);

  a.Bind(arp);
  a.LoadWord(kL3);  // hardware type 1 (Ethernet), protocol IPv4
  a.JumpIfEqual(0x00010800, kNext, drop);
  a.LoadHalf(kL3 + 4);  // address lengths 6 and 4
  a.JumpIfEqual(0x0604, kNext, drop);
  a.LoadWord(kL3 + 8);  // sender hardware address
  a.JumpIfEqual(MacHigh(guest.mac), kNext, drop);
  a.LoadHalf(kL3 + 12);
  a.JumpIfEqual(MacLow(guest.mac), kNext, drop);
  a.LoadWord(kL3 + 14);  // sender protocol address
  a.JumpIfEqual(0, pass, kNext);
  for (dhcp::Ip4 ip : guest.ipv4) a.JumpIfEqual(ip, pass, kNext);
  a.Goto(drop);

  if (has6) {
    const Label walk = a.NewLabel(), icmp6 = a.NewLabel(), udp6 = a.NewLabel(), na = a.NewLabel();
    a.Bind(ipv6);
    a.LoadByte(kL3);
    a.Stmt(BPF_ALU | BPF_AND | BPF_K, 0xf0);
    a.JumpIfEqual(0x60, kNext, drop);
    JumpIfLinkLocal(a, kIp6Src, false, walk);
    JumpIfAddress(a, kIp6Src, false, Ip6{}, walk);  // :: for duplicate address detection
    for (const Ip6& ip : guest.ipv6) JumpIfAddress(a, kIp6Src, false, ip, walk);
    a.Goto(drop);
    a.Bind(walk);
    WalkIpv6(a, icmp6, udp6, pass, drop);
    a.Bind(icmp6);
    a.LoadByteX(0);
    a.JumpIfEqual(kRouterAdvert, drop, kNext);
    a.JumpIfEqual(kRedirect, drop, kNext);
    a.JumpIfEqual(kNeighborAdvert, na, pass);
    a.Bind(na);  // the target address follows type, code, checksum, flags
    JumpIfLinkLocal(a, 8, true, pass);
    for (const Ip6& ip : guest.ipv6) JumpIfAddress(a, 8, true, ip, pass);
    a.Goto(drop);
    a.Bind(udp6);
    a.LoadHalfX(0);
    a.JumpIfEqual(kDhcp6ServerPort, drop, kNext);  // a DHCPv6 server in the guest
    a.LoadHalfX(2);
    a.JumpIfEqual(kDhcp6ServerPort, keep_local, pass);  // DHCPv6 client: our responder answers
  }

  a.Bind(keep_local);
  a.Return(l2::kKeepLocal);
  a.Bind(pass);
  a.Return(l2::kContinue);
  a.Bind(drop);
  a.Return(l2::kDrop);
  return a.Finish();
}

absl::StatusOr<std::vector<sock_filter>> PodIngressFilter(const GuestAddresses& guest) {
  Assembler a("pod ingress");
  const Label drop = a.NewLabel(), pass = a.NewLabel(), ipv4 = a.NewLabel(), ipv6 = a.NewLabel();
  const Label icmp6 = a.NewLabel(), udp6 = a.NewLabel();

  a.LoadHalf(kEthType);
  a.JumpIfEqual(ETH_P_IP, ipv4, kNext);
  a.JumpIfEqual(ETH_P_IPV6, ipv6, pass);

  a.Bind(ipv4);
  a.LoadByte(kIp4Proto);
  a.JumpIfEqual(kUdp, kNext, pass);
  a.LoadHalf(kIp4FragWord);
  a.JumpIfAnySet(0x1fff, pass, kNext);
  a.Stmt(BPF_LDX | BPF_B | BPF_MSH, kL3);
  a.LoadHalfX(kL3);
  a.JumpIfEqual(kDhcpServerPort, kNext, pass);
  a.LoadHalfX(kL3 + 2);
  a.JumpIfEqual(kDhcpClientPort, drop, pass);  // a DHCP server on the Pod network

  a.Bind(ipv6);
  WalkIpv6(a, icmp6, udp6, pass, drop);
  a.Bind(udp6);
  a.LoadHalfX(0);
  a.JumpIfEqual(kDhcp6ServerPort, kNext, pass);
  a.LoadHalfX(2);
  a.JumpIfEqual(kDhcp6ClientPort, drop, pass);  // a DHCPv6 server on the Pod network
  a.Bind(icmp6);
  a.LoadByteX(0);
  a.JumpIfEqual(kRouterAdvert, kNext, pass);
  if (guest.router6) JumpIfAddress(a, kIp6Src, false, *guest.router6, pass);
  a.Goto(drop);

  a.Bind(pass);
  a.Return(l2::kContinue);
  a.Bind(drop);
  a.Return(l2::kDrop);
  return a.Finish();
}

}  // namespace kvcri::cni
