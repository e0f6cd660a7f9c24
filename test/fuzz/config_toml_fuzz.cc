// Fuzz target config_toml: a config.toml through ParseConfig, as LoadConfig hands it the file.
#include "config/config.h"
#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

constexpr std::string_view kTarget = "config_toml";

void FuzzConfigToml(FuzzInput in) {
  absl::StatusOr<config::Config> c = config::ParseConfig(AsText(in), "fuzz.toml");
  if (!c.ok()) {
    KVCRI_FUZZ_CHECK(kTarget, absl::IsInvalidArgument(c.status()));
    return;
  }
  // What Validate() promises the daemon.
  KVCRI_FUZZ_CHECK(kTarget, c->root.is_absolute() && c->state_dir.is_absolute());
  KVCRI_FUZZ_CHECK(kTarget, c->vm.default_vcpus >= 1 && !c->runtime.vm_handlers.empty());
  (void)c->LibvirtUri();
  (void)c->CniCacheDir();
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzConfigToml)
