// HostProbe and ChooseAccelerator over fake /dev, /sys and /proc trees.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "runtime/accelerator.h"

namespace kvcri::runtime {
namespace {

using config::Accelerator;
using ::testing::HasSubstr;

// A fake host root: dev/, sys/module/, proc/cpuinfo below a temp dir.
class FakeHost {
 public:
  FakeHost() {
    char tmpl[] = "/tmp/kvacc-XXXXXX";
    root_ = mkdtemp(tmpl);
    std::filesystem::create_directories(root_ / "dev");
    std::filesystem::create_directories(root_ / "sys/module/kvm");
    std::filesystem::create_directories(root_ / "proc");
  }
  ~FakeHost() { std::filesystem::remove_all(root_); }
  void KvmDevice() { std::ofstream(root_ / "dev/kvm") << ""; }
  void UnopenableKvmDevice() { std::filesystem::create_directories(root_ / "dev/kvm"); }  // EISDIR for O_RDWR
  void Module(const std::string& m) { std::filesystem::create_directories(root_ / "sys/module" / m); }
  void CpuFlags(const std::string& flags) {
    std::ofstream(root_ / "proc/cpuinfo") << "processor\t: 0\nflags\t\t: fpu " << flags << " sse2\n\nprocessor\t: 1\n";
  }
  HostProbe Probe() const { return HostProbe(root_); }

 private:
  std::filesystem::path root_;
};

TEST(HostProbe, ReadsDeviceModulesAndCpuFlags) {
  FakeHost h;
  h.KvmDevice();
  h.Module("kvm_amd");
  h.CpuFlags("svm lm");
  HostFacts f = h.Probe().Probe();
  EXPECT_TRUE(f.kvm_device_exists);
  EXPECT_TRUE(f.kvm_device_usable);
  EXPECT_TRUE(f.kvm_amd_loaded);
  EXPECT_FALSE(f.kvm_intel_loaded);
  EXPECT_FALSE(f.kvm_pvm_loaded);
  EXPECT_TRUE(f.cpu_svm);
  EXPECT_FALSE(f.cpu_vmx);
}

TEST(ChooseAccelerator, AutoPicksKvmWithKvmIntel) {
  FakeHost h;
  h.KvmDevice();
  h.Module("kvm_intel");
  h.CpuFlags("vmx");
  auto c = ChooseAccelerator(Accelerator::kAuto, h.Probe());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->accel, Accelerator::kKvm);
  EXPECT_THAT(c->reason, HasSubstr("kvm_intel"));
}

TEST(ChooseAccelerator, AutoPicksKvmWithKvmAmd) {
  FakeHost h;
  h.KvmDevice();
  h.Module("kvm_amd");
  auto c = ChooseAccelerator(Accelerator::kAuto, h.Probe());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->accel, Accelerator::kKvm);
  EXPECT_THAT(c->reason, HasSubstr("kvm_amd"));
}

TEST(ChooseAccelerator, AutoPicksTcgOnPvmHost) {
  FakeHost h;  // this development machine: /dev/kvm from kvm_pvm only
  h.KvmDevice();
  h.Module("kvm_pvm");
  h.CpuFlags("hypervisor");
  auto c = ChooseAccelerator(Accelerator::kAuto, h.Probe());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->accel, Accelerator::kTcg);
  EXPECT_THAT(c->reason, HasSubstr("/dev/kvm is provided by kvm_pvm (no kvm_intel or kvm_amd loaded); "
                                   "PVM cannot run ordinary guests"));
}

TEST(ChooseAccelerator, AutoPicksTcgWithoutKvmDevice) {
  FakeHost h;
  h.Module("kvm_intel");
  auto c = ChooseAccelerator(Accelerator::kAuto, h.Probe());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->accel, Accelerator::kTcg);
  EXPECT_THAT(c->reason, HasSubstr("/dev/kvm does not exist"));
}

TEST(ChooseAccelerator, AutoPicksTcgWhenKvmDeviceDoesNotOpen) {
  FakeHost h;
  h.UnopenableKvmDevice();
  h.Module("kvm_intel");
  auto c = ChooseAccelerator(Accelerator::kAuto, h.Probe());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->accel, Accelerator::kTcg);
  EXPECT_THAT(c->reason, HasSubstr("does not open read-write"));
}

TEST(ChooseAccelerator, AutoPicksTcgWithoutVendorModule) {
  FakeHost h;
  h.KvmDevice();
  h.CpuFlags("vmx");
  auto c = ChooseAccelerator(Accelerator::kAuto, h.Probe());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->accel, Accelerator::kTcg);
  EXPECT_THAT(c->reason, HasSubstr("no kvm_intel or kvm_amd module is loaded (the CPU has vmx)"));
}

TEST(ChooseAccelerator, AutoNamesMissingCpuSupport) {
  FakeHost h;
  h.KvmDevice();
  h.CpuFlags("sse4_2");
  auto c = ChooseAccelerator(Accelerator::kAuto, h.Probe());
  ASSERT_TRUE(c.ok());
  EXPECT_THAT(c->reason, HasSubstr("the CPU has no vmx or svm flag"));
}

TEST(ChooseAccelerator, ExplicitKvmFailsWhereUnusable) {
  FakeHost h;
  h.KvmDevice();
  h.Module("kvm_pvm");
  auto c = ChooseAccelerator(Accelerator::kKvm, h.Probe());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("kvm_pvm"));
}

TEST(ChooseAccelerator, ExplicitKvmWorksWhereUsable) {
  FakeHost h;
  h.KvmDevice();
  h.Module("kvm_intel");
  auto c = ChooseAccelerator(Accelerator::kKvm, h.Probe());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->accel, Accelerator::kKvm);
}

TEST(ChooseAccelerator, TcgAlwaysWorks) {
  FakeHost h;  // nothing at all
  auto c = ChooseAccelerator(Accelerator::kTcg, h.Probe());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->accel, Accelerator::kTcg);
}

TEST(ChooseAccelerator, NeverReturnsAuto) {
  for (Accelerator a : {Accelerator::kAuto, Accelerator::kTcg}) {
    auto c = ChooseAccelerator(a, HostFacts{});
    ASSERT_TRUE(c.ok());
    EXPECT_NE(c->accel, Accelerator::kAuto);
  }
}

}  // namespace
}  // namespace kvcri::runtime
