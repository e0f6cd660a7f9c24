// libvirt's last error as absl::Status, with the operation and the libvirt error code.
#include "runtime/libvirt_handles.h"

#include <atomic>
#include <string>

#include "config/base/metrics.h"
#include "config/base/str.h"

namespace kvcri::runtime {

int LastLibvirtErrorCode() {
  virErrorPtr err = virGetLastError();
  return err == nullptr ? VIR_ERR_OK : err->code;
}

namespace {

std::atomic<base::MetricFamily*> error_counter{nullptr};

void CountError(std::string_view op, int code) {
  base::MetricFamily* counter = error_counter.load(std::memory_order_relaxed);
  if (counter == nullptr || code == VIR_ERR_NO_DOMAIN || code == VIR_ERR_NO_DOMAIN_METADATA ||
      code == VIR_ERR_AGENT_UNRESPONSIVE) {
    return;
  }
  // Our call sites name the function first ("virDomainResume \"kvcri-…\""),
  // so the label takes one of a fixed set of values.
  counter->Add({std::string(op.substr(0, op.find(' ')))});
}

}  // namespace

void SetLibvirtErrorCounter(base::MetricFamily* counter) { error_counter.store(counter, std::memory_order_relaxed); }

absl::Status LibvirtError(std::string_view op) {
  virErrorPtr err = virGetLastError();
  CountError(op, err == nullptr ? VIR_ERR_INTERNAL_ERROR : err->code);
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
