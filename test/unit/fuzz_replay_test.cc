// Replays every committed fuzz corpus and regression input through its harness, in the normal build too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {
namespace {

namespace fs = std::filesystem;

struct Target {
  const char* name;
  void (*run)(FuzzInput);
};

// Every test/fuzz/<name>_fuzz.cc; a target missing here has no replay.
constexpr Target kTargets[] = {
    {"dhcp_message", FuzzDhcpMessage},
    {"dhcp_responder", FuzzDhcpResponder},
    {"ipv6_responder", FuzzIpv6Responder},
    {"udp_frame", FuzzUdpFrame},
    {"console_log", FuzzConsoleLog},
    {"disk_format", FuzzDiskFormat},
    {"tar_extract", FuzzTarExtract},
    {"oci_json", FuzzOciJson},
    {"registry_auth", FuzzRegistryAuth},
    {"registry_manifest", FuzzRegistryManifest},
    {"cni_result", FuzzCniResult},
    {"config_toml", FuzzConfigToml},
    {"spdy_frame", FuzzSpdyFrame},
    {"agent_frame", FuzzAgentFrame},
};

std::vector<fs::path> Files(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file()) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void Replay(const Target& t, const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  ASSERT_TRUE(in) << "cannot read " << file;
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  SCOPED_TRACE(file.string());
  // In a buffer of exactly the input's size, as libFuzzer hands it over, so
  // ASan sees a read one byte past the end (a std::string has slack).
  std::unique_ptr<uint8_t[]> exact(new uint8_t[bytes.size()]);
  std::memcpy(exact.get(), bytes.data(), bytes.size());
  // A broken invariant or a crash aborts the binary: the failure is loud.
  t.run(FuzzInput(exact.get(), bytes.size()));
}

class FuzzReplay : public ::testing::TestWithParam<Target> {};

TEST_P(FuzzReplay, EverySeedAndRegressionInputPasses) {
  const fs::path root = fs::path(KVCRI_SOURCE_DIR) / "test/fuzz";
  std::vector<fs::path> seeds = Files(root / "corpus" / GetParam().name);
  // Every target has real seed inputs: a fuzzer that starts from nothing
  // rarely gets past a magic number or a JSON brace.
  ASSERT_FALSE(seeds.empty()) << "test/fuzz/corpus/" << GetParam().name << "/ is empty";
  for (const fs::path& f : seeds) Replay(GetParam(), f);
  for (const fs::path& f : Files(root / "regressions" / GetParam().name)) Replay(GetParam(), f);
}

TEST(FuzzReplay, EveryHarnessHasATargetEntry) {
  const fs::path root = fs::path(KVCRI_SOURCE_DIR) / "test/fuzz";
  for (const fs::path& f : Files(root)) {
    std::string name = f.filename().string();
    if (name.size() < 8 || name.substr(name.size() - 8) != "_fuzz.cc") continue;
    name = name.substr(0, name.size() - 8);
    bool found = false;
    for (const Target& t : kTargets) found |= name == t.name;
    EXPECT_TRUE(found) << "test/fuzz/" << f.filename().string() << " is not in kTargets";
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzReplay, ::testing::ValuesIn(kTargets),
                         [](const ::testing::TestParamInfo<Target>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace kvcri::fuzz
