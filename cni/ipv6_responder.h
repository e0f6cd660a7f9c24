// Ipv6Responder: what one Pod's guest NIC is told over IPv6: router advertisements, the router's NDP answers, DHCPv6.
#pragma once

// The guest owns the Pod's IPv6 address, but nothing on the Pod network
// tells it: the bridge CNI plugin's gateway sends no router advertisements
// and there is no DHCPv6 server. This responder, fed the frames the guest
// sends into its tap (DhcpServer's socket), makes up for both:
//   - Router advertisements (RFC 4861): M and O set (addresses and options
//     by DHCPv6), the CNI prefix on-link but not for SLAAC (A=0: the guest
//     may only send from its Pod address, l2_filter.h), MTU, RDNSS (RFC 8106)
//     for IPv6 DNS servers. When the CNI result has an IPv6 gateway whose MAC
//     was learnt at wiring, the RA names a router: source fe80::EUI-64 of that
//     MAC, with the MAC itself as source link-layer address, so the guest's
//     packets for the default route go straight to the real gateway through
//     the tc redirect. Answered to a router solicitation, and sent unsolicited
//     when serving starts and every kPeriodicRaInterval.
//   - Neighbour advertisements for that router address, since the real
//     gateway may not own it.
//   - DHCPv6 (RFC 8415) for the one address: SOLICIT (with Rapid Commit when
//     asked), REQUEST, RENEW, REBIND, CONFIRM, RELEASE, DECLINE,
//     INFORMATION-REQUEST; DNS servers (23) and search list (24).
// No sockets and no clocks: DhcpServer owns both.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cni/dhcp_packet.h"
#include "cni/ipv6_packet.h"

namespace kvcri::cni {

// What the guest NIC is told over IPv6. Textual, as the wired NIC holds it.
struct Lease6 {
  std::string mac;                    // the guest NIC's MAC: only it is answered
  std::string ip;                     // "fd00:10::5"
  int prefix_len = 0;                 // 1..128; below 128 the prefix is announced on-link
  std::string router_mac;             // the IPv6 gateway's MAC; empty: the RA names no router
  std::vector<std::string> dns;       // IPv6 servers; IPv4 entries are skipped
  std::vector<std::string> searches;  // DHCPv6 option 24
  int mtu = 0;                        // RA MTU option when > 0
  uint32_t lease_seconds = 86400;
};

constexpr absl::Duration kPeriodicRaInterval = absl::Minutes(10);
constexpr uint16_t kRouterLifetimeSeconds = 1800;  // three periods: two RAs may be lost

class Ipv6Responder {
 public:
  // InvalidArgument naming the field when the lease does not parse. `tap_mac`
  // is the Ethernet source when no router is known.
  static absl::StatusOr<Ipv6Responder> Create(const Lease6& lease, const dhcp::Mac& tap_mac);

  struct FrameReply {
    std::string frame;
    std::string_view kind;  // "ra", "na", "advertise", "reply"
  };
  // The answer to one frame the guest sent, or nullopt when it is not ours
  // to answer (another MAC, another target, malformed, not a request).
  std::optional<FrameReply> HandleFrame(std::span<const uint8_t> frame) const;
  // An unsolicited router advertisement to all nodes.
  std::string RouterAdvertisement() const;

  const ip6::Addr& ip() const { return ip_; }
  // The RA's source: the router's link-local address, or the tap's.
  const ip6::Addr& self_address() const { return self_ll_; }
  bool names_router() const { return router_.has_value(); }

 private:
  Ipv6Responder() = default;
  std::string RaFrame(const dhcp::Mac& dst_mac, const ip6::Addr& dst) const;
  std::optional<FrameReply> Dhcp(const ip6::Frame& f, std::string_view data) const;
  void AddConfig(dhcp6::Message* m) const;
  std::string Ia(uint32_t iaid) const;

  dhcp::Mac mac_{};
  ip6::Addr ip_{};
  int prefix_len_ = 0;
  std::optional<dhcp::Mac> router_;
  dhcp::Mac self_mac_{};  // Ethernet source of everything we send
  ip6::Addr self_ll_{};
  std::vector<ip6::Addr> dns_;
  std::string search_list_;  // option 24's value, uncompressed names
  int mtu_ = 0;
  uint32_t lease_seconds_ = 0;
  std::string server_duid_;
};

}  // namespace kvcri::cni
