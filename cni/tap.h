// WireTap/Unwire: a tap next to the Pod's CNI interface, joined to it by tc redirects.
#pragma once

// Wires a Pod network namespace for a VM: a tap device next to the CNI
// interface, joined to it by tc redirects both ways, with the CNI
// interface's IP addresses handed to the guest (removed from the netns).
//
// MAC choice: the guest NIC uses the CNI interface's MAC and eth0 keeps it.
// With the redirects, frames from the guest leave eth0 unchanged and frames
// to that MAC arriving on eth0 are stolen by tc before eth0's own stack sees
// them; eth0 has no IPs left, so it never speaks L3 with that MAC either.
// Changing eth0's MAC would buy nothing and could upset CNI plugins that
// check it on DEL (e.g. bridge's cached result).

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvcri::cni {

struct IpPrefix {
  std::string address;  // "10.1.2.3" or "fd00::3"
  int prefix_len = 0;

  bool ipv6() const { return address.find(':') != std::string::npos; }
  std::string Cidr() const;
  bool operator==(const IpPrefix&) const = default;
};

struct IpRoute {
  std::string dst;      // CIDR; "0.0.0.0/0" / "::/0" for defaults
  std::string gateway;  // empty for on-link routes

  bool operator==(const IpRoute&) const = default;
};

// What the guest must be configured with (via DHCP/cloud-init/domain XML).
struct WiredNic {
  std::string cni_ifname;           // "eth0"
  std::string tap_name;             // "tap0": <target dev=.../> for libvirt
  std::string mac;                  // eth0's MAC, lowercase: the guest NIC's MAC
  int mtu = 0;                      // eth0's MTU, also set on the tap
  std::vector<IpPrefix> addresses;  // global-scope addresses, IPv4 first
  std::string gateway4;             // default-route gateways, may be empty
  std::string gateway6;
  std::vector<IpRoute> routes;  // non-connected routes via eth0, incl. defaults
  std::string gateway6_mac;     // gateway6's MAC, learnt by NDP at wiring; empty when unknown

  bool operator==(const WiredNic&) const = default;
};

// Enters `netns` and wires it (see top of file). Creates `tap_name`
// (persistent, root-owned, IFF_VNET_HDR, single queue), MTU = eth0's, up;
// ingress redirects eth0 -> tap and tap -> eth0, each behind a guard from
// l2_filter.h (the guest sends only as itself, DHCPv4 from the guest stays
// local for DhcpServer, no rogue RA or DHCP server reaches the guest); then
// removes eth0's addresses and disables IPv6 on both (no DAD/RS/MLD from the
// netns itself). eth0 stays up. InvalidArgument when the NIC's MAC or
// addresses cannot be put in a guard. An interface with no global address
// (a pure L2 network: the guest brings its own addresses, or gets them from
// that network's DHCP) is joined by plain redirects, with no guard.
//
// Idempotent: the addresses and routes are also recorded in the tap's
// IFLA_IFALIAS before eth0 is flushed, so a second call (say, after a daemon
// restart) re-asserts the plumbing and returns the same WiredNic. Callers may
// still persist the result; the alias is a fallback that dies with the netns.
// NotFound when the netns or `cni_ifname` does not exist; FailedPrecondition
// when the netns is wired but the record is missing (it did not fit).
absl::StatusOr<WiredNic> WireTap(const std::filesystem::path& netns, std::string_view cni_ifname = "eth0",
                                 std::string_view tap_name = "tap0");

// Removes the tap and eth0's ingress qdisc and gives eth0 back the Pod's
// addresses (from the tap's wiring record), so that CNI DEL's plugins find
// what they set up for them (bridge's ipMasq rules). OK when they, or the
// netns itself, are already gone.
absl::Status Unwire(const std::filesystem::path& netns, std::string_view cni_ifname = "eth0",
                    std::string_view tap_name = "tap0");

// The tap of the guest's `index`-th NIC: "tap0", "tap1", ...
std::string TapNameFor(size_t index);

// The seam sandbox/ and cri/ depend on (fakes in test/fakes/). One call per
// guest NIC: the CNI interface `cni_ifname` gets the tap `tap_name`.
class TapWiring {
 public:
  virtual ~TapWiring() = default;
  virtual absl::StatusOr<WiredNic> Wire(const std::filesystem::path& netns, std::string_view cni_ifname,
                                        std::string_view tap_name) = 0;
  virtual absl::Status Unwire(const std::filesystem::path& netns, std::string_view cni_ifname,
                              std::string_view tap_name) = 0;
};

// WireTap/Unwire through netlink.
class NetlinkTapWiring final : public TapWiring {
 public:
  // Also brings `lo` up in the netns, as containerd does for containers.
  absl::StatusOr<WiredNic> Wire(const std::filesystem::path& netns, std::string_view cni_ifname,
                                std::string_view tap_name) override;
  absl::Status Unwire(const std::filesystem::path& netns, std::string_view cni_ifname,
                      std::string_view tap_name) override {
    return cni::Unwire(netns, cni_ifname, tap_name);
  }
};

// The IFLA_IFALIAS record (exposed for tests). Encode fails with
// ResourceExhausted past the kernel's 255-byte limit.
absl::StatusOr<std::string> EncodeWiringAlias(const WiredNic& nic);
// Fills nic->addresses/gateways/routes; InvalidArgument if not ours.
absl::Status DecodeWiringAlias(std::string_view alias, WiredNic* nic);

}  // namespace kvcri::cni
