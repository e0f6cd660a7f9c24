// L2 filters on the tap/eth0 pair: the guest sends only as itself, and no rogue RA or DHCP server reaches it.
#pragma once

// Two classic BPF programs that tc runs (cls_bpf, direct-action) before the
// mirred redirects of tc_redirect.h; this kernel has neither flower nor gact,
// but cls_bpf runs classic BPF and direct-action lets it drop. Verdicts:
// kDrop (TC_ACT_SHOT), kKeepLocal (TC_ACT_OK: the frame goes to the netns's
// own address-less stack, where it dies; packet sockets saw it already) and
// kContinue (TC_ACT_UNSPEC: on to the redirect). A load past the end of a
// short frame ends the program with 0 = kKeepLocal, so a frame the program
// cannot read is never forwarded. The policy (docs/networking.md):
//
// Guest egress (tap ingress, frames the guest sends):
//   - source MAC must be the guest's; VLAN-tagged frames and ethertypes other
//     than IPv4, ARP and (IPv6 Pods only) IPv6 are dropped;
//   - IPv4 UDP to port 67 (DHCP client, any source, any header length, first
//     fragment) stays local for our responder;
//   - IPv4 source must be a Pod IPv4 address; UDP from port 67 (a DHCP server
//     reply) is dropped;
//   - ARP: Ethernet/IPv4 only, sender MAC the guest's, sender IP a Pod IPv4
//     address or 0.0.0.0 (RFC 5227 probes);
//   - IPv6: source a Pod IPv6 address, link-local (fe80::/10) or :: (DAD);
//     router advertisements and redirects dropped, neighbour advertisements
//     only for a Pod IPv6 or link-local target, UDP from port 547 (DHCPv6
//     server) dropped, UDP to port 547 (DHCPv6 client) stays local for our
//     responder.
// Pod network ingress (eth0 ingress, frames to the guest):
//   - IPv4 UDP from port 67 to port 68 (a DHCP server reply) is dropped: only
//     our responder on the tap answers the guest;
//   - IPv6 UDP from port 547 to port 546 (a DHCPv6 server reply) is dropped;
//   - router advertisements are dropped, except on an IPv6 Pod whose CNI
//     gateway is a link-local address: RAs from that address pass.
// IPv6 extension headers (hop-by-hop, routing, destination options,
// fragment) are followed up to 4 deep; deeper chains are dropped, non-first
// fragments (no upper-layer header to judge) pass.

#include <linux/filter.h>

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "cni/dhcp_packet.h"
#include "cni/tap.h"

namespace kvcri::cni {

using Ip6 = std::array<uint8_t, 16>;

// What a guest may send as, and who may advertise routes to it.
struct GuestAddresses {
  dhcp::Mac mac{};
  std::vector<dhcp::Ip4> ipv4;
  std::vector<Ip6> ipv6;       // global addresses
  std::optional<Ip6> router6;  // link-local gateway whose RAs pass
  bool operator==(const GuestAddresses&) const = default;
};

// From the wired NIC: its MAC, addresses and, when it has an IPv6 address and
// its IPv6 gateway is link-local, that gateway. InvalidArgument naming the
// value that does not parse, or for more than kMaxAddresses per family.
absl::StatusOr<GuestAddresses> GuestAddressesFromNic(const WiredNic& nic);
constexpr size_t kMaxAddresses = 16;

namespace l2 {
constexpr uint32_t kKeepLocal = 0;          // TC_ACT_OK
constexpr uint32_t kDrop = 2;               // TC_ACT_SHOT
constexpr uint32_t kContinue = 0xffffffff;  // TC_ACT_UNSPEC (-1)
}  // namespace l2

// For tc ingress on the tap (see top of file). Internal only on a builder bug.
absl::StatusOr<std::vector<sock_filter>> GuestEgressFilter(const GuestAddresses& guest);
// For tc ingress on the CNI interface.
absl::StatusOr<std::vector<sock_filter>> PodIngressFilter(const GuestAddresses& guest);

}  // namespace kvcri::cni
