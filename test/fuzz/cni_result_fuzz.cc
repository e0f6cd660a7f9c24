// Fuzz target cni_result: a CNI plugin's stdout through ParseCniResult, PodIps and SandboxInterfaces.
#include <set>
#include <string>
#include <vector>

#include "cni/result.h"
#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

constexpr std::string_view kTarget = "cni_result";

void FuzzCniResult(FuzzInput in) {
  absl::StatusOr<cni::CniResult> r = cni::ParseCniResult(AsText(in), "plugin result");
  if (!r.ok()) {
    KVCRI_FUZZ_CHECK(kTarget, absl::IsInvalidArgument(r.status()));
    return;
  }
  for (const std::string& ip : cni::PodIps(*r)) KVCRI_FUZZ_CHECK(kTarget, ip.find('/') == std::string::npos);
  (void)cni::PodIps(*r, "net1");
  // Guest NICs: never empty, never a name twice.
  std::vector<std::string> nics = cni::SandboxInterfaces(*r, "/run/netns/p");
  KVCRI_FUZZ_CHECK(kTarget, !nics.empty());
  KVCRI_FUZZ_CHECK(kTarget, std::set<std::string>(nics.begin(), nics.end()).size() == nics.size());
  (void)cni::CniVersionAtLeast(r->cni_version, "0.4.0");
  (void)cni::IsSupportedCniVersion(r->cni_version);
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzCniResult)
