// Unit tests of BootFromRootfs: a container task's rootfs as a containerDisk, a kernel-boot image, a plain image, or refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "shim/containerd/rootfs_image.h"
#include "shim/containerd/rootfs_image_store.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::shim::containerd {
namespace {

using runtime::image::BootKind;
using runtime::image::DiskFormat;
using ::testing::HasSubstr;

class ContainerdRootfsTest : public testing::ScratchDirTest {
 protected:
  std::filesystem::path File(const std::string& rel, const std::string& content = "x") {
    std::filesystem::path p = dir_ / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << content;
    return p;
  }
  static std::string Message(const absl::Status& s) { return std::string(s.message()); }
};

TEST_F(ContainerdRootfsTest, ASingleDiskIsAContainerDiskWithItsFormatAndSize) {
  File("disk/disk.img", std::string(4096, '\0'));
  File("etc/os-release", "ID=test");
  absl::StatusOr<runtime::image::BootInfo> boot = BootFromRootfs(dir_);
  ASSERT_TRUE(boot.ok()) << boot.status();
  EXPECT_EQ(boot->kind, BootKind::kDisk);
  EXPECT_EQ(boot->disk, dir_ / "disk/disk.img");
  EXPECT_EQ(boot->disk_format, DiskFormat::kRaw);
  EXPECT_EQ(boot->disk_virtual_size, 4096u);
}

TEST_F(ContainerdRootfsTest, AKernelWinsOverADiskAndTakesTheCmdlineAndInitrd) {
  File("boot/vmlinuz");
  File("boot/initrd.img");
  File("disk/root.img", std::string(512, '\0'));
  absl::StatusOr<runtime::image::BootInfo> boot = BootFromRootfs(dir_, "console=ttyS0");
  ASSERT_TRUE(boot.ok()) << boot.status();
  EXPECT_EQ(boot->kind, BootKind::kKernel);
  EXPECT_EQ(boot->kernel, dir_ / "boot/vmlinuz");
  EXPECT_EQ(boot->initrd, dir_ / "boot/initrd.img");
  EXPECT_EQ(boot->cmdline, "console=ttyS0");
  EXPECT_EQ(boot->disk, dir_ / "disk/root.img") << "the kernel's disk, as the store keeps it";
}

TEST_F(ContainerdRootfsTest, APlainContainerImageCannotBootAndSaysWhy) {
  File("bin/sh");
  absl::StatusOr<runtime::image::BootInfo> boot = BootFromRootfs(dir_);
  ASSERT_TRUE(boot.ok()) << boot.status();
  EXPECT_EQ(boot->kind, BootKind::kNone);
  EXPECT_THAT(boot->unbootable_reason, HasSubstr("plain container image"));
}

TEST_F(ContainerdRootfsTest, SymlinksAreRefusedWhereverTheyStand) {
  std::filesystem::create_directories(dir_ / "a");
  std::filesystem::create_symlink("/etc/hostname", dir_ / "a/disk");
  std::filesystem::create_directories(dir_ / "a");
  std::filesystem::create_directories(dir_ / "b/disk");
  std::filesystem::create_symlink("/etc/hostname", dir_ / "b/disk/disk.img");
  std::filesystem::create_directories(dir_ / "c/boot");
  std::filesystem::create_symlink("/boot/vmlinuz-host", dir_ / "c/boot/vmlinuz");
  std::filesystem::create_directories(dir_ / "d");
  std::filesystem::create_symlink("/boot", dir_ / "d/boot");
  for (const char* root : {"a", "b", "c", "d"}) {
    absl::StatusOr<runtime::image::BootInfo> boot = BootFromRootfs(dir_ / root);
    EXPECT_EQ(boot.status().code(), absl::StatusCode::kInvalidArgument) << root << ": " << boot.status();
  }
  EXPECT_THAT(Message(BootFromRootfs(dir_ / "b").status()), HasSubstr("/disk/disk.img is not a regular file"));
}

TEST_F(ContainerdRootfsTest, TwoDisksOrARefusedFormatAreInvalid) {
  File("two/disk/a.img");
  File("two/disk/b.img");
  EXPECT_THAT(Message(BootFromRootfs(dir_ / "two").status()), HasSubstr("2 files in /disk"));
  // A qcow2 header naming a backing file: QEMU would open a host file.
  std::string qcow2(512, '\0');
  const unsigned char header[] = {'Q', 'F', 'I', 0xfb, 0, 0, 0, 3,  // magic, version 3
                                  0, 0, 0, 0, 0, 0, 1, 0,           // backing_file_offset 256
                                  0, 0, 0, 10};                     // backing_file_size 10
  qcow2.replace(0, sizeof header, reinterpret_cast<const char*>(header), sizeof header);
  File("q/disk/top.qcow2", qcow2);
  absl::StatusOr<runtime::image::BootInfo> boot = BootFromRootfs(dir_ / "q");
  EXPECT_EQ(boot.status().code(), absl::StatusCode::kInvalidArgument) << boot.status();
  EXPECT_THAT(Message(boot.status()), HasSubstr("/disk/top.qcow2"));
}

TEST_F(ContainerdRootfsTest, TheStoreResolvesARegisteredRootfsByReferenceOrLatestNameAndNothingElse) {
  File("boot/vmlinuz");
  RootfsImageStore store;
  absl::StatusOr<runtime::image::ImageInfo> added =
      store.Add("ctr1", dir_, "registry.local/vm:1", {{"io.kubevirt-cri.cmdline", "console=ttyS0 quiet"}});
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->id, "rootfs:ctr1");
  absl::StatusOr<runtime::image::ImageInfo> got = store.Resolve("ctr1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->boot.kind, BootKind::kKernel);
  EXPECT_EQ(got->boot.cmdline, "console=ttyS0 quiet");
  EXPECT_EQ(got->repo_tags, std::vector<std::string>{"registry.local/vm:1"});
  EXPECT_EQ(store.List()->size(), 1u);
  EXPECT_EQ(store.Add("ctr1", dir_, "", {}).status().code(), absl::StatusCode::kAlreadyExists);
  // By name: the rootfs registered last under it (a restarted container's
  // new task), until that one is forgotten.
  File("two/boot/vmlinuz");
  ASSERT_TRUE(store.Add("ctr3", dir_ / "two", "registry.local/vm:1", {}).ok());
  EXPECT_EQ(store.Resolve("registry.local/vm:1")->id, "rootfs:ctr3");
  store.Forget("ctr3");
  EXPECT_TRUE(absl::IsNotFound(store.Resolve("registry.local/vm:1").status()))
      << "the name left with the rootfs registered last under it";
  EXPECT_TRUE(absl::IsNotFound(store.Resolve("registry.local/other:1").status()));
  EXPECT_EQ(store.Remove("ctr1", nullptr).code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(store.Import(dir_, "x", "").status().code(), absl::StatusCode::kUnimplemented);
  store.Forget("ctr1");
  EXPECT_TRUE(absl::IsNotFound(store.Resolve("ctr1").status()));
  File("bad/disk/a");
  File("bad/disk/b");
  EXPECT_EQ(store.Add("ctr2", dir_ / "bad", "", {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(store.List()->empty());
}

}  // namespace
}  // namespace kvcri::shim::containerd
