// LoopDevice: a loop device over a scratch file, the stand-in for a CSI raw block volume in integration tests.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

namespace kvcri::testing {

// A loop device over a `size`-byte file whose first sector holds
// `first_sector`; detached on destruction. Fails the test when losetup does.
class LoopDevice {
 public:
  LoopDevice(const std::filesystem::path& file, const std::string& first_sector, size_t size = 8 << 20);
  // A loop device over `file` as it is (e.g. a raw copy of a bootable disk).
  explicit LoopDevice(const std::filesystem::path& file);
  ~LoopDevice();
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;

  const std::string& dev() const { return dev_; }
  // The file's first sector up to its first NUL: what the guest wrote there.
  std::string FirstSector() const;

 private:
  void Attach();

  std::filesystem::path file_;
  std::string dev_;
};

}  // namespace kvcri::testing
