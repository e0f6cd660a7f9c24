// Interface counters of a Pod's network namespace (rx/tx bytes, packets, errors, drops), read from /proc.
#pragma once

// The Pod's traffic crosses the CNI interface (eth0) in the Pod netns: the
// guest's tap is redirected to it by tc, so its counters are the Pod's, as
// kubelet expects them from containerd. /sys/class/net shows the namespace
// sysfs was mounted in, not the reader's, so the counters come from
// /proc/thread-self/net/dev read by a thread inside the namespace.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvcri::cni {

struct InterfaceCounters {
  std::string name;
  uint64_t rx_bytes = 0;
  uint64_t rx_packets = 0;
  uint64_t rx_errors = 0;
  uint64_t rx_dropped = 0;
  uint64_t tx_bytes = 0;
  uint64_t tx_packets = 0;
  uint64_t tx_errors = 0;
  uint64_t tx_dropped = 0;

  bool operator==(const InterfaceCounters&) const = default;
};

// At most this many interfaces are parsed; a longer file is an error.
inline constexpr size_t kMaxInterfaces = 1024;

// The text of /proc/net/dev: two header lines, then "name: 16 numbers".
// InvalidArgument for a line that does not have that shape.
absl::StatusOr<std::vector<InterfaceCounters>> ParseProcNetDev(std::string_view text);

// Reads the counters of every interface in a network namespace.
class NetdevReader {
 public:
  virtual ~NetdevReader() = default;
  // Every interface of the namespace pinned at `netns`, in the kernel's order.
  virtual absl::StatusOr<std::vector<InterfaceCounters>> Read(const std::filesystem::path& netns) = 0;
};

// The real one: a short-lived thread joins the namespace (base::RunInNetns)
// and reads /proc/thread-self/net/dev, bounded to 256 KiB. Needs
// CAP_SYS_ADMIN.
class ProcNetdevReader final : public NetdevReader {
 public:
  absl::StatusOr<std::vector<InterfaceCounters>> Read(const std::filesystem::path& netns) override;
};

}  // namespace kvcri::cni
