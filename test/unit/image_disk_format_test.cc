// Disk format detection: qcow2 headers accepted or refused, everything else raw.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/base/file_util.h"
#include "runtime/image/disk_format.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::runtime::image {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class DiskFormatTest : public kvcri::testing::ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
  }

  // Runs qemu-img; the test fails naming the command if it does.
  void QemuImg(const std::string& args) {
    std::string cmd = "qemu-img " + args + " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0)
        << "qemu-img missing or failed (install qemu-utils): " << cmd;
  }

};

// A v3 header with `header_length` 112, no extensions unless appended.
std::string V3Header(uint64_t incompat = 0, uint32_t version = 3) {
  std::string h(4096, '\0');
  auto put32 = [&](size_t off, uint32_t v) {
    for (int i = 0; i < 4; ++i) h[off + i] = static_cast<char>(v >> (24 - 8 * i));
  };
  auto put64 = [&](size_t off, uint64_t v) {
    put32(off, static_cast<uint32_t>(v >> 32));
    put32(off + 4, static_cast<uint32_t>(v));
  };
  h.replace(0, 4, "QFI\xfb");
  put32(4, version);
  put32(20, 16);
  put64(24, 1 << 20);
  put64(72, incompat);
  put32(96, 4);
  put32(100, 112);
  return h;
}

TEST_F(DiskFormatTest, DetectsQcow2AndItsVirtualSize) {
  QemuImg("create -f qcow2 " + (dir_ / "a.qcow2").string() + " 64M");
  absl::StatusOr<DiskFormatInfo> f = DetectDiskFormat(dir_ / "a.qcow2");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->format, DiskFormat::kQcow2);
  EXPECT_EQ(f->virtual_size, 64u << 20);
}

TEST_F(DiskFormatTest, AcceptsQcow2Version2) {
  QemuImg("create -f qcow2 -o compat=0.10 " + (dir_ / "v2.qcow2").string() + " 1M");
  absl::StatusOr<DiskFormatInfo> f = DetectDiskFormat(dir_ / "v2.qcow2");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->format, DiskFormat::kQcow2);
}

TEST_F(DiskFormatTest, AnythingElseIsRaw) {
  QemuImg("create -f raw " + (dir_ / "a.raw").string() + " 3M");
  QemuImg("create -f vmdk " + (dir_ / "a.vmdk").string() + " 1M");
  absl::StatusOr<DiskFormatInfo> raw = DetectDiskFormat(dir_ / "a.raw");
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(raw->format, DiskFormat::kRaw);
  EXPECT_EQ(raw->virtual_size, 3u << 20);
  // QEMU would probe a vmdk; we never let it, so it is raw bytes to the guest.
  absl::StatusOr<DiskFormatInfo> vmdk = DetectDiskFormat(dir_ / "a.vmdk");
  ASSERT_TRUE(vmdk.ok()) << vmdk.status();
  EXPECT_EQ(vmdk->format, DiskFormat::kRaw);
}

TEST_F(DiskFormatTest, RejectsQcow2WithBackingFile) {
  QemuImg("create -f raw " + (dir_ / "base.raw").string() + " 1M");
  QemuImg("create -f qcow2 -F raw -b " + (dir_ / "base.raw").string() + " " +
          (dir_ / "top.qcow2").string());
  absl::StatusOr<DiskFormatInfo> f = DetectDiskFormat(dir_ / "top.qcow2");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("backing file"));
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("top.qcow2"));
}

TEST_F(DiskFormatTest, RejectsQcow2WithExternalDataFile) {
  QemuImg("create -f qcow2 -o data_file=" + (dir_ / "data.raw").string() + " " +
          (dir_ / "d.qcow2").string() + " 1M");
  absl::StatusOr<DiskFormatInfo> f = DetectDiskFormat(dir_ / "d.qcow2");
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("external data file"));
}

TEST_F(DiskFormatTest, RejectsHandMadeHeaders) {
  auto detect = [&](const std::string& bytes) {
    fs::path p = dir_ / "h.qcow2";
    EXPECT_TRUE(base::WriteFileAtomic(p, bytes).ok());
    return DetectDiskFormat(p);
  };
  ASSERT_TRUE(detect(V3Header()).ok());
  EXPECT_THAT(std::string(detect(V3Header(1 << 2)).status().message()),
              HasSubstr("external data file"));
  EXPECT_THAT(std::string(detect(V3Header(0, 4)).status().message()), HasSubstr("version 4"));
  EXPECT_THAT(std::string(detect(V3Header().substr(0, 50)).status().message()),
              HasSubstr("shorter"));

  std::string with_ext = V3Header();
  // Data-file name extension 0x44415441 at header_length, then the end marker.
  with_ext.replace(112, 8, std::string("\x44\x41\x54\x41\x00\x00\x00\x04", 8));
  with_ext.replace(120, 4, "data");
  EXPECT_THAT(std::string(detect(with_ext).status().message()),
              HasSubstr("names an external data file"));

  std::string endless = V3Header();
  // An extension whose length runs past the data.
  endless.replace(112, 8, std::string("\x12\x34\x56\x78\x00\x00\xff\xf0", 8));
  EXPECT_EQ(detect(endless).status().code(), absl::StatusCode::kInvalidArgument);

  std::string backing = V3Header();
  backing[15] = 0x70;  // backing_file_offset = 0x70
  EXPECT_THAT(std::string(detect(backing).status().message()), HasSubstr("backing file"));
}

TEST(ParseQcow2Header, ReadsFields) {
  absl::StatusOr<Qcow2Header> h = ParseQcow2Header(V3Header(0));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->version, 3u);
  EXPECT_EQ(h->cluster_bits, 16u);
  EXPECT_EQ(h->size, 1u << 20);
  EXPECT_FALSE(h->has_data_file_extension);
  EXPECT_FALSE(ParseQcow2Header("not qcow2").ok());
}

}  // namespace
}  // namespace kvcri::runtime::image
