// LoopDevice: losetup attach/detach around a scratch file.
#include "test/client/loop_device.h"

#include <gtest/gtest.h>

#include <fstream>

#include "test/fakes/shell.h"

namespace kvcri::testing {

LoopDevice::LoopDevice(const std::filesystem::path& file, const std::string& first_sector, size_t size)
    : file_(file) {
  std::string content = first_sector;
  content.resize(size, '\0');
  std::ofstream(file, std::ios::binary) << content;
  Attach();
}

LoopDevice::LoopDevice(const std::filesystem::path& file) : file_(file) { Attach(); }

void LoopDevice::Attach() {
  ShResult r = Sh("losetup --find --show '" + file_.string() + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  if (r.exit_code == 0) dev_ = r.output.substr(0, r.output.find('\n'));
}

LoopDevice::~LoopDevice() {
  if (!dev_.empty()) Sh("losetup -d '" + dev_ + "'");
}

std::string LoopDevice::FirstSector() const {
  std::string s(512, '\0');
  std::ifstream(file_, std::ios::binary).read(s.data(), 512);
  return s.substr(0, s.find('\0'));
}

}  // namespace kvcri::testing
