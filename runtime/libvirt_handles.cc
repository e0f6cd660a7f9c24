// libvirt's last error as absl::Status, with the operation and the libvirt error code.
#include "runtime/libvirt_handles.h"

#include "config/base/str.h"

namespace kvcri::runtime {

int LastLibvirtErrorCode() {
  virErrorPtr err = virGetLastError();
  return err == nullptr ? VIR_ERR_OK : err->code;
}

absl::Status LibvirtError(std::string_view op) {
  virErrorPtr err = virGetLastError();
  if (err == nullptr) return absl::InternalError(base::StrCat(op, ": libvirt failed without an error message"));
  std::string msg = base::StrCat(op, ": ", err->message != nullptr ? err->message : "unknown libvirt error");
  switch (err->code) {
    case VIR_ERR_NO_DOMAIN:
    case VIR_ERR_NO_DOMAIN_METADATA:
      return absl::NotFoundError(msg);
    case VIR_ERR_INVALID_ARG:
    case VIR_ERR_XML_ERROR:
    case VIR_ERR_XML_DETAIL:
      return absl::InvalidArgumentError(msg);
    case VIR_ERR_OPERATION_INVALID:
    case VIR_ERR_OPERATION_DENIED:
      return absl::FailedPreconditionError(msg);
    case VIR_ERR_OPERATION_TIMEOUT:
      return absl::DeadlineExceededError(msg);
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_RPC:
    case VIR_ERR_AGENT_UNRESPONSIVE:
      return absl::UnavailableError(msg);
    case VIR_ERR_NO_SUPPORT:
    case VIR_ERR_OPERATION_UNSUPPORTED:
    case VIR_ERR_ARGUMENT_UNSUPPORTED:
      return absl::UnimplementedError(msg);
    case VIR_ERR_DOM_EXIST:
      return absl::AlreadyExistsError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace kvcri::runtime
