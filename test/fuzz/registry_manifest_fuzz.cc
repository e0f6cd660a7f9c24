// Fuzz target registry_manifest: a registry's answers to a manifest GET through RegistryClient and the OCI parsers.
#include "runtime/image/oci.h"
#include "runtime/image/registry_client.h"
#include "test/fuzz/fake_http.h"
#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

constexpr std::string_view kTarget = "registry_manifest";

// Input: the raw HTTP answers (`curl -si` form) the registry and its token
// endpoint give, in order.
void FuzzRegistryManifest(FuzzInput in) {
  ScriptedFetcher http(AsText(in));
  runtime::image::Reference ref;
  ref.domain = "registry.example";  // not loopback: one https endpoint, no plain-HTTP fallback
  ref.path = "kvcri/disk";
  ref.tag = "latest";
  runtime::image::RegistryClient client(&http, {}, ref, {}, absl::InfiniteFuture());
  absl::StatusOr<runtime::image::FetchedManifest> m = client.GetManifest("latest");
  // At most: the GET, the token, the GET again.
  KVCRI_FUZZ_CHECK(kTarget, http.requests() <= 3);
  if (!m.ok()) return;
  KVCRI_FUZZ_CHECK(kTarget, m->digest == runtime::image::Sha256Digest(m->bytes));
  KVCRI_FUZZ_CHECK(kTarget, m->bytes.size() <= 4 << 20);
  // What the puller does next with it.
  if (runtime::image::IsIndexMediaType(m->media_type)) {
    (void)runtime::image::ParseIndex(m->bytes);
  } else {
    KVCRI_FUZZ_CHECK(kTarget, runtime::image::IsManifestMediaType(m->media_type));
    (void)runtime::image::ParseManifest(m->bytes);
  }
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzRegistryManifest)

#ifdef KVCRI_LIBFUZZER
#include "absl/time/clock.h"
// RegistryClient sleeps 1 s and 2 s between retries of a transient failure
// (a token endpoint's 404 is one). absl lets a program replace the sleep
// (a weak symbol); in this fuzz binary only, retries come at once, so an
// input costs microseconds, not seconds. The replay in unit_tests sleeps.
extern "C" void ABSL_INTERNAL_C_SYMBOL(AbslInternalSleepFor)(absl::Duration) {}
#endif
