// tc redirects joining two interfaces of one network namespace in both directions.
#pragma once

// tc plumbing that joins two interfaces of one network namespace: every frame
// received on one is sent out of the other, via an ingress qdisc and a u32
// filter with a mirred egress-redirect action (the kernel here has neither
// matchall nor gact, so u32 "match all" it is). Before the redirect, an
// optional guard: a classic BPF program in a cls_bpf filter (direct-action:
// its return value is the verdict, see l2_filter.h). Runs in the caller's
// netns.

#include <linux/filter.h>

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "cni/netlink.h"

namespace kvcri::cni {

struct RedirectOptions {
  // Runs first on every frame received on `from` (tc filter prio 1, cls_bpf
  // direct-action): TC_ACT_SHOT drops it, TC_ACT_OK keeps it out of the
  // redirect (it goes to `from`'s own stack; packet sockets saw it already),
  // TC_ACT_UNSPEC lets the redirect have it. Empty: no guard.
  std::vector<sock_filter> guard;
};

// Replaces any ingress qdisc on `from` with one that runs `options.guard`,
// then redirects the frames it let through to the egress of `to`. Errors
// name the operation and both interfaces.
absl::Status RedirectIngress(nl_sock* sock, const nl::LinkAttrs& from, const nl::LinkAttrs& to,
                             RedirectOptions options = {});

// Deletes the ingress qdisc (and so its filters) of `ifname`. OK when the
// interface or the qdisc does not exist.
absl::Status RemoveIngress(nl_sock* sock, std::string_view ifname);

}  // namespace kvcri::cni
