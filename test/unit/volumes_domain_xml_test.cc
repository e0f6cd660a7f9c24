// The volume parts of the domain XML: block-device disks with cache/io
// modes, virtio-fs and 9p filesystems, shared memory for vhost-user.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime/domain_xml.h"

namespace kvcri::runtime {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

VmSpec Base() {
  VmSpec s;
  s.name = "kvcri-abc";
  s.container_id = "abc";
  s.kernel = "/k/vmlinuz";
  s.accel = config::Accelerator::kTcg;
  return s;
}

FilesystemSpec Virtiofs(const std::string& tag) {
  FilesystemSpec f;
  f.source_dir = "/srv/" + tag;
  f.tag = tag;
  f.driver = FsDriver::kVirtiofs;
  f.virtiofsd = "/usr/lib/qemu/virtiofsd";
  return f;
}

TEST(VolumesDomainXml, BlockDeviceDiskHasCacheIoSerialAndReadonly) {
  VmSpec s = Base();
  DiskSpec d{"/dev/loop3", "raw", true, "xvdb", false, true};
  d.cache = "none";
  d.io = "native";
  s.disks.push_back(d);
  absl::StatusOr<std::string> xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<disk type='block' device='disk'>"));
  EXPECT_THAT(
      *xml,
      HasSubstr("<driver name='qemu' type='raw' cache='none' io='native' discard='unmap' error_policy='enospace'/>"));
  EXPECT_THAT(*xml, HasSubstr("<source dev='/dev/loop3'/>"));
  EXPECT_THAT(*xml, HasSubstr("<serial>xvdb</serial>"));
  EXPECT_THAT(*xml, HasSubstr("<readonly/>"));
}

TEST(VolumesDomainXml, VirtiofsSharesMemoryAndSandboxesVirtiofsd) {
  VmSpec s = Base();
  s.filesystems.push_back(Virtiofs("data"));
  absl::StatusOr<std::string> xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<memoryBacking>"));
  EXPECT_THAT(*xml, HasSubstr("<source type='memfd'/>"));
  EXPECT_THAT(*xml, HasSubstr("<access mode='shared'/>"));
  EXPECT_THAT(*xml, HasSubstr("<filesystem type='mount' accessmode='passthrough'>"));
  EXPECT_THAT(*xml, HasSubstr("<driver type='virtiofs' queue='1024'/>"));
  EXPECT_THAT(*xml, HasSubstr("<binary path='/usr/lib/qemu/virtiofsd' xattr='off'>"));
  EXPECT_THAT(*xml, HasSubstr("<sandbox mode='namespace'/>"));
  EXPECT_THAT(*xml, HasSubstr("<source dir='/srv/data'/>"));
  EXPECT_THAT(*xml, HasSubstr("<target dir='data'/>"));
}

TEST(VolumesDomainXml, ReadOnly9pNeedsNoSharedMemory) {
  VmSpec s = Base();
  FilesystemSpec f;
  f.source_dir = "/srv/config";
  f.tag = "etc-config";
  f.read_only = true;
  f.driver = FsDriver::k9p;
  s.filesystems.push_back(f);
  absl::StatusOr<std::string> xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, Not(HasSubstr("memoryBacking")));
  EXPECT_THAT(*xml, HasSubstr("<filesystem type='mount' accessmode='squash' multidevs='remap'>"));
  EXPECT_THAT(*xml, HasSubstr("<driver type='path'/>"));
  EXPECT_THAT(*xml, HasSubstr("<target dir='etc-config'/>"));
  EXPECT_THAT(*xml, HasSubstr("<readonly/>"));
}

TEST(VolumesDomainXml, NoFilesystemsNoMemoryBacking) {
  absl::StatusOr<std::string> xml = BuildDomainXml(Base());
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, Not(HasSubstr("memoryBacking")));
  EXPECT_THAT(*xml, Not(HasSubstr("<filesystem")));
}

TEST(VolumesDomainXml, RefusesBadFilesystems) {
  auto refused = [](FilesystemSpec f, const std::string& why) {
    VmSpec s = Base();
    s.filesystems.push_back(std::move(f));
    absl::StatusOr<std::string> xml = BuildDomainXml(s);
    EXPECT_EQ(xml.status().code(), absl::StatusCode::kInvalidArgument) << why;
    EXPECT_THAT(xml.status().message(), HasSubstr("filesystems[0]")) << why;
  };
  FilesystemSpec f = Virtiofs("data");
  f.read_only = true;
  refused(f, "read-only virtiofs");
  refused(Virtiofs(std::string(kMaxMountTagLength + 1, 'a')), "tag too long");
  refused(Virtiofs("a/b"), "slash in tag");
  refused(Virtiofs(""), "empty tag");
  f = Virtiofs("data");
  f.source_dir = "relative";
  refused(f, "relative source");

  VmSpec s = Base();
  s.filesystems.push_back(Virtiofs("data"));
  s.filesystems.push_back(Virtiofs("data"));
  absl::StatusOr<std::string> xml = BuildDomainXml(s);
  EXPECT_EQ(xml.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(xml.status().message(), HasSubstr("repeats"));
}

TEST(VolumesDomainXml, RefusesBadDiskModesAndLongSerials) {
  auto refused = [](DiskSpec d, const std::string& why) {
    VmSpec s = Base();
    s.disks.push_back(std::move(d));
    EXPECT_EQ(BuildDomainXml(s).status().code(), absl::StatusCode::kInvalidArgument) << why;
  };
  DiskSpec d{"/dev/loop3", "raw", false, "xvdb", false, true};
  DiskSpec bad = d;
  bad.io = "native";  // needs cache none
  refused(bad, "native aio with host cache");
  bad = d;
  bad.cache = "sometimes";
  refused(bad, "unknown cache");
  bad = d;
  bad.serial = std::string(kMaxDiskSerialLength + 1, 's');
  refused(bad, "serial over 20 bytes");
}

}  // namespace
}  // namespace kvcri::runtime
