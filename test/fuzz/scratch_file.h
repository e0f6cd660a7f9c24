// ScratchPath: a per-process scratch directory for fuzz targets whose parser reads a file or writes a tree.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

// <dir>/<name> in a directory made once per process, under /dev/shm when
// there is one (a fuzzer runs thousands of inputs a second). Removed with
// the machine's tmpfs; ctest gives each run its own process.
inline std::filesystem::path ScratchPath(std::string_view name) {
  static const std::filesystem::path dir = [] {
    std::string tmpl = std::string(std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp") + "/kvcri-fuzz-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) FuzzFail("scratch", "mkdtemp failed");
    return std::filesystem::path(tmpl);
  }();
  return dir / std::string(name);
}

}  // namespace kvcri::fuzz
