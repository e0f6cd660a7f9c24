// Fuzz target oci_json: manifest, index and image config JSON through ParseManifest, ParseIndex and ParseImageConfig.
#include "runtime/image/digest.h"
#include "runtime/image/oci.h"
#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

constexpr std::string_view kTarget = "oci_json";

// Every document goes through all three parsers: a registry decides which
// one it is by a media type it also controls.
void FuzzOciJson(FuzzInput in) {
  std::string_view json = AsText(in);
  absl::StatusOr<runtime::image::Manifest> m = runtime::image::ParseManifest(json);
  if (m.ok()) {
    KVCRI_FUZZ_CHECK(kTarget, runtime::image::ValidateDigest(m->config.digest, "config").ok());
    KVCRI_FUZZ_CHECK(kTarget, m->config.size >= 0);
    for (const runtime::image::Descriptor& l : m->layers) {
      KVCRI_FUZZ_CHECK(kTarget, runtime::image::ValidateDigest(l.digest, "layer").ok());
      KVCRI_FUZZ_CHECK(kTarget, l.size >= 0);
    }
  } else {
    KVCRI_FUZZ_CHECK(kTarget, absl::IsInvalidArgument(m.status()));
  }
  absl::StatusOr<std::vector<runtime::image::Descriptor>> index = runtime::image::ParseIndex(json);
  if (index.ok()) {
    for (const runtime::image::Descriptor& d : *index) {
      KVCRI_FUZZ_CHECK(kTarget, runtime::image::ValidateDigest(d.digest, "manifest").ok());
      KVCRI_FUZZ_CHECK(kTarget, d.size >= 0);
    }
  } else {
    KVCRI_FUZZ_CHECK(kTarget, absl::IsInvalidArgument(index.status()));
  }
  absl::StatusOr<runtime::image::ImageConfig> config = runtime::image::ParseImageConfig(json);
  KVCRI_FUZZ_CHECK(kTarget, config.ok() || absl::IsInvalidArgument(config.status()));
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzOciJson)
