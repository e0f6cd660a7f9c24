// PodNetwork: one Pod sandbox's attachment to the Pod network, CNI ADD through the guest's DHCP.
#pragma once

// One Pod sandbox's attachment to the Pod network, end to end: CNI ADD in the
// sandbox's netns, then the VM plumbing (tap + tc redirect) and the DHCP
// responder that hands the CNI address to the guest. All or nothing.

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

  // CNI ADD, tap wiring (lo up too), DHCP for `spec.container_id`. On failure
  // everything done so far is undone (DHCP, tap, CNI DEL) and the error names
  // the step. FailedPrecondition when CNI gave no IPv4 address.
  absl::StatusOr<WiredNic> Attach(const AttachSpec& spec, const GuestDhcpInfo& guest,
                                  AttachTimings* timings = nullptr);

  // After a daemon restart: re-asserts the wiring (idempotent, returns the
  // same NIC) and serves DHCP again. NotFound when the netns is gone.
  absl::StatusOr<WiredNic> Restore(const AttachSpec& spec, const GuestDhcpInfo& guest);

  // DHCP off, tap removed, CNI DEL (from the cached ADD, so it works after a
  // restart and after the conflist changed). Idempotent; every step is tried
  // and the first error returned.
  absl::Status Detach(const AttachSpec& spec);

 private:
  absl::StatusOr<WiredNic> WireAndServe(const AttachSpec& spec, const GuestDhcpInfo& guest);

  CniRunner* const cni_;
  TapWiring* const wiring_;
  DhcpService* const dhcp_;
};

}  // namespace kvcri::cni
