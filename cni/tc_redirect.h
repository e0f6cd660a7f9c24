// tc redirects joining two interfaces of one network namespace in both directions.
#pragma once

// tc plumbing that joins two interfaces of one network namespace: every frame
// received on one is sent out of the other, via an ingress qdisc and a u32
// filter with a mirred egress-redirect action (the kernel here has neither
// matchall nor gact, so u32 "match all" it is). Runs in the caller's netns.

#include <string_view>

#include "absl/status/status.h"
#include "cni/netlink.h"

namespace kvcri::cni {

struct RedirectOptions {
  // Keeps DHCPv4 client frames (IPv4, UDP to port 67) received on `from` out
  // of the redirect, so a guest's DISCOVER reaches our responder on the tap
  // (packet sockets see frames before tc) and never the Pod network.
  bool keep_dhcp_local = false;
};

// Replaces any ingress qdisc on `from` with one that redirects all frames to
// the egress of `to`. Errors name the operation and both interfaces.
absl::Status RedirectIngress(nl_sock* sock, const nl::LinkAttrs& from, const nl::LinkAttrs& to,
                             RedirectOptions options = {});

// Deletes the ingress qdisc (and so its filters) of `ifname`. OK when the
// interface or the qdisc does not exist.
absl::Status RemoveIngress(nl_sock* sock, std::string_view ifname);

}  // namespace kvcri::cni
