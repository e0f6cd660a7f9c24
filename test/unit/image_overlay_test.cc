// CreateOverlay: qcow2 overlays qemu-img reads, backed by the base, holding the guest's writes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/base/file_util.h"
#include "runtime/image/overlay.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::runtime::image {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Runs a shell command and returns its stdout; the test fails if it fails.
std::string Sh(const std::string& cmd, int* status = nullptr) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = ::pclose(p);
  if (status != nullptr) {
    *status = rc;
  } else {
    EXPECT_EQ(rc, 0) << cmd << ": " << out;
  }
  return out;
}

class OverlayTest : public kvcri::testing::ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    ASSERT_EQ(std::system("command -v qemu-img >/dev/null"), 0)
        << "qemu-img missing (install qemu-utils)";
  }

  // qemu-img's own view of an overlay: it must be consistent and name its base.
  void ExpectValidOverlay(const fs::path& overlay, const fs::path& base,
                          const std::string& base_fmt) {
    Sh("qemu-img check -f qcow2 " + overlay.string());
    nlohmann::json info =
        nlohmann::json::parse(Sh("qemu-img info --output=json -f qcow2 " + overlay.string()));
    nlohmann::json base_info = nlohmann::json::parse(
        Sh("qemu-img info --output=json -f " + base_fmt + " " + base.string()));
    EXPECT_EQ(info["format"], "qcow2");
    EXPECT_EQ(info["backing-filename"], base.string());
    EXPECT_EQ(info["backing-filename-format"], base_fmt);
    EXPECT_EQ(info["virtual-size"], base_info["virtual-size"]);
    // Reads fall through to the base.
    Sh("qemu-img compare -f qcow2 -F " + base_fmt + " " + overlay.string() + " " + base.string());
  }

};

TEST_F(OverlayTest, CreatesQcow2OverlayOnQcow2Base) {
  fs::path base = dir_ / "base.qcow2";
  Sh("qemu-img create -q -f qcow2 " + base.string() + " 1G");
  Sh("qemu-io -f qcow2 -c 'write -P 0x5a 1M 64k' " + base.string());
  ASSERT_TRUE(CreateOverlay(base, DiskFormat::kQcow2, dir_ / "o.qcow2").ok());
  ExpectValidOverlay(dir_ / "o.qcow2", base, "qcow2");
  struct stat st;
  ASSERT_EQ(::stat((dir_ / "o.qcow2").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(OverlayTest, CreatesQcow2OverlayOnRawBaseOfOddSize) {
  fs::path base = dir_ / "base.raw";
  Sh("head -c 1000000 /dev/urandom > " + base.string());
  Sh("truncate -s 1000448 " + base.string());  // a multiple of 512, as qemu-img needs for compare
  ASSERT_TRUE(CreateOverlay(base, DiskFormat::kRaw, dir_ / "o.qcow2").ok());
  ExpectValidOverlay(dir_ / "o.qcow2", base, "raw");
}

TEST_F(OverlayTest, CoversLargeDisksWithSeveralL1Clusters) {
  fs::path base = dir_ / "big.qcow2";
  Sh("qemu-img create -q -f qcow2 " + base.string() + " 5T");
  ASSERT_TRUE(CreateOverlay(base, DiskFormat::kQcow2, dir_ / "o.qcow2").ok());
  ExpectValidOverlay(dir_ / "o.qcow2", base, "qcow2");
}

TEST_F(OverlayTest, GuestWritesLandInOverlayNotBase) {
  fs::path base = dir_ / "base.qcow2";
  Sh("qemu-img create -q -f qcow2 " + base.string() + " 64M");
  std::string before = Sh("sha256sum " + base.string());
  ASSERT_TRUE(CreateOverlay(base, DiskFormat::kQcow2, dir_ / "o.qcow2").ok());
  Sh("qemu-io -f qcow2 -c 'write -P 0xab 0 1M' " + (dir_ / "o.qcow2").string());
  Sh("qemu-img check -f qcow2 " + (dir_ / "o.qcow2").string());
  std::string read = Sh("qemu-io -f qcow2 -c 'read -P 0xab 0 1M' " + (dir_ / "o.qcow2").string());
  EXPECT_THAT(read, HasSubstr("read 1048576/1048576"));
  EXPECT_EQ(Sh("sha256sum " + base.string()), before);
}

TEST_F(OverlayTest, RefusesExistingOverlayAndRelativeBase) {
  fs::path base = dir_ / "base.raw";
  Sh("truncate -s 1M " + base.string());
  ASSERT_TRUE(base::WriteFileAtomic(dir_ / "o.qcow2", "keep").ok());
  absl::Status s = CreateOverlay(base, DiskFormat::kRaw, dir_ / "o.qcow2");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(*base::ReadFile(dir_ / "o.qcow2"), "keep");
  s = CreateOverlay("base.raw", DiskFormat::kRaw, dir_ / "p.qcow2");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(dir_ / "p.qcow2"));
  s = CreateOverlay(dir_ / "missing.raw", DiskFormat::kRaw, dir_ / "q.qcow2");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(dir_ / "q.qcow2"));
  s = CreateOverlay(base, DiskFormat::kQcow2, dir_ / "r.qcow2");  // raw bytes claimed to be qcow2
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(dir_ / "r.qcow2"));
}

// Prints what one overlay costs us against spawning qemu-img (the budget is
// ~12 ms of our own time per pod).
TEST_F(OverlayTest, IsCheaperThanSpawningQemuImg) {
  fs::path base = dir_ / "base.qcow2";
  Sh("qemu-img create -q -f qcow2 " + base.string() + " 10G");
  auto median_ms = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  constexpr int kRounds = 21;
  std::vector<double> native, native_nosync, qemu;
  for (int i = 0; i < kRounds; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(CreateOverlay(base, DiskFormat::kQcow2, dir_ / ("n" + std::to_string(i))).ok());
    auto t1 = std::chrono::steady_clock::now();
    ASSERT_TRUE(
        CreateOverlay(base, DiskFormat::kQcow2, dir_ / ("u" + std::to_string(i)), {.sync = false})
            .ok());
    auto t2 = std::chrono::steady_clock::now();
    Sh("qemu-img create -q -f qcow2 -F qcow2 -b " + base.string() + " " +
       (dir_ / ("q" + std::to_string(i))).string());
    auto t3 = std::chrono::steady_clock::now();
    native.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    native_nosync.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
    qemu.push_back(std::chrono::duration<double, std::milli>(t3 - t2).count());
  }
  std::printf("overlay median ms: native+fsync=%.3f native=%.3f qemu-img(popen)=%.3f\n",
              median_ms(native), median_ms(native_nosync), median_ms(qemu));
  EXPECT_LT(median_ms(native_nosync), median_ms(qemu));
}

}  // namespace
}  // namespace kvcri::runtime::image
