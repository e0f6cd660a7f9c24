#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "config/config.h"

namespace kvcri::cri {

// What the services need from the modules, owned by the daemon (shim/) and
// handed in by reference so tests can pass fakes.
struct RuntimeDeps {
  const config::Config* config = nullptr;
  // Accelerator chosen at start-up: "kvm"/"tcg" and why; empty name when none is usable.
  std::string accelerator;
  std::string accelerator_reason;
  // OK when the hypervisor connection is usable.
  std::function<absl::Status()> hypervisor_ready;
};

}  // namespace kvcri::cri
