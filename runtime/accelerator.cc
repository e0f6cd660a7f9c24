// Host probing for KVM (device, modules, CPU flags) and the auto/kvm/tcg choice.
#include "runtime/accelerator.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime {

using base::StrCat;

namespace {

bool HasCpuFlag(const std::string& flags_line, std::string_view flag) {
  std::istringstream words(flags_line);
  std::string w;
  while (words >> w) {
    if (w == flag) return true;
  }
  return false;
}

// Why KVM cannot run ordinary guests here; empty when it can.
std::string KvmUnusableReason(const HostFacts& f) {
  if (!f.kvm_device_exists) return "/dev/kvm does not exist";
  if (!f.kvm_device_usable) return StrCat("/dev/kvm does not open read-write: ", f.kvm_device_error);
  if (f.kvm_intel_loaded || f.kvm_amd_loaded) return "";
  if (f.kvm_pvm_loaded) {
    return "/dev/kvm is provided by kvm_pvm (no kvm_intel or kvm_amd loaded); PVM cannot run ordinary guests";
  }
  if (!f.cpu_vmx && !f.cpu_svm) return "no kvm_intel or kvm_amd module is loaded and the CPU has no vmx or svm flag";
  return StrCat("no kvm_intel or kvm_amd module is loaded (the CPU has ", f.cpu_vmx ? "vmx" : "svm", ")");
}

}  // namespace

HostFacts HostProbe::Probe() const {
  HostFacts f;
  std::filesystem::path kvm = root_ / "dev/kvm";
  std::error_code ec;
  f.kvm_device_exists = std::filesystem::exists(kvm, ec);
  if (f.kvm_device_exists) {
    base::UniqueFd fd(::open(kvm.c_str(), O_RDWR | O_CLOEXEC));
    f.kvm_device_usable = fd.valid();
    if (!fd.valid()) f.kvm_device_error = std::strerror(errno);
  }
  f.kvm_intel_loaded = std::filesystem::exists(root_ / "sys/module/kvm_intel", ec);
  f.kvm_amd_loaded = std::filesystem::exists(root_ / "sys/module/kvm_amd", ec);
  f.kvm_pvm_loaded = std::filesystem::exists(root_ / "sys/module/kvm_pvm", ec);
  std::ifstream cpuinfo(root_ / "proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    f.cpu_vmx = HasCpuFlag(line, "vmx");
    f.cpu_svm = HasCpuFlag(line, "svm");
    break;  // every CPU lists the same flags
  }
  return f;
}

absl::StatusOr<AccelChoice> ChooseAccelerator(config::Accelerator requested, const HostFacts& facts) {
  switch (requested) {
    case config::Accelerator::kTcg:
      return AccelChoice{config::Accelerator::kTcg, "tcg requested by configuration"};
    case config::Accelerator::kKvm: {
      std::string why_not = KvmUnusableReason(facts);
      if (!why_not.empty()) {
        return absl::FailedPreconditionError(StrCat("accelerator \"kvm\" requested but unusable: ", why_not));
      }
      return AccelChoice{config::Accelerator::kKvm, "kvm requested by configuration"};
    }
    case config::Accelerator::kAuto:
      break;
  }
  std::string why_not = KvmUnusableReason(facts);
  if (why_not.empty()) {
    return AccelChoice{config::Accelerator::kKvm,
                       StrCat("/dev/kvm is usable and ", facts.kvm_intel_loaded ? "kvm_intel" : "kvm_amd", " is loaded")};
  }
  return AccelChoice{config::Accelerator::kTcg, StrCat(why_not, "; using TCG (software emulation)")};
}

absl::StatusOr<AccelChoice> ChooseAccelerator(config::Accelerator requested, const HostProbe& probe) {
  return ChooseAccelerator(requested, probe.Probe());
}

}  // namespace kvcri::runtime
