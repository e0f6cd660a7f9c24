// PodNetwork: one Pod sandbox's attachment to the Pod network, CNI ADD through the guest's DHCP.
#pragma once

// One Pod sandbox's attachment to the Pod network, end to end: CNI ADD in the
// sandbox's netns, then the VM plumbing (tap + tc redirect) and the DHCP
// responder that hands the CNI address to the guest. All or nothing.
//
// Several networks: every interface the CNI result places in the netns
// (a meta-plugin such as Multus returns eth0, net1, ...) becomes a guest NIC,
// in the result's order: interface i gets tap<i>, its own redirects and, when
// it has an IPv4 address, its own DHCP answers. Routes (the default one
// included) are those CNI put on that interface, so only the interface that
// carries the default route hands the guest a router.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cni/cni_runner.h"
#include "cni/dhcp_server.h"
#include "cni/tap.h"

namespace kvcri::cni {

// What the guest's DHCP lease carries besides the address.
struct GuestDhcpInfo {
  std::vector<std::string> dns_servers;
  std::vector<std::string> searches;
  std::string hostname;
};

// Where Attach spent its time: the CNI plugins (external programs, like
// libvirt for the VM) and our own wiring + DHCP set-up.
struct AttachTimings {
  absl::Duration cni_plugins;
  absl::Duration wiring;
};

class PodNetwork {
 public:
  // Borrowed; all must outlive this object.
  PodNetwork(CniRunner* cni, TapWiring* wiring, DhcpService* dhcp) : cni_(cni), wiring_(wiring), dhcp_(dhcp) {}

  // CNI ADD, tap wiring (lo up too), DHCP for `spec.container_id`; the NICs
  // in the result's order. On failure everything done so far is undone
  // (DHCP, taps, CNI DEL) and the error names the step and interface.
  // FailedPrecondition when the primary interface (spec.ifname, else the
  // first) has no IPv4 address; other interfaces may have none (L2 only:
  // wired, no DHCP).
  absl::StatusOr<std::vector<WiredNic>> Attach(const AttachSpec& spec, const GuestDhcpInfo& guest,
                                               AttachTimings* timings = nullptr);

  // After a daemon restart: re-asserts the wiring of `cni_ifnames` (the
  // recorded NICs, in order; idempotent, returns the same NICs) and serves
  // DHCP again. NotFound when the netns is gone.
  absl::StatusOr<std::vector<WiredNic>> Restore(const AttachSpec& spec, const GuestDhcpInfo& guest,
                                                const std::vector<std::string>& cni_ifnames);

  // DHCP off, taps removed (every interface of the cached ADD result, else
  // spec.ifname), CNI DEL (from the cached ADD, so it works after a restart
  // and after the conflist changed). Idempotent; every step is tried and the
  // first error returned.
  absl::Status Detach(const AttachSpec& spec);

 private:
  absl::StatusOr<std::vector<WiredNic>> WireAndServe(const AttachSpec& spec, const GuestDhcpInfo& guest,
                                                     const std::vector<std::string>& cni_ifnames);
  absl::Status DetachInterfaces(const AttachSpec& spec, const std::vector<std::string>& cni_ifnames);

  CniRunner* const cni_;
  TapWiring* const wiring_;
  DhcpService* const dhcp_;
};

}  // namespace kvcri::cni
