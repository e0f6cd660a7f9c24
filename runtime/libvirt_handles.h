// Owning wrappers for libvirt handles, and libvirt errors as absl::Status.
#pragma once

// Owning wrappers for libvirt handles. Every virXxxPtr we receive is ours to
// free; wrapping it at the call site that receives it keeps one owner per
// handle and no early return can leak it. Only runtime/*.cc include this.

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <memory>
#include <string_view>

#include "absl/status/status.h"

namespace kvcri::base {
class MetricFamily;
}  // namespace kvcri::base

namespace kvcri::runtime {

struct ConnectClose {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
struct DomainFree {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
struct StreamFree {
  void operator()(virStreamPtr s) const { virStreamFree(s); }
};

using ConnectPtr = std::unique_ptr<virConnect, ConnectClose>;
using DomainPtr = std::unique_ptr<virDomain, DomainFree>;
using StreamPtr = std::unique_ptr<virStream, StreamFree>;

// Frees a malloc'd string libvirt returned (XML, metadata, hostnames).
struct LibvirtStringFree {
  void operator()(char* s) const { free(s); }
};
using LibvirtString = std::unique_ptr<char, LibvirtStringFree>;

// The calling thread's last libvirt error as a Status for `op` (e.g.
// "virDomainCreateWithFlags \"kvcri-abc\""). Codes: no domain → NotFound,
// invalid arguments/XML → InvalidArgument, operation not valid in the
// current state → FailedPrecondition, connection/RPC problems → Unavailable,
// unsupported → Unimplemented, everything else → Internal.
absl::Status LibvirtError(std::string_view op);

// Where LibvirtError counts failed libvirt calls:
// kvcri_libvirt_errors_total{operation} with the libvirt function's name
// (the first word of `op`). Answers that are not failures are left out:
// "no such domain" and "no metadata" (lookups that find nothing), and an
// absent or silent guest agent (a guest's business, not libvirt's). Null
// (the default) counts nothing. Process-wide, like libvirt's own error
// state; LibvirtHypervisor::Open sets it from its options.
void SetLibvirtErrorCounter(base::MetricFamily* counter);

// The code of the calling thread's last libvirt error (VIR_ERR_OK if none).
int LastLibvirtErrorCode();

}  // namespace kvcri::runtime
