// FuzzFail: how a harness reports a broken invariant (like a crash, so libFuzzer keeps the input).
#include <cstdio>
#include <cstdlib>

#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

void FuzzFail(std::string_view target, std::string_view what) {
  std::fprintf(stderr, "fuzz target %.*s: %.*s\n", static_cast<int>(target.size()), target.data(),
               static_cast<int>(what.size()), what.data());
  std::abort();
}

}  // namespace kvcri::fuzz

#ifdef KVCRI_LIBFUZZER
#include "config/base/log.h"

// libFuzzer calls this once before the first input: the code under test logs
// what a daemon operator wants to see (a console copy started...), which at
// thousands of inputs a second would be most of a run's time.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  kvcri::base::SetLogLevel(kvcri::base::LogLevel::kError);
  return 0;
}
#endif
