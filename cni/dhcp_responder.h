// DhcpResponder: what one Pod's guest is answered over DHCPv4 (no sockets).
#pragma once

// The DHCPv4 decisions for one guest: which requests get an OFFER, ACK or
// NAK and what the reply carries. No sockets; DhcpServer feeds it frames.

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cni/dhcp_packet.h"
#include "cni/ipv6_responder.h"
#include "cni/tap.h"

namespace kvcri::cni {

// What one Pod's guest NIC is told. Textual, as CNI and the CRI hand it over.
// The IPv4 fields are empty on an IPv6-only NIC; `v6` is set when the NIC
// has an IPv6 address (cni/ipv6_responder.h).
struct Lease {
  std::string mac;                    // the guest NIC's MAC (eth0's); only it is answered
  std::string ip;                     // "10.1.2.3"; empty: no DHCPv4
  int prefix_len = 0;                 // 1..32
  std::string gateway;                // router (option 3) and server identifier; may be empty
  std::vector<IpRoute> routes;        // IPv4 ones beyond the default become option 121
  std::vector<std::string> dns;       // IPv4 servers; IPv6 entries are skipped
  std::vector<std::string> searches;  // option 119 (and the first as option 15)
  std::string hostname;               // option 12, the Pod name
  int mtu = 0;                        // option 26 when > 0
  uint32_t lease_seconds = 86400;
  std::optional<Lease6> v6;
};

// A wired NIC as a Lease: its first IPv4 address and IPv4 routes, its first
// IPv6 address with the IPv6 gateway's MAC. FailedPrecondition when the NIC
// has no address at all.
absl::StatusOr<Lease> LeaseFromWiredNic(const WiredNic& nic, const std::vector<std::string>& dns,
                                        const std::vector<std::string>& searches, std::string_view hostname);

class DhcpResponder {
 public:
  // InvalidArgument naming the field when the lease does not parse.
  static absl::StatusOr<DhcpResponder> Create(const Lease& lease);

  // The reply to a request, or nullopt when the request is not for us (other
  // MAC, other server chosen, RELEASE, DECLINE, malformed).
  std::optional<dhcp::Message> Handle(const dhcp::Message& request) const;

  // Handle() on a whole Ethernet frame; the reply frame comes addressed per
  // RFC 2131 4.1 (broadcast when asked or for NAK, else unicast to the MAC)
  // from `server_mac` and the server identifier.
  struct FrameReply {
    std::string frame;
    dhcp::MessageType type;
  };
  std::optional<FrameReply> HandleFrame(std::span<const uint8_t> frame, const dhcp::Mac& server_mac) const;

  dhcp::Ip4 server_id() const { return server_id_; }
  dhcp::Ip4 ip() const { return ip_; }
  const dhcp::Mac& mac() const { return mac_; }

 private:
  DhcpResponder() = default;
  dhcp::Message Reply(const dhcp::Message& req, dhcp::MessageType type) const;

  dhcp::Mac mac_{};
  dhcp::Ip4 ip_ = 0;
  dhcp::Ip4 server_id_ = 0;
  // Options every OFFER/ACK carries (not type, server id, lease times).
  std::map<uint8_t, std::string> options_;
  uint32_t lease_seconds_ = 0;
};

}  // namespace kvcri::cni
