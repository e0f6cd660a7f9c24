// Accelerator choice: what the host offers (HostFacts) and which of KVM and TCG VMs use.
#pragma once

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "config/config.h"

namespace kvcri::runtime {

// What the host offers for hardware virtualisation, read from files only so
// tests can point it at a fake tree.
struct HostFacts {
  bool kvm_device_exists = false;
  bool kvm_device_usable = false;  // opens O_RDWR
  std::string kvm_device_error;    // why it does not open, when it does not
  bool kvm_intel_loaded = false;
  bool kvm_amd_loaded = false;
  bool kvm_pvm_loaded = false;
  bool cpu_vmx = false;
  bool cpu_svm = false;
};

// Reads HostFacts below `root`: <root>/dev/kvm, <root>/sys/module/<name>,
// <root>/proc/cpuinfo.
class HostProbe {
 public:
  explicit HostProbe(std::filesystem::path root = "/") : root_(std::move(root)) {}
  HostFacts Probe() const;

 private:
  std::filesystem::path root_;
};

struct AccelChoice {
  config::Accelerator accel;  // kKvm or kTcg, never kAuto
  std::string reason;         // one sentence for logs and the CRI Status
};

// kTcg always works. kKvm needs KVM that runs ordinary guests: /dev/kvm opens
// read-write AND kvm_intel or kvm_amd is loaded. A /dev/kvm from kvm_pvm alone
// (a PVM host nested in a cloud VM) cannot run ordinary guests. kAuto picks KVM
// where it works and TCG otherwise; an explicit kKvm that cannot work is
// FailedPrecondition naming the reason.
absl::StatusOr<AccelChoice> ChooseAccelerator(config::Accelerator requested, const HostFacts& facts);
absl::StatusOr<AccelChoice> ChooseAccelerator(config::Accelerator requested, const HostProbe& probe);

}  // namespace kvcri::runtime
