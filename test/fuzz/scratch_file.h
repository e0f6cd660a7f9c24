// ScratchPath: a per-process scratch directory for fuzz targets whose parser reads a file or writes a tree.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

// <dir>/<name> in a directory made once per process, under /dev/shm when
// there is one (a fuzzer runs thousands of inputs a second), and removed when
// the process exits normally (libFuzzer's time limit, the end of unit_tests).
inline std::filesystem::path ScratchPath(std::string_view name) {
  struct Dir {
    Dir() {
      std::string tmpl =
          std::string(std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp") + "/kvcri-fuzz-XXXXXX";
      if (::mkdtemp(tmpl.data()) == nullptr) FuzzFail("scratch", "mkdtemp failed");
      path = tmpl;
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
    std::filesystem::path path;
  };
  static const Dir dir;
  return dir.path / std::string(name);
}

}  // namespace kvcri::fuzz
