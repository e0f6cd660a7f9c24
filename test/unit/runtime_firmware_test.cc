// Firmware: domain XML of bios, uefi and uefi-secure VMs and of a vTPM; annotation and label choice; NVRAM copies.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "config/base/file_util.h"
#include "runtime/domain_xml.h"
#include "runtime/firmware.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::runtime {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

VmSpec DiskVm() {
  VmSpec s;
  s.name = "kvcri-abc";
  s.container_id = "abc";
  s.memory_mib = 256;
  s.console_log = "/var/lib/kvcri/containers/abc/console.log";
  s.disks.push_back(DiskSpec{"/var/lib/kvcri/containers/abc/disk.qcow2", "qcow2", false, "", true, false});
  return s;
}

VmSpec UefiVm(Firmware f) {
  VmSpec s = DiskVm();
  s.firmware = f;
  s.uefi = UefiFilesFor(f, config::VmConfig{}, "/var/lib/kvcri/containers/abc/nvram.fd");
  return s;
}

TEST(FirmwareDomainXml, BiosIsSeaBiosOnI440fxWithoutLoaderOrSmm) {
  auto xml = BuildDomainXml(DiskVm());
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<type arch='x86_64' machine='pc'>hvm</type>"));
  for (const char* absent : {"q35", "<loader", "<nvram", "<smm", "<tpm", "firmware="}) {
    EXPECT_THAT(*xml, Not(HasSubstr(absent))) << absent;
  }
}

TEST(FirmwareDomainXml, UefiIsOvmfOnQ35WithTheVmsOwnNvram) {
  auto xml = BuildDomainXml(UefiVm(Firmware::kUefi));
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<type arch='x86_64' machine='q35'>hvm</type>"));
  EXPECT_THAT(*xml,
              HasSubstr("<loader readonly='yes' secure='no' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>"));
  EXPECT_THAT(*xml, HasSubstr("<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>"
                              "/var/lib/kvcri/containers/abc/nvram.fd</nvram>"));
  EXPECT_THAT(*xml, Not(HasSubstr("<smm")));
  // Nothing pins a PCI address: libvirt lays the devices out on pcie-root-ports.
  EXPECT_THAT(*xml, Not(HasSubstr("<address")));
  EXPECT_THAT(*xml, HasSubstr("<boot order='1'/>"));
}

// A persistent VM's store on a device: no template for libvirt to copy over
// it, the node LibvirtHypervisor::Create made for QEMU as the source.
TEST(FirmwareDomainXml, AStoreOnADeviceIsABlockNvramWithoutTemplate) {
  VmSpec s = UefiVm(Firmware::kUefi);
  s.uefi.nvram = "/var/lib/kvcri/containers/abc/nvram.blk";
  s.uefi.nvram_is_device = true;
  auto xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<nvram type='block'>\n      <source dev='/var/lib/kvcri/containers/abc/nvram.blk'/>\n"
                              "    </nvram>"));
  EXPECT_THAT(*xml, Not(HasSubstr("template=")));
}

TEST(FirmwareDomainXml, SecureBootUsesTheSmmBuildWithMicrosoftKeys) {
  auto xml = BuildDomainXml(UefiVm(Firmware::kUefiSecure));
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("machine='q35'"));
  EXPECT_THAT(
      *xml, HasSubstr("<loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>"));
  EXPECT_THAT(*xml, HasSubstr("<nvram template='/usr/share/OVMF/OVMF_VARS_4M.ms.fd'>"));
  EXPECT_THAT(*xml, HasSubstr("<smm state='on'/>"));
}

TEST(FirmwareDomainXml, UefiWithADirectKernelBootKeepsTheKernel) {
  VmSpec s = UefiVm(Firmware::kUefi);
  s.disks.clear();
  s.kernel = "/k/vmlinuz";
  s.cmdline = "console=ttyS0";
  auto xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<kernel>/k/vmlinuz</kernel>"));
  EXPECT_THAT(*xml, HasSubstr("<loader "));
}

TEST(FirmwareDomainXml, TpmIsASwtpmCrb20) {
  VmSpec s = UefiVm(Firmware::kUefi);
  s.tpm = true;
  auto xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<tpm model='tpm-crb'>"));
  EXPECT_THAT(*xml, HasSubstr("<backend type='emulator' version='2.0'/>"));
  EXPECT_THAT(BuildDomainXml(UefiVm(Firmware::kUefi)).value(), Not(HasSubstr("<tpm")));
}

TEST(FirmwareDomainXml, RefusesInconsistentSpecs) {
  VmSpec s = UefiVm(Firmware::kUefi);
  s.uefi.nvram = "nvram.fd";
  auto xml = BuildDomainXml(s);
  EXPECT_TRUE(absl::IsInvalidArgument(xml.status()));
  EXPECT_THAT(xml.status().message(), HasSubstr("uefi.nvram \"nvram.fd\" is not absolute"));

  s = UefiVm(Firmware::kUefi);
  s.uefi.code.clear();
  EXPECT_THAT(BuildDomainXml(s).status().message(), HasSubstr("uefi.code"));

  s = DiskVm();
  s.uefi.code = "/usr/share/OVMF/OVMF_CODE_4M.fd";
  EXPECT_THAT(BuildDomainXml(s).status().message(), HasSubstr("UEFI files but firmware bios"));

  s = UefiVm(Firmware::kUefi);
  s.tpm = true;
  s.uid = s.gid = 2000000001;
  xml = BuildDomainXml(s);
  EXPECT_TRUE(absl::IsInvalidArgument(xml.status()));
  EXPECT_THAT(xml.status().message(), HasSubstr("TPM in a VM confined to uid 2000000001"));
}

TEST(ChooseFirmware, DefaultsToBios) {
  auto f = ChooseFirmware({}, {}, "img");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, Firmware::kBios);
}

TEST(ChooseFirmware, ImageLabelAppliesAndThePodAnnotationWins) {
  const std::map<std::string, std::string> labels = {{"io.kubevirt-cri.firmware", "uefi-secure"}};
  auto f = ChooseFirmware({}, labels, "img");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, Firmware::kUefiSecure);
  f = ChooseFirmware({{"kubevirt-cri.io/firmware", "bios"}}, labels, "img");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, Firmware::kBios);
  f = ChooseFirmware({{"kubevirt-cri.io/firmware", "uefi"}}, {}, "img");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, Firmware::kUefi);
}

TEST(ChooseFirmware, BadValuesNameTheAnnotationOrTheLabel) {
  auto f = ChooseFirmware({{"kubevirt-cri.io/firmware", "efi"}}, {}, "img");
  EXPECT_TRUE(absl::IsInvalidArgument(f.status()));
  EXPECT_THAT(f.status().message(), HasSubstr("annotation kubevirt-cri.io/firmware is \"efi\""));
  EXPECT_THAT(f.status().message(), HasSubstr("\"bios\", \"uefi\" or \"uefi-secure\""));

  f = ChooseFirmware({}, {{"io.kubevirt-cri.firmware", "UEFI"}}, "example.org/vm:1");
  EXPECT_TRUE(absl::IsInvalidArgument(f.status()));
  EXPECT_THAT(f.status().message(),
              HasSubstr("image \"example.org/vm:1\" has label io.kubevirt-cri.firmware \"UEFI\""));
  // A valid annotation makes a bad label irrelevant.
  EXPECT_TRUE(ChooseFirmware({{"kubevirt-cri.io/firmware", "bios"}}, {{"io.kubevirt-cri.firmware", "x"}}, "i").ok());
}

TEST(WantsTpm, OnlyVersion20IsAccepted) {
  auto t = WantsTpm({});
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(*t);
  t = WantsTpm({{"kubevirt-cri.io/tpm", "2.0"}});
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(*t);
  t = WantsTpm({{"kubevirt-cri.io/tpm", "true"}});
  EXPECT_TRUE(absl::IsInvalidArgument(t.status()));
  EXPECT_THAT(t.status().message(), HasSubstr("annotation kubevirt-cri.io/tpm is \"true\""));
}

TEST(FirmwareNames, RoundTrip) {
  for (Firmware f : {Firmware::kBios, Firmware::kUefi, Firmware::kUefiSecure}) {
    EXPECT_EQ(ParseFirmwareName(FirmwareName(f)), f);
  }
  EXPECT_EQ(ParseFirmwareName(""), std::nullopt);
}

class NvramTest : public testing::ScratchDirTest {};

TEST_F(NvramTest, CopiesTheTemplateIntoANewPrivateFile) {
  UefiSpec u;
  u.vars_template = dir_ / "VARS.fd";
  u.nvram = dir_ / "nvram.fd";
  const std::string vars(540672, '\x5a');
  ASSERT_TRUE(base::WriteFileAtomic(u.vars_template, vars, 0444).ok());
  ASSERT_TRUE(CopyNvramTemplate(u).ok());
  EXPECT_EQ(*base::ReadFile(u.nvram), vars);
  struct stat st;
  ASSERT_EQ(::stat(u.nvram.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  // Never over an existing file (a second create, or a planted one).
  absl::Status again = CopyNvramTemplate(u);
  EXPECT_TRUE(absl::IsAlreadyExists(again)) << again;
}

class NvramDeviceTest : public testing::ScratchDirTest {
 protected:
  void SetUp() override {
    testing::ScratchDirTest::SetUp();
    u_.vars_template = dir_ / "VARS.fd";
    u_.nvram = dir_ / "pv";  // a file stands in for the block volume
    u_.nvram_is_device = true;
    // Like OVMF's: a firmware volume header ("_FVH" at offset 40), 528 KiB.
    vars_.assign(540672, '\0');
    vars_.replace(40, 4, "_FVH");
    vars_[100] = 'T';
    ASSERT_TRUE(base::WriteFileAtomic(u_.vars_template, vars_, 0444).ok());
  }
  void Volume(size_t size) { ASSERT_TRUE(base::WriteFileAtomic(u_.nvram, std::string(size, '\0'), 0600).ok()); }
  std::string Contents() { return *base::ReadFile(u_.nvram); }

  UefiSpec u_;
  std::string vars_;
};

TEST_F(NvramDeviceTest, ANewVolumeGetsTheTemplateAndOurMarkOnceThenKeepsWhatTheFirmwareWrote) {
  Volume(1 << 20);
  bool initialised = false;
  ASSERT_TRUE(PrepareNvramDevice(u_, Firmware::kUefi, "annotation x", &initialised).ok());
  EXPECT_TRUE(initialised);
  std::string have = Contents();
  ASSERT_EQ(have.size(), 1u << 20);
  EXPECT_EQ(have.substr(0, vars_.size()), vars_);
  EXPECT_THAT(have.substr(vars_.size(), kNvramMarkBytes), ::testing::StartsWith("kvcri-nvram 1 firmware=uefi\n"));
  EXPECT_EQ(have.substr(vars_.size() + kNvramMarkBytes), std::string((1 << 20) - vars_.size() - kNvramMarkBytes, '\0'))
      << "nothing past the mark is touched";
  // The firmware writes a variable; the next Pod's VM finds it.
  have[1000] = 'V';
  ASSERT_TRUE(base::WriteFileAtomic(u_.nvram, have, 0600).ok());
  ASSERT_TRUE(PrepareNvramDevice(u_, Firmware::kUefi, "annotation x", &initialised).ok());
  EXPECT_FALSE(initialised);
  EXPECT_EQ(Contents(), have);
}

TEST_F(NvramDeviceTest, AStoreOfTheOtherFirmwareKindIsRefusedNamingBoth) {
  Volume(1 << 20);
  bool initialised = false;
  ASSERT_TRUE(PrepareNvramDevice(u_, Firmware::kUefiSecure, "annotation x", &initialised).ok());
  const std::string before = Contents();
  absl::Status s = PrepareNvramDevice(u_, Firmware::kUefi, "annotation x", &initialised);
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("annotation x"));
  EXPECT_THAT(s.message(), HasSubstr("initialised for firmware uefi-secure"));
  EXPECT_THAT(s.message(), HasSubstr("this VM boots uefi"));
  EXPECT_EQ(Contents(), before) << "a refused store is left as it was";
}

TEST_F(NvramDeviceTest, AStoreFromElsewhereIsKeptAndMarked) {
  std::string foreign = vars_;
  foreign[2000] = 'F';
  foreign.resize(1 << 20, '\0');
  ASSERT_TRUE(base::WriteFileAtomic(u_.nvram, foreign, 0600).ok());
  bool initialised = true;
  ASSERT_TRUE(PrepareNvramDevice(u_, Firmware::kUefi, "annotation x", &initialised).ok());
  EXPECT_FALSE(initialised);
  std::string have = Contents();
  EXPECT_EQ(have.substr(0, vars_.size()), foreign.substr(0, vars_.size()));
  EXPECT_THAT(have.substr(vars_.size(), 40), ::testing::StartsWith("kvcri-nvram 1 firmware=uefi\n"));
}

TEST_F(NvramDeviceTest, AVolumeTooSmallIsInvalidArgumentNamingTheField) {
  Volume(vars_.size());  // no room for the mark
  bool initialised = false;
  absl::Status s = PrepareNvramDevice(u_, Firmware::kUefi, "annotation kubevirt-cri.io/nvram-device", &initialised);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("annotation kubevirt-cri.io/nvram-device"));
  EXPECT_THAT(s.message(), HasSubstr("needs 541184"));
  EXPECT_EQ(Contents(), std::string(vars_.size(), '\0'));
}

TEST_F(NvramTest, MissingOvmfFilesAreAFailedPreconditionNamingTheKey) {
  config::VmConfig vm;
  vm.uefi_secure_code = dir_ / "nope.fd";
  UefiSpec u = UefiFilesFor(Firmware::kUefiSecure, vm, dir_ / "nvram.fd");
  absl::Status s = CheckUefiFiles(Firmware::kUefiSecure, u);
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("vm.uefi_secure_code"));
  EXPECT_THAT(s.message(), HasSubstr("ovmf"));
  EXPECT_TRUE(absl::IsNotFound(CopyNvramTemplate(UefiFilesFor(
      Firmware::kUefi,
      [&] {
        config::VmConfig v;
        v.uefi_vars = dir_ / "missing-vars.fd";
        return v;
      }(),
      dir_ / "n.fd"))));
}

TEST_F(NvramTest, SwtpmIsLookedUpInThePath) {
  absl::Status s = CheckSwtpmInstalled(dir_.string());
  EXPECT_TRUE(absl::IsFailedPrecondition(s));
  EXPECT_THAT(s.message(), HasSubstr("swtpm, swtpm_setup"));
  for (const char* tool : {"swtpm", "swtpm_setup"}) {
    ASSERT_TRUE(base::WriteFileAtomic(dir_ / tool, "#!/bin/sh\n", 0755).ok());
  }
  EXPECT_TRUE(CheckSwtpmInstalled("/nonexistent:" + dir_.string()).ok());
}

}  // namespace
}  // namespace kvcri::runtime
