// ResolveRouterMac: the MAC of the Pod network's IPv6 gateway, asked by one neighbour solicitation on eth0.
#pragma once

// The guest's router advertisements name the real IPv6 gateway
// (cni/ipv6_responder.h), so wiring learns its MAC while eth0 still holds
// the Pod address: a neighbour solicitation from that address, sent and
// answered through a packet socket on eth0. Packet sockets see a frame
// before tc's ingress redirect does, so this works before and after the
// redirect is installed, and it does not depend on the netns kernel having
// finished duplicate address detection.

#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cni/dhcp_packet.h"
#include "cni/ipv6_packet.h"

namespace kvcri::cni {

// Runs in the calling thread's netns. Up to ten solicitations within
// `timeout`; a ready gateway answers the first within a millisecond, but
// one whose address is still in duplicate address detection (the bridge
// the CNI plugin has just created for the node's first Pod: a random delay
// of up to 1 s, then 1 s of probing) answers only after that, and 2 s were
// seen to fall short. DeadlineExceeded when no advertisement for `gateway`
// came.
absl::StatusOr<dhcp::Mac> ResolveRouterMac(std::string_view ifname, const dhcp::Mac& own_mac,
                                           const ip6::Addr& own_address, const ip6::Addr& gateway,
                                           absl::Duration timeout = absl::Seconds(5));

}  // namespace kvcri::cni
