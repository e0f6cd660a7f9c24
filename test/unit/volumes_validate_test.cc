// ValidateVolumes: what CreateContainer accepts of CRI devices and mounts,
// and the errors (code + field) for what it refuses.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cri/validate_volumes.h"
#include "cri/volumes.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::cri {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class VolumesValidateTest : public kvcri::testing::ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
  }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  std::string MakeDir(const std::string& name) {
    fs::create_directories(dir_ / name);
    return Path(name);
  }
  std::string MakeFile(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name) << content;
    return Path(name);
  }
  // A block device node (major 7 = loop), made with mknod: needs root.
  std::string MakeBlockNode(const std::string& name) {
    std::string p = Path(name);
    if (::mknod(p.c_str(), S_IFBLK | 0600, makedev(7, 200)) != 0) return "";
    return p;
  }

  pb::Mount* AddMount(pb::ContainerConfig& c, const std::string& container, const std::string& host,
                      bool ro = false) {
    pb::Mount* m = c.add_mounts();
    m->set_container_path(container);
    m->set_host_path(host);
    m->set_readonly(ro);
    return m;
  }
  pb::Device* AddDevice(pb::ContainerConfig& c, const std::string& container, const std::string& host,
                        const std::string& perms = "rwm") {
    pb::Device* d = c.add_devices();
    d->set_container_path(container);
    d->set_host_path(host);
    d->set_permissions(perms);
    return d;
  }

};

TEST_F(VolumesValidateTest, NoVolumesIsAnEmptyPlan) {
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(pb::ContainerConfig());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->devices.empty());
  EXPECT_TRUE(plan->mounts.empty());
  EXPECT_TRUE(VolumeSeedFiles(*plan).empty());
}

TEST_F(VolumesValidateTest, AcceptsDirectoryMountWithCanonicalHostPath) {
  std::string data = MakeDir("real/data");
  fs::create_directory_symlink(dir_ / "real", dir_ / "link");  // an intermediate symlink is resolved
  pb::ContainerConfig c;
  AddMount(c, "/data", Path("link/data"), true);
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->mounts.size(), 1u);
  EXPECT_EQ(plan->mounts[0].host_path, data);
  EXPECT_EQ(plan->mounts[0].container_path, "/data");
  EXPECT_TRUE(plan->mounts[0].readonly);
  EXPECT_TRUE(plan->files.empty());
}

TEST_F(VolumesValidateTest, RefusesSymlinkedMountHostPath) {
  MakeDir("real");
  fs::create_directory_symlink(dir_ / "real", dir_ / "link");
  pb::ContainerConfig c;
  AddMount(c, "/ok", MakeDir("ok"));
  AddMount(c, "/data", Path("link"));
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("config.mounts[1].host_path"));
  EXPECT_THAT(plan.status().message(), HasSubstr("symlink"));
}

TEST_F(VolumesValidateTest, MissingMountHostPathIsNotFound) {
  pb::ContainerConfig c;
  AddMount(c, "/ok", MakeDir("ok"));
  AddMount(c, "/data", Path("missing"));
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(plan.status().message(), HasSubstr("config.mounts[1].host_path"));
  EXPECT_THAT(plan.status().message(), HasSubstr("does not exist"));
}

TEST_F(VolumesValidateTest, RefusesDeviceThatIsARegularFile) {
  pb::ContainerConfig c;
  AddDevice(c, "/dev/xvda", MakeFile("disk.img", "x"));
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("config.devices[0].host_path"));
  EXPECT_THAT(plan.status().message(), HasSubstr("not a block device"));
}

TEST_F(VolumesValidateTest, RefusesCharacterDevice) {
  pb::ContainerConfig c;
  AddDevice(c, "/dev/null2", "/dev/null");
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("a character device"));
}

TEST_F(VolumesValidateTest, AcceptsBlockDeviceAndFollowsItsSymlink) {
  std::string node = MakeBlockNode("blk");
  if (node.empty()) FAIL() << "mknod of a block device failed (unit tests run as root)";
  fs::create_symlink(dir_ / "blk", dir_ / "blk-link");  // as kubelet hands CSI block volumes
  // Another device: one device twice is refused (boot_device_test.cc).
  std::string other = Path("blk2");
  ASSERT_EQ(::mknod(other.c_str(), S_IFBLK | 0600, makedev(7, 201)), 0);
  pb::ContainerConfig c;
  AddDevice(c, "/dev/xvdb", Path("blk-link"), "r");
  AddDevice(c, "/dev/xvdc", other, "");
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->devices.size(), 2u);
  EXPECT_EQ(plan->devices[0].host_path, node);
  EXPECT_EQ(plan->devices[0].permissions, "r");
  EXPECT_EQ(plan->devices[1].permissions, "rwm") << "empty permissions mean rwm, as in runc";
}

TEST_F(VolumesValidateTest, RefusesUnknownDevicePermissions) {
  pb::ContainerConfig c;
  AddDevice(c, "/dev/xvdb", "/dev/null", "rwx");
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("config.devices[0].permissions"));
}

TEST_F(VolumesValidateTest, SingleFileMountIsReadForTheSeed) {
  std::string hosts = MakeFile("etc-hosts", "127.0.0.1 localhost\n");
  pb::ContainerConfig c;
  AddMount(c, "/etc/hosts", hosts);
  AddMount(c, "/dev/termination-log", MakeFile("term", ""));
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->files.size(), 2u);
  EXPECT_EQ(plan->files[0].container_path, "/etc/hosts");
  EXPECT_EQ(plan->files[0].content, "127.0.0.1 localhost\n");
  EXPECT_EQ(plan->files[1].content, "");
  EXPECT_EQ(plan->mounts.size(), 2u);
}

TEST_F(VolumesValidateTest, RefusesOversizedFileMount) {
  std::string big = MakeFile("big", std::string(kMaxFileMountBytes + 1, 'x'));
  pb::ContainerConfig c;
  AddMount(c, "/big", big);
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("config.mounts[0].host_path"));
}

TEST_F(VolumesValidateTest, RefusesFifoMount) {
  std::string p = Path("fifo");
  ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
  pb::ContainerConfig c;
  AddMount(c, "/fifo", p);
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("a FIFO"));
}

TEST_F(VolumesValidateTest, RefusesNonPrivatePropagation) {
  for (pb::MountPropagation p : {pb::PROPAGATION_HOST_TO_CONTAINER, pb::PROPAGATION_BIDIRECTIONAL}) {
    pb::ContainerConfig c;
    AddMount(c, "/data", MakeDir("d"))->set_propagation(p);
    absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
    EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(plan.status().message(), HasSubstr("config.mounts[0].propagation"));
  }
}

TEST_F(VolumesValidateTest, RefusesIdMappedMounts) {
  pb::ContainerConfig c;
  pb::Mount* m = AddMount(c, "/data", MakeDir("d"));
  m->add_uidmappings()->set_length(1);
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("config.mounts[0].uidMappings"));
}

TEST_F(VolumesValidateTest, RefusesBadContainerPaths) {
  std::string d = MakeDir("d");
  for (const char* bad : {"", "data", "/", "/a/../b", "/a//b", "/a/", "/a\nb"}) {
    pb::ContainerConfig c;
    AddMount(c, bad, d);
    absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
    EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(plan.status().message(), HasSubstr("config.mounts[0].container_path")) << bad;
  }
}

TEST_F(VolumesValidateTest, RefusesNonNormalizedOrRelativeHostPath) {
  MakeDir("d");
  for (const std::string& bad : {Path("d/../d"), std::string("relative/dir")}) {
    pb::ContainerConfig c;
    AddMount(c, "/data", bad);
    absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
    EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(plan.status().message(), HasSubstr("config.mounts[0].host_path")) << bad;
  }
}

TEST_F(VolumesValidateTest, RefusesTheSameContainerPathTwice) {
  pb::ContainerConfig c;
  AddMount(c, "/data", MakeDir("a"));
  AddMount(c, "/data", MakeDir("b"));
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("config.mounts[1].container_path"));
}

TEST_F(VolumesValidateTest, RefusesMoreVolumesThanPciSlots) {
  pb::ContainerConfig c;
  for (size_t i = 0; i <= kMaxVolumes; ++i) {
    AddMount(c, "/d" + std::to_string(i), MakeDir("d" + std::to_string(i)));
  }
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("at most"));
}

}  // namespace
}  // namespace kvcri::cri
