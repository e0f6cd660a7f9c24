// PodNetwork: CNI ADD, tap wiring and DHCP for a Pod, rolled back on failure; Restore and Detach.
#include "cni/pod_network.h"

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

absl::StatusOr<WiredNic> PodNetwork::WireAndServe(const AttachSpec& spec, const GuestDhcpInfo& guest) {
  absl::StatusOr<WiredNic> nic = wiring_->Wire(spec.netns);
  if (!nic.ok()) return Annotate(nic.status(), "wiring the VM tap device");
  absl::StatusOr<Lease> lease = LeaseFromWiredNic(*nic, guest.dns_servers, guest.searches, guest.hostname);
  if (!lease.ok()) return Annotate(lease.status(), "guest address hand-off");
  RETURN_IF_ERROR(Annotate(dhcp_->Add(spec.container_id, spec.netns, *lease, nic->tap_name), "DHCP responder"));
  return nic;
}

absl::StatusOr<WiredNic> PodNetwork::Attach(const AttachSpec& spec, const GuestDhcpInfo& guest,
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
  undo.Add("detach pod network", [&] { return Detach(spec); });
  ASSIGN_OR_RETURN(WiredNic nic, WireAndServe(spec, guest));
  undo.Dismiss();
  if (timings != nullptr) *timings = {t1 - t0, absl::Now() - t1};
  return nic;
}

absl::StatusOr<WiredNic> PodNetwork::Restore(const AttachSpec& spec, const GuestDhcpInfo& guest) {
  return WireAndServe(spec, guest);
}

absl::Status PodNetwork::Detach(const AttachSpec& spec) {
  absl::Status first;
  base::KeepFirstError(&first, Annotate(dhcp_->Remove(spec.container_id), "DHCP responder"));
  if (!spec.netns.empty()) base::KeepFirstError(&first, Annotate(wiring_->Unwire(spec.netns), "unwiring the VM tap"));
  base::KeepFirstError(&first, cni_->Del(spec));
  return first;
}

}  // namespace kvcri::cni
