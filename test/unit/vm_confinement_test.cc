// VM confinement: the uid range key, the host-id collision check, ACL grants, the domain's DAC label and 9p mode.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/config.h"
#include "runtime/domain_xml.h"
#include "runtime/libvirt_connection.h"
#include "runtime/vm_confinement.h"
#include "test/fakes/cri_harness.h"

namespace kvcri {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace fs = std::filesystem;

// A fresh directory under /tmp, removed with its contents.
struct Scratch {
  Scratch() {
    char tmpl[] = "/tmp/kvcri-confine-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  const fs::path& path() const { return dir; }
  fs::path dir;
};

TEST(VmUidRange, DefaultIsAboveLoginUsersAndBelowTwoToThe31) {
  config::Config c;
  EXPECT_TRUE(c.security.confined());
  EXPECT_EQ(c.security.vm_uid_first, 2000000000u);
  EXPECT_EQ(c.security.vm_uid_last, 2000065535u);
  absl::StatusOr<config::Config> parsed = config::ParseConfig("", "t");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->security.vm_uid_first, 2000000000u);
}

TEST(VmUidRange, ParsesARangeAndEmptyTurnsConfinementOff) {
  absl::StatusOr<config::Config> c = config::ParseConfig("[security]\nvm_uid_range = \"300000-300009\"\n", "t");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->security.vm_uid_first, 300000u);
  EXPECT_EQ(c->security.vm_uid_last, 300009u);
  c = config::ParseConfig("[security]\nvm_uid_range = \"\"\n", "t");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->security.confined());
}

TEST(VmUidRange, RefusesMalformedAndDangerousRanges) {
  for (const char* bad :
       {"100", "a-b", "300000-", "1000-70000", "300010-300000", "2147483000-2147483648", "300000 - 300010"}) {
    absl::StatusOr<config::Config> c =
        config::ParseConfig(std::string("[security]\nvm_uid_range = \"") + bad + "\"\n", "t");
    EXPECT_FALSE(c.ok()) << bad;
    if (!c.ok()) {
      EXPECT_THAT(c.status().message(), HasSubstr("security.vm_uid_range")) << bad;
    }
  }
  EXPECT_FALSE(config::ParseConfig("[security]\nuid_range = \"300000-300001\"\n", "t").ok()) << "unknown key";
}

TEST(VmUidRange, HostUsersGroupsAndForeignSubidsInTheRangeAreRefused) {
  EXPECT_TRUE(runtime::CheckVmUidRangeAgainst(300000, 300099, {"root:x:0:0::/root:/bin/sh", "alice:x:1000:1000"},
                                              {"kvm:x:108:"}, {"alice:100000:65536"})
                  .ok());
  absl::Status user = runtime::CheckVmUidRangeAgainst(300000, 300099, {"svc:x:300050:1"}, {}, {});
  EXPECT_TRUE(absl::IsFailedPrecondition(user));
  EXPECT_THAT(user.message(), HasSubstr("user \"svc\" (id 300050)"));
  EXPECT_THAT(runtime::CheckVmUidRangeAgainst(300000, 300099, {}, {"grp:x:300000:"}, {}).message(),
              HasSubstr("group \"grp\""));
  absl::Status sub = runtime::CheckVmUidRangeAgainst(300000, 300099, {}, {}, {"bob:299990:20"});
  EXPECT_THAT(sub.message(), HasSubstr("\"bob\" (299990-300009)"));
  // The reservation docs/security.md recommends is ours, not a collision.
  EXPECT_TRUE(runtime::CheckVmUidRangeAgainst(300000, 300099, {}, {}, {"kubevirt-cri:300000:100"}).ok());
}

TEST(AppArmor, DescribesAnAbsentModuleAndAnEnabledOne) {
  Scratch d;
  EXPECT_THAT(runtime::DescribeAppArmor(d.path()), HasSubstr("absent"));
  fs::create_directories(d.path() / "apparmor" / "parameters");
  std::ofstream(d.path() / "apparmor" / "parameters" / "enabled") << "Y\n";
  EXPECT_THAT(runtime::DescribeAppArmor(d.path()), HasSubstr("enabled on the host but not applied"));
}

TEST(EmbedQemuConf, TurnsOnQemusSeccompSandboxAndLeavesOwnershipToUs) {
  std::string conf = runtime::EmbedQemuConf();
  EXPECT_THAT(conf, HasSubstr("seccomp_sandbox = 1\n"));
  EXPECT_THAT(conf, HasSubstr("dynamic_ownership = 0\n"));
  // vTPMs (unconfined VMs only) reach their state below the 0700 root.
  EXPECT_THAT(conf, HasSubstr("swtpm_user = \"root\"\n"));
}

runtime::VmSpec ConfinedSpec() {
  runtime::VmSpec s;
  s.name = "kvcri-abc";
  s.container_id = "abc";
  s.pod_id = "pod";
  s.kernel = "/k/vmlinuz";
  s.uid = 2000000007;
  s.gid = 2000000007;
  return s;
}

TEST(DomainXmlConfinement, ConfinedVmGetsItsStaticDacLabelWithoutRelabelling) {
  absl::StatusOr<std::string> xml = runtime::BuildDomainXml(ConfinedSpec());
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<seclabel type='static' model='dac' relabel='no'>\n"
                              "    <label>+2000000007:+2000000007</label>\n  </seclabel>"));
  runtime::VmSpec root = ConfinedSpec();
  root.uid = root.gid = 0;
  xml = runtime::BuildDomainXml(root);
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, Not(HasSubstr("seclabel")));
  root.uid = 5;
  EXPECT_TRUE(absl::IsInvalidArgument(runtime::BuildDomainXml(root).status())) << "uid without gid";
}

TEST(DomainXmlConfinement, SharesAre9pSquashAndVirtiofsIsRefusedWhenConfined) {
  runtime::VmSpec s = ConfinedSpec();
  runtime::FilesystemSpec f;
  f.source_dir = "/srv/data";
  f.tag = "data";
  f.driver = runtime::FsDriver::k9p;
  s.filesystems.push_back(f);
  absl::StatusOr<std::string> xml = runtime::BuildDomainXml(s);
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<filesystem type='mount' accessmode='squash' multidevs='remap'>"));
  EXPECT_THAT(*xml, Not(HasSubstr("passthrough")));
  s.filesystems[0].driver = runtime::FsDriver::kVirtiofs;
  absl::Status refused = runtime::BuildDomainXml(s).status();
  EXPECT_TRUE(absl::IsInvalidArgument(refused));
  EXPECT_THAT(refused.message(), HasSubstr("virtiofsd would serve it as root"));
}

class AclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "ACL tests chown and set ACLs: run as root";
    file_ = d_.path() / "f";
    std::ofstream(file_) << "x";
    ASSERT_EQ(::chmod(file_.c_str(), 0640), 0);
  }
  mode_t Mode(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0);
    return st.st_mode & 07777;
  }
  Scratch d_;
  fs::path file_;
};

TEST_F(AclTest, EntriesOfTwoUidsAreIndependentAndRemovalRestoresTheMode) {
  ASSERT_TRUE(runtime::AddAclEntry(file_, 300001, runtime::Access::kRead).ok());
  ASSERT_TRUE(runtime::AddAclEntry(file_, 300002, runtime::Access::kReadWrite).ok());
  EXPECT_TRUE(runtime::HasAclEntry(file_, 300001));
  EXPECT_TRUE(runtime::HasAclEntry(file_, 300002));
  EXPECT_EQ(Mode(file_) & 070, 060u) << "mask = group r-- | r-- | rw-";
  ASSERT_TRUE(runtime::RemoveAclEntry(file_, 300002).ok());
  EXPECT_TRUE(runtime::HasAclEntry(file_, 300001)) << "the other VM keeps its entry (a PV shared by two Pods)";
  EXPECT_FALSE(runtime::HasAclEntry(file_, 300002));
  ASSERT_TRUE(runtime::RemoveAclEntry(file_, 300001).ok());
  EXPECT_EQ(Mode(file_), 0640u) << "no named entry left: the mode is as before";
  EXPECT_TRUE(runtime::RemoveAclEntry(file_, 300001).ok()) << "absent entry";
  EXPECT_TRUE(runtime::RemoveAclEntry(d_.path() / "gone", 300001).ok()) << "absent file";
}

TEST_F(AclTest, SymlinksAreNeverFollowed) {
  fs::create_symlink(file_, d_.path() / "link");
  EXPECT_FALSE(runtime::AddAclEntry(d_.path() / "link", 300001, runtime::Access::kRead).ok());
  EXPECT_FALSE(runtime::HasAclEntry(file_, 300001));
  EXPECT_FALSE(runtime::SetOwner(d_.path() / "link", 300001, 300001, 0600).ok());
}

TEST_F(AclTest, GrantOpensAncestorsOnlyWhereOthersCannotTraverse) {
  const fs::path closed = d_.path() / "closed", open = closed / "open", target = open / "disk";
  fs::create_directories(open);
  std::ofstream(target) << "disk";
  ASSERT_EQ(::chmod(d_.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(closed.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(open.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(target.c_str(), 0400), 0);
  runtime::VmFileAccess access;
  std::vector<std::string> granted;
  ASSERT_TRUE(access.Grant(target, 300003, runtime::Access::kRead, &granted).ok());
  EXPECT_THAT(granted, ::testing::ElementsAre(target.string(), closed.string()));
  EXPECT_TRUE(runtime::HasAclEntry(closed, 300003));
  EXPECT_FALSE(runtime::HasAclEntry(open, 300003)) << "others traverse it already";
  ASSERT_TRUE(access.Revoke({target.string(), open.string(), closed.string()}, 300003).ok());
  EXPECT_FALSE(runtime::HasAclEntry(closed, 300003));
  EXPECT_FALSE(runtime::HasAclEntry(target, 300003));
  EXPECT_EQ(Mode(closed), 0700u);
}

class ConfinedPodTest : public cri::CriHarness {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "confinement tests chown files: run as root";
    config_.security.vm_uid_range = "300100-300102";
    config_.security.vm_uid_first = 300100;
    config_.security.vm_uid_last = 300102;
    CriHarness::SetUp();
    // As the image store keeps its files: not readable by others.
    ASSERT_EQ(::chmod((dir_ / "images" / "vmlinuz").c_str(), 0400), 0);
  }
  struct stat Stat(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st;
  }
};

TEST_F(ConfinedPodTest, EachVmGetsItsOwnUidOwningOnlyItsFilesUntilRemoved) {
  std::string pod_a, pod_b, a, b;
  a = RunningPodVm("a", &pod_a);
  b = RunningPodVm("b", &pod_b);
  runtime::VmSpec spec_a = hv_.SpecOf("kvcri-" + a), spec_b = hv_.SpecOf("kvcri-" + b);
  EXPECT_GE(spec_a.uid, 300100u);
  EXPECT_LE(spec_a.uid, 300102u);
  EXPECT_NE(spec_a.uid, spec_b.uid);
  EXPECT_EQ(spec_a.gid, spec_a.uid);

  const fs::path dir = config_.root / "containers" / a;
  struct stat d = Stat(dir);
  EXPECT_EQ(d.st_uid, 0u);
  EXPECT_EQ(d.st_gid, spec_a.uid);
  EXPECT_EQ(d.st_mode & 07777, 0710u) << "the VM traverses its dir but cannot list or change it";
  struct stat console = Stat(dir / "console.log");
  EXPECT_EQ(console.st_uid, spec_a.uid);
  EXPECT_EQ(console.st_mode & 07777, 0600u);
  struct stat seed = Stat(dir / "cidata.img");
  EXPECT_EQ(seed.st_uid, 0u) << "the seed is read-only for the VM";
  EXPECT_EQ(seed.st_mode & 07777, 0440u);
  const fs::path kernel = dir_ / "images" / "vmlinuz";
  EXPECT_TRUE(runtime::HasAclEntry(kernel, spec_a.uid));
  EXPECT_TRUE(runtime::HasAclEntry(kernel, spec_b.uid));
  EXPECT_TRUE(runtime::HasAclEntry(dir_, spec_a.uid)) << "mkdtemp's 0700 dir: traversal granted";

  // The uid is in the record: a restarted daemon neither forgets nor reuses it.
  Restart();
  std::string pod_c, c;
  c = RunningPodVm("c", &pod_c);
  uint32_t uid_c = hv_.SpecOf("kvcri-" + c).uid;
  EXPECT_NE(uid_c, spec_a.uid);
  EXPECT_NE(uid_c, spec_b.uid);
  std::string pod_d, d_ctr;
  ASSERT_TRUE(RunPod("d", &pod_d).ok());
  grpc::Status full = CreateVm(pod_d, "example.com/vm:1", &d_ctr);
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << full.error_message();
  EXPECT_THAT(full.error_message(), HasSubstr("security.vm_uid_range \"300100-300102\""));

  ASSERT_TRUE(StopCtr(a, 0).ok());
  ASSERT_TRUE(RemoveCtr(a).ok());
  EXPECT_FALSE(runtime::HasAclEntry(kernel, spec_a.uid)) << "RemoveContainer takes the entry back";
  EXPECT_FALSE(runtime::HasAclEntry(dir_, spec_a.uid));
  EXPECT_TRUE(runtime::HasAclEntry(kernel, spec_b.uid)) << "the other VM keeps its own";
  EXPECT_TRUE(CreateVm(pod_d, "example.com/vm:1", &d_ctr).ok()) << "the removed VM's uid is free again";
}

TEST_F(ConfinedPodTest, EmptyRangeRunsQemuAsRoot) {
  config_.security.vm_uid_first = config_.security.vm_uid_last = 0;
  config_.security.vm_uid_range = "";
  Restart();
  std::string pod;
  std::string ctr = RunningPodVm("root", &pod);
  EXPECT_EQ(hv_.SpecOf("kvcri-" + ctr).uid, 0u);
}

}  // namespace
}  // namespace kvcri
