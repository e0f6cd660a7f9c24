// PodNetwork: CNI ADD, tap wiring and DHCP for a Pod, rolled back on failure; Restore and Detach.
#include "cni/pod_network.h"

#include <algorithm>

#include "absl/time/clock.h"

#include "cni/dhcp_responder.h"
#include "config/base/log.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::cni {

using base::StrCat;

namespace {

absl::Status Annotate(const absl::Status& s, std::string_view step) {
  if (s.ok()) return s;
  return absl::Status(s.code(), StrCat(step, ": ", s.message()));
}

}  // namespace

absl::StatusOr<std::vector<WiredNic>> PodNetwork::WireAndServe(const AttachSpec& spec, const GuestDhcpInfo& guest,
                                                               const std::vector<std::string>& cni_ifnames) {
  // The Pod's own interface holds the Pod IPs (the guest learns IPv4 by
  // DHCPv4, IPv6 by RA + DHCPv6); it must have one. The others may be L2 only.
  size_t primary = 0;
  for (size_t i = 0; i < cni_ifnames.size(); ++i) {
    if (cni_ifnames[i] == spec.ifname) primary = i;
  }
  std::vector<WiredNic> nics;
  for (size_t i = 0; i < cni_ifnames.size(); ++i) {
    const std::string& ifname = cni_ifnames[i];
    const std::string tap = TapNameFor(i);
    absl::StatusOr<WiredNic> nic = wiring_->Wire(spec.netns, ifname, tap);
    if (!nic.ok()) return Annotate(nic.status(), StrCat("wiring the VM tap device for \"", ifname, "\""));
    if (!nic->addresses.empty() || i == primary) {
      absl::StatusOr<Lease> lease = LeaseFromWiredNic(*nic, guest.dns_servers, guest.searches, guest.hostname);
      if (!lease.ok()) return Annotate(lease.status(), "guest address hand-off");
      RETURN_IF_ERROR(Annotate(dhcp_->Add(spec.container_id, spec.netns, *lease, nic->tap_name),
                               StrCat("DHCP responder for \"", ifname, "\"")));
    }
    nics.push_back(*std::move(nic));
  }
  return nics;
}

absl::StatusOr<std::vector<WiredNic>> PodNetwork::Attach(const AttachSpec& spec, const GuestDhcpInfo& guest,
                                                         AttachTimings* timings) {
  base::Rollback undo;
  absl::Time t0 = absl::Now();
  absl::StatusOr<CniResult> result = cni_->Add(spec);  // rolls itself back on failure
  absl::Time t1 = absl::Now();
  if (!result.ok()) {
    // The request is fine; the node's network (config, plugins) is not.
    absl::StatusCode code = result.status().code();
    if (code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kNotFound) {
      code = absl::StatusCode::kFailedPrecondition;
    }
    return absl::Status(code, StrCat("pod network (CNI ADD): ", result.status().message()));
  }
  const std::vector<std::string> ifnames = SandboxInterfaces(*result, spec.netns, spec.ifname);
  undo.Add("detach pod network", [this, &spec, ifnames] { return DetachInterfaces(spec, ifnames); });
  ASSIGN_OR_RETURN(std::vector<WiredNic> nics, WireAndServe(spec, guest, ifnames));
  undo.Dismiss();
  if (timings != nullptr) *timings = {t1 - t0, absl::Now() - t1};
  return nics;
}

absl::StatusOr<std::vector<WiredNic>> PodNetwork::Restore(const AttachSpec& spec, const GuestDhcpInfo& guest,
                                                          const std::vector<std::string>& cni_ifnames) {
  if (cni_ifnames.empty()) return WireAndServe(spec, guest, {spec.ifname});
  return WireAndServe(spec, guest, cni_ifnames);
}

absl::Status PodNetwork::Detach(const AttachSpec& spec) {
  // The cached ADD result names the interfaces, also after a restart or a
  // crash before the record had them.
  std::vector<std::string> ifnames = {spec.ifname};
  if (absl::StatusOr<CniResult> cached = cni_->GetCachedResult(spec.container_id, spec.ifname); cached.ok()) {
    ifnames = SandboxInterfaces(*cached, spec.netns, spec.ifname);
  }
  return DetachInterfaces(spec, ifnames);
}

absl::Status PodNetwork::DetachInterfaces(const AttachSpec& spec, const std::vector<std::string>& cni_ifnames) {
  absl::Status first;
  base::KeepFirstError(&first, Annotate(dhcp_->Remove(spec.container_id), "DHCP responder"));
  if (!spec.netns.empty()) {
    for (size_t i = 0; i < cni_ifnames.size(); ++i) {
      base::KeepFirstError(&first, Annotate(wiring_->Unwire(spec.netns, cni_ifnames[i], TapNameFor(i)),
                                            StrCat("unwiring the VM tap of \"", cni_ifnames[i], "\"")));
    }
  }
  base::KeepFirstError(&first, cni_->Del(spec));
  return first;
}

}  // namespace kvcri::cni
