// Fuzz target extraction_result: the sandboxed extraction child's answer through ParseExtractionResult.
#include "runtime/image/sandboxed_extract.h"
#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

constexpr std::string_view kTarget = "extraction_result";

// The child parsed hostile layers and may be anyone's by now: whatever it
// answers is an error or artifact paths inside the output directory.
void FuzzExtractionResult(FuzzInput in) {
  absl::StatusOr<runtime::image::BootArtifacts> a = runtime::image::ParseExtractionResult(AsText(in));
  if (!a.ok()) {
    KVCRI_FUZZ_CHECK(kTarget, a.status().code() != absl::StatusCode::kOk);
    return;
  }
  for (const std::string* p : {&a->disk, &a->kernel, &a->initrd}) {
    KVCRI_FUZZ_CHECK(kTarget, p->empty() || ((*p)[0] != '/' && p->find("..") == std::string::npos));
  }
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzExtractionResult)
