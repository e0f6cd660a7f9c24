// VmExit: how a VM container task or an exec in it ended, as containerd's task API reports it.
#pragma once

#include <cstdint>

#include "absl/time/time.h"

namespace kvcri::shim::containerd {

struct VmExit {
  uint32_t status = 0;
  absl::Time at;
};

}  // namespace kvcri::shim::containerd
