// The VM's console and agent sockets: short per-VM paths set at CreateContainer, passed to the VM, removed with it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "test/fakes/cri_harness.h"

namespace kvcri::cri {
namespace {

using ::testing::HasSubstr;
using CriVmSocketsTest = CriHarness;

TEST_F(CriVmSocketsTest, CreateContainerGivesTheVmShortSocketPathsInItsOwnDir) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  const fs::path vm_dir = config_.state_dir / "vm" / ctr.substr(0, 16);
  EXPECT_TRUE(fs::is_directory(vm_dir));
  // Only root may enter it: no other VM's uid can reach the sockets.
  EXPECT_EQ(fs::status(vm_dir).permissions(), fs::perms::owner_all);
  ASSERT_TRUE(Start(ctr).ok());
  runtime::VmSpec spec = hv_.SpecOf("kvcri-" + ctr);
  EXPECT_EQ(spec.console_socket, vm_dir / "console.sock");
  EXPECT_EQ(spec.agent_socket, vm_dir / "agent.sock");
  EXPECT_EQ(spec.console_log, config_.root / "containers" / ctr / "console.log");  // output still logged

  ASSERT_TRUE(RemoveCtr(ctr).ok());
  EXPECT_FALSE(fs::exists(vm_dir));
}

TEST_F(CriVmSocketsTest, RecoveredRecordKeepsItsSocketPaths) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  Restart();
  ASSERT_TRUE(Start(ctr).ok());
  EXPECT_EQ(hv_.SpecOf("kvcri-" + ctr).console_socket, config_.state_dir / "vm" / ctr.substr(0, 16) / "console.sock");
}

TEST_F(CriVmSocketsTest, StartRecreatesASocketDirLostWithTheStateDir) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  const fs::path vm_dir = config_.state_dir / "vm" / ctr.substr(0, 16);
  fs::remove_all(vm_dir);  // a host reboot emptied the tmpfs
  ASSERT_TRUE(Start(ctr).ok());
  EXPECT_TRUE(fs::is_directory(vm_dir));
  EXPECT_EQ(fs::status(vm_dir).permissions(), fs::perms::owner_all);
}

TEST_F(CriVmSocketsTest, StartUpRemovesSocketDirsNoRecordNames) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  const fs::path orphan = config_.state_dir / "vm" / "0123456789abcdef";
  fs::create_directories(orphan);
  Restart();
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_TRUE(fs::is_directory(config_.state_dir / "vm" / ctr.substr(0, 16)));
}

TEST_F(CriVmSocketsTest, OverlongStateDirFailsCreateContainerNamingIt) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  config_.state_dir = dir_ / std::string(90, 'r');
  grpc::Status s = CreateVm(pod, "example.com/vm:1", &ctr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("longer than a unix socket path may be (107)"));
  EXPECT_THAT(s.error_message(), HasSubstr("use a shorter state_dir"));
}

}  // namespace
}  // namespace kvcri::cri
