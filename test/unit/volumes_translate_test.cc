// Volume names (disk serials, mount tags), the guest's volume table, and the
// translation of a container record's devices and mounts into the VmSpec.
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <cstring>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cri/validate_volumes.h"
#include "cri/volumes.h"
#include "runtime/domain_xml.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::cri {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

bool OnlyTagChars(const std::string& s) {
  return s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
         std::string::npos;
}

TEST(DiskSerialFor, ShortDevicePathIsItsName) {
  EXPECT_EQ(DiskSerialFor("/dev/xvdb"), "xvdb");
  EXPECT_EQ(DiskSerialFor("/dev/block/data"), "block-data");
  EXPECT_EQ(DiskSerialFor("/data/disk"), "data-disk");
}

TEST(DiskSerialFor, LongOrOddPathsFitVirtioBlkAndStayDistinct) {
  std::set<std::string> seen;
  for (const char* p : {"/dev/a-very-long-device-name-for-a-volume", "/dev/a-very-long-device-name-for-a-volume2",
                        "/dev/with space", "/dev/ümlaut", "/dev/.hidden", "/dev/cidata"}) {
    std::string s = DiskSerialFor(p);
    EXPECT_LE(s.size(), runtime::kMaxDiskSerialLength) << p;
    EXPECT_TRUE(OnlyTagChars(s)) << p << " -> " << s;
    EXPECT_NE(s.front(), '.') << p;
    EXPECT_TRUE(seen.insert(s).second) << p << " -> " << s;
    EXPECT_EQ(s, DiskSerialFor(p)) << "stable";
  }
  EXPECT_NE(DiskSerialFor("/dev/cidata"), "cidata") << "the seed disk's serial is reserved";
}

TEST(MountTagFor, ShortPathIsItsNameAndLongOnesFit) {
  EXPECT_EQ(MountTagFor("/data"), "data");
  EXPECT_EQ(MountTagFor("/var/lib/x"), "var-lib-x");
  std::string sa = "/var/run/secrets/kubernetes.io/serviceaccount";
  std::string t = MountTagFor(sa);
  EXPECT_LE(t.size(), runtime::kMaxMountTagLength);
  EXPECT_TRUE(runtime::IsValidMountTag(t)) << t;
  EXPECT_NE(t, MountTagFor(sa + "2"));
  EXPECT_EQ(t, MountTagFor(sa));
}

TEST(FsDriverFor, ReadOnlyIs9pAndReadWriteIsVirtiofsWhenAvailable) {
  VolumeOptions with{"/bin/true"}, without{"/nonexistent/virtiofsd"};
  EXPECT_EQ(FsDriverFor(true, with), runtime::FsDriver::k9p);
  EXPECT_EQ(FsDriverFor(false, with), runtime::FsDriver::kVirtiofs);
  EXPECT_EQ(FsDriverFor(false, without), runtime::FsDriver::k9p) << "9p fallback without virtiofsd";
}

TEST(VolumeSeedFiles, TableListsEveryVolumeAndFileContents) {
  VolumePlan plan;
  plan.devices.push_back({"/dev/xvdb", "/dev/loop3", "rwm"});
  plan.devices.push_back({"/dev/xvdc", "/dev/loop4", "r"});
  plan.mounts.push_back({"/data", "/srv/data", false});
  plan.mounts.push_back({"/etc/config", "/srv/config", true});
  plan.mounts.push_back({"/etc/hosts", "/var/lib/kubelet/pods/u/etc-hosts", false});
  plan.files.push_back({"/etc/hosts", "127.0.0.1 localhost\n", false});
  std::vector<runtime::VfatFile> files = VolumeSeedFiles(plan, VolumeOptions{"/bin/true"});
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].name, kVolumeTableFile);
  EXPECT_EQ(files[0].content,
            "# kubevirt-cri volume table v1 (docs/volumes.md)\n"
            "disk xvdb rw /dev/xvdb\n"
            "disk xvdc ro /dev/xvdc\n"
            "fs data rw virtiofs /data\n"
            "fs etc-config ro 9p /etc/config\n"
            "file kubevirt-cri-file-0 rw /etc/hosts\n");
  EXPECT_EQ(files[1].name, "kubevirt-cri-file-0");
  EXPECT_EQ(files[1].content, "127.0.0.1 localhost\n");
}

TEST(VolumeSeedFiles, ReadWriteMountsUse9pWithoutVirtiofsd) {
  VolumePlan plan;
  plan.mounts.push_back({"/data", "/srv/data", false});
  std::vector<runtime::VfatFile> files = VolumeSeedFiles(plan, VolumeOptions{"/nonexistent/virtiofsd"});
  ASSERT_EQ(files.size(), 1u);
  EXPECT_THAT(files[0].content, HasSubstr("\nfs data rw 9p /data\n"));
}

class AddVolumesTest : public kvcri::testing::ScratchDirTest {};

TEST_F(AddVolumesTest, DirectoriesBecomeFilesystemsAndFilesAreSkipped) {
  fs::create_directories(dir_ / "rw");
  fs::create_directories(dir_ / "ro");
  std::ofstream(dir_ / "hosts") << "x";
  sandbox::ContainerRecord c;
  c.id = "c1";
  c.mounts.push_back({"/data", (dir_ / "rw").string(), false});
  c.mounts.push_back({"/etc/config", (dir_ / "ro").string(), true});
  c.mounts.push_back({"/etc/hosts", (dir_ / "hosts").string(), false});
  runtime::VmSpec spec;
  ASSERT_TRUE(AddVolumesToVmSpec(c, VolumeOptions{"/bin/true"}, &spec).ok());
  ASSERT_EQ(spec.filesystems.size(), 2u);
  EXPECT_EQ(spec.filesystems[0].source_dir, dir_ / "rw");
  EXPECT_EQ(spec.filesystems[0].tag, "data");
  EXPECT_EQ(spec.filesystems[0].driver, runtime::FsDriver::kVirtiofs);
  EXPECT_EQ(spec.filesystems[0].virtiofsd, "/bin/true");
  EXPECT_FALSE(spec.filesystems[0].read_only);
  EXPECT_EQ(spec.filesystems[1].tag, "etc-config");
  EXPECT_EQ(spec.filesystems[1].driver, runtime::FsDriver::k9p);
  EXPECT_TRUE(spec.filesystems[1].read_only);
  EXPECT_TRUE(spec.disks.empty());
}

TEST_F(AddVolumesTest, BlockDevicesBecomeUncachedRawDisksWithSerials) {
  std::string node = (dir_ / "blk").string();
  if (::mknod(node.c_str(), S_IFBLK | 0600, makedev(7, 201)) != 0) {
    FAIL() << "mknod of a block device failed (unit tests run as root): " << std::strerror(errno);
  }
  sandbox::ContainerRecord c;
  c.devices.push_back({"/dev/xvdb", node, "rwm"});
  c.devices.push_back({"/dev/xvdc", node, "r"});
  runtime::VmSpec spec;
  ASSERT_TRUE(AddVolumesToVmSpec(c, VolumeOptions{}, &spec).ok());
  ASSERT_EQ(spec.disks.size(), 2u);
  const runtime::DiskSpec& d = spec.disks[0];
  EXPECT_EQ(d.path, node);
  EXPECT_EQ(d.format, "raw");
  EXPECT_TRUE(d.block_device);
  EXPECT_EQ(d.cache, "none");
  EXPECT_EQ(d.io, "native");
  EXPECT_EQ(d.serial, "xvdb");
  EXPECT_FALSE(d.read_only);
  EXPECT_TRUE(spec.disks[1].read_only) << "no 'w' in permissions";
}

TEST_F(AddVolumesTest, HostPathThatChangedTypeIsFailedPrecondition) {
  std::ofstream(dir_ / "file") << "x";
  sandbox::ContainerRecord c;
  c.id = "c1";
  c.devices.push_back({"/dev/xvdb", (dir_ / "file").string(), "rwm"});
  runtime::VmSpec spec;
  absl::Status s = AddVolumesToVmSpec(c, VolumeOptions{}, &spec);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("devices[0].host_path"));

  c.devices.clear();
  c.mounts.push_back({"/data", (dir_ / "gone").string(), false});
  s = AddVolumesToVmSpec(c, VolumeOptions{}, &spec);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("mounts[0].host_path"));
}

// CreateContainer resolves every symlink once and records the canonical
// path; between it and StartContainer, an intermediate directory is swapped
// for a symlink to somewhere else (or for another real directory). The VM
// must not get the swapped-in target.
TEST_F(AddVolumesTest, AnIntermediateDirectorySwappedAfterCreateIsNotUsed) {
  fs::create_directories(dir_ / "pods" / "vol" / "data");
  fs::create_directories(dir_ / "elsewhere" / "data");
  std::ofstream(dir_ / "elsewhere" / "data" / "secret") << "not for this Pod";
  pb::ContainerConfig config;
  pb::Mount* m = config.add_mounts();
  m->set_container_path("/data");
  m->set_host_path((dir_ / "pods" / "vol" / "data").string());
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(config);
  ASSERT_TRUE(plan.ok()) << plan.status();
  sandbox::ContainerRecord c;
  c.id = "c1";
  c.mounts = plan->mounts;
  ASSERT_EQ(c.mounts.size(), 1u);
  EXPECT_NE(c.mounts[0].host_ino, 0u) << "the inode CreateContainer checked is recorded";
  runtime::VmSpec before;
  ASSERT_TRUE(AddVolumesToVmSpec(c, VolumeOptions{"/bin/true"}, &before).ok());

  // "vol" becomes a symlink to "elsewhere": the recorded path now leads there.
  fs::rename(dir_ / "pods" / "vol", dir_ / "pods" / "vol.orig");
  fs::create_directory_symlink(dir_ / "elsewhere", dir_ / "pods" / "vol");
  ASSERT_TRUE(fs::exists(fs::path(c.mounts[0].host_path) / "secret"));
  runtime::VmSpec spec;
  absl::Status s = AddVolumesToVmSpec(c, VolumeOptions{"/bin/true"}, &spec);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("mounts[0].host_path"));
  EXPECT_THAT(s.message(), HasSubstr("symlink"));
  EXPECT_TRUE(spec.filesystems.empty());
  EXPECT_FALSE(VerifyVolumesUnchanged(c).ok());

  // A real directory in its place is refused too: not the inode checked.
  fs::remove(dir_ / "pods" / "vol");
  fs::rename(dir_ / "elsewhere", dir_ / "pods" / "vol");
  s = AddVolumesToVmSpec(c, VolumeOptions{"/bin/true"}, &spec);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("no longer the directory or file CreateContainer checked"));
  EXPECT_TRUE(spec.filesystems.empty());

  // The original back in place is fine again.
  fs::rename(dir_ / "pods" / "vol", dir_ / "elsewhere");
  fs::rename(dir_ / "pods" / "vol.orig", dir_ / "pods" / "vol");
  EXPECT_TRUE(AddVolumesToVmSpec(c, VolumeOptions{"/bin/true"}, &spec).ok());
}

// A block device path whose node now names another device is refused.
TEST_F(AddVolumesTest, ABlockDeviceReplacedByAnotherDeviceIsNotUsed) {
  std::string node = (dir_ / "blk").string();
  ASSERT_EQ(::mknod(node.c_str(), S_IFBLK | 0600, makedev(7, 202)), 0) << "mknod needs root";
  sandbox::ContainerRecord c;
  c.id = "c1";
  c.devices.push_back({"/dev/xvdb", node, "rwm", static_cast<uint64_t>(makedev(7, 202))});
  runtime::VmSpec spec;
  ASSERT_TRUE(AddVolumesToVmSpec(c, VolumeOptions{}, &spec).ok());
  fs::remove(node);
  ASSERT_EQ(::mknod(node.c_str(), S_IFBLK | 0600, makedev(7, 203)), 0);
  runtime::VmSpec again;
  absl::Status s = AddVolumesToVmSpec(c, VolumeOptions{}, &again);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(again.disks.empty());
}

}  // namespace
}  // namespace kvcri::cri
