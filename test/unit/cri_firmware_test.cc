// CreateContainer's firmware choice with fakes: annotation over label, the VM's NVRAM copy, refusals that leave
// nothing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "runtime/firmware.h"
#include "test/fakes/cri_harness.h"

namespace kvcri::cri {
namespace {

using ::testing::HasSubstr;

class CriFirmwareTest : public CriHarness {
 protected:
  void SetUp() override {
    CriHarness::SetUp();
    // Stand-ins for OVMF: what matters is which file is copied where.
    config_.vm.uefi_code = dir_ / "ovmf" / "CODE.fd";
    config_.vm.uefi_vars = dir_ / "ovmf" / "VARS.fd";
    config_.vm.uefi_secure_code = dir_ / "ovmf" / "CODE.ms.fd";
    config_.vm.uefi_secure_vars = dir_ / "ovmf" / "VARS.ms.fd";
    fs::create_directories(dir_ / "ovmf");
    for (const char* f : {"CODE.fd", "VARS.fd", "CODE.ms.fd", "VARS.ms.fd"}) std::ofstream(dir_ / "ovmf" / f) << f;
    // A kernel image whose label asks for UEFI.
    runtime::image::ImageInfo labelled = images_.Resolve("example.com/vm:1").value();
    labelled.id = "sha256:" + std::string(64, '3');
    labelled.repo_tags = {"example.com/uefi-vm:1"};
    labelled.labels[std::string(runtime::kFirmwareLabel)] = "uefi";
    images_.Add("example.com/uefi-vm:1", labelled);
    labelled.id = "sha256:" + std::string(64, '4');
    labelled.repo_tags = {"example.com/typo-vm:1"};
    labelled.labels[std::string(runtime::kFirmwareLabel)] = "efi";
    images_.Add("example.com/typo-vm:1", labelled);
  }

  size_t ContainerDirs() {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(config_.root / "containers")) ++n;
    return n;
  }
};

TEST_F(CriFirmwareTest, WithoutAnnotationOrLabelTheVmIsBios) {
  std::string pod;
  const std::string ctr = RunningPodVm("plain", &pod);
  runtime::VmSpec spec = hv_.SpecOf("kvcri-" + ctr);
  EXPECT_EQ(spec.firmware, runtime::Firmware::kBios);
  EXPECT_TRUE(spec.uefi.nvram.empty());
  EXPECT_FALSE(spec.tpm);
  EXPECT_FALSE(fs::exists(config_.root / "containers" / ctr / "nvram.fd"));
}

TEST_F(CriFirmwareTest, TheLabelPicksUefiAndTheVmGetsItsOwnNvramRemovedWithIt) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("uefi", {}, &pod).ok());
  grpc::Status s = CreateVm(pod, "example.com/uefi-vm:1", &ctr);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(Start(ctr).ok());
  runtime::VmSpec spec = hv_.SpecOf("kvcri-" + ctr);
  const fs::path nvram = config_.root / "containers" / ctr / "nvram.fd";
  EXPECT_EQ(spec.firmware, runtime::Firmware::kUefi);
  EXPECT_EQ(spec.uefi.code, config_.vm.uefi_code);
  EXPECT_EQ(spec.uefi.vars_template, config_.vm.uefi_vars);
  EXPECT_EQ(spec.uefi.nvram, nvram);
  std::ifstream in(nvram);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "VARS.fd");
  struct stat st {};
  ASSERT_EQ(::stat(nvram.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, config_.security.vm_uid_first) << "the confined VM owns its variable store";
  ASSERT_TRUE(RemoveCtr(ctr).ok());
  EXPECT_FALSE(fs::exists(nvram));
}

TEST_F(CriFirmwareTest, ThePodAnnotationWinsOverTheLabel) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("bios", {{"kubevirt-cri.io/firmware", "bios"}}, &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/typo-vm:1", &ctr).ok());
  ASSERT_TRUE(Start(ctr).ok());
  EXPECT_EQ(hv_.SpecOf("kvcri-" + ctr).firmware, runtime::Firmware::kBios);
}

TEST_F(CriFirmwareTest, BadValuesAndImpossibleCombinationsCreateNothing) {
  struct Case {
    std::map<std::string, std::string> annotations;
    std::string image;
    grpc::StatusCode code;
    std::string names;
  };
  const std::vector<Case> cases = {
      {{{"kubevirt-cri.io/firmware", "UEFI"}},
       "example.com/vm:1",
       grpc::StatusCode::INVALID_ARGUMENT,
       "annotation kubevirt-cri.io/firmware is \"UEFI\""},
      {{}, "example.com/typo-vm:1", grpc::StatusCode::INVALID_ARGUMENT, "label io.kubevirt-cri.firmware \"efi\""},
      {{{"kubevirt-cri.io/firmware", "uefi-secure"}},
       "example.com/vm:1",
       grpc::StatusCode::INVALID_ARGUMENT,
       "is a kernel image"},
      {{{"kubevirt-cri.io/tpm", "1.2"}},
       "example.com/vm:1",
       grpc::StatusCode::INVALID_ARGUMENT,
       "annotation kubevirt-cri.io/tpm is \"1.2\""},
      {{{"kubevirt-cri.io/tpm", "2.0"}}, "example.com/vm:1", grpc::StatusCode::FAILED_PRECONDITION, "vm_uid_range"},
  };
  int i = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.names);
    std::string pod, ctr;
    ASSERT_TRUE(RunPod("bad" + std::to_string(i++), c.annotations, &pod).ok());
    grpc::Status s = CreateVm(pod, c.image, &ctr);
    EXPECT_EQ(s.error_code(), c.code) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.names));
  }
  EXPECT_EQ(ContainerDirs(), 0u);
}

TEST_F(CriFirmwareTest, AMissingOvmfFileIsFailedPreconditionNamingItsKey) {
  fs::remove(config_.vm.uefi_vars);
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("noovmf", {{"kubevirt-cri.io/firmware", "uefi"}}, &pod).ok());
  grpc::Status s = CreateVm(pod, "example.com/vm:1", &ctr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("vm.uefi_vars"));
  EXPECT_EQ(ContainerDirs(), 0u);
}

// A record naming a firmware this version does not know never boots as bios.
TEST_F(CriFirmwareTest, AnUnknownRecordedFirmwareFailsTheStart) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("future", {}, &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  ASSERT_TRUE(store_
                  ->UpdateContainer(ctr,
                                    [](sandbox::ContainerRecord& r) {
                                      r.boot.firmware = "uefi-measured";
                                      return absl::OkStatus();
                                    })
                  .ok());
  grpc::Status s = Start(ctr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("\"uefi-measured\""));
  EXPECT_FALSE(hv_.Has("kvcri-" + ctr));
}

}  // namespace
}  // namespace kvcri::cri
