// The fuzz entry points: one per parser of untrusted bytes, shared by the libFuzzer mains and the replay unit test.
#pragma once

// Each test/fuzz/<target>_fuzz.cc defines one Fuzz<Target>() that feeds its
// input to the function production calls and checks what must hold for any
// input. Built with KVCRI_LIBFUZZER it also defines libFuzzer's entry point
// (one binary per target, ctest label fuzz); without it, unit_tests links
// every target and replays the committed corpora and regression inputs
// through them (test/unit/fuzz_replay_test.cc), so the normal gcc build runs
// each crash ever found.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace kvcri::fuzz {

using FuzzInput = std::span<const uint8_t>;

void FuzzDhcpMessage(FuzzInput in);
void FuzzDhcpResponder(FuzzInput in);
void FuzzIpv6Responder(FuzzInput in);
void FuzzUdpFrame(FuzzInput in);
void FuzzConsoleLog(FuzzInput in);
void FuzzDiskFormat(FuzzInput in);
void FuzzTarExtract(FuzzInput in);
void FuzzOciJson(FuzzInput in);
void FuzzRegistryAuth(FuzzInput in);
void FuzzRegistryManifest(FuzzInput in);
void FuzzCniResult(FuzzInput in);
void FuzzConfigToml(FuzzInput in);
void FuzzSpdyFrame(FuzzInput in);
void FuzzAgentFrame(FuzzInput in);

// A finding that is not a crash: prints `what` and aborts, so libFuzzer
// saves the input and the replay test fails.
[[noreturn]] void FuzzFail(std::string_view target, std::string_view what);

inline std::string_view AsText(FuzzInput in) { return {reinterpret_cast<const char*>(in.data()), in.size()}; }
inline FuzzInput AsBytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

// Takes an input apart front to back: small numbers that steer a harness,
// then the bytes. Past the end every read yields zeros / empty.
class InputReader {
 public:
  explicit InputReader(FuzzInput in) : rest_(in) {}
  uint8_t Byte() {
    if (rest_.empty()) return 0;
    uint8_t b = rest_[0];
    rest_ = rest_.subspan(1);
    return b;
  }
  uint16_t U16() { return static_cast<uint16_t>(Byte() << 8 | Byte()); }
  // Up to `n` bytes.
  std::string_view Bytes(size_t n) {
    n = std::min(n, rest_.size());
    std::string_view out = AsText(rest_.first(n));
    rest_ = rest_.subspan(n);
    return out;
  }
  std::string_view Rest() { return Bytes(rest_.size()); }
  bool empty() const { return rest_.empty(); }

 private:
  FuzzInput rest_;
};

}  // namespace kvcri::fuzz

#define KVCRI_FUZZ_CHECK(target, cond)                                    \
  do {                                                                    \
    if (!(cond)) ::kvcri::fuzz::FuzzFail(target, "check failed: " #cond); \
  } while (0)

#ifdef KVCRI_LIBFUZZER
#define KVCRI_FUZZ_ENTRY(fn)                                                \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    fn(::kvcri::fuzz::FuzzInput(data, size));                               \
    return 0;                                                               \
  }
#else
#define KVCRI_FUZZ_ENTRY(fn)
#endif
