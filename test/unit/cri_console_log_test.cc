// cri/ and the CRI log: a symlink planted at the container's log path is refused at StartContainer, not followed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "test/fakes/cri_harness.h"

namespace kvcri::cri {
namespace {

using CriConsoleLogTest = CriHarness;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

TEST_F(CriConsoleLogTest, StartContainerRefusesASymlinkPlantedAtTheLogPath) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  const fs::path victim = dir_ / "victim";
  std::ofstream(victim) << "precious\n";
  fs::create_directories(dir_ / "logs" / "web");
  fs::create_symlink(victim, dir_ / "logs" / "web" / "vm.log");  // the harness's log_path
  grpc::Status s = Start(ctr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("symlink"));
  EXPECT_FALSE(hv_.Has("kvcri-" + ctr)) << "the VM started with its log pointing elsewhere";
  EXPECT_EQ(Slurp(victim), "precious\n");
}

TEST_F(CriConsoleLogTest, StartContainerCreatesTheLogWithoutFollowingAndCopiesTheConsole) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  ASSERT_TRUE(Start(ctr).ok());
  EXPECT_TRUE(fs::is_regular_file(dir_ / "logs" / "web" / "vm.log"));
  EXPECT_FALSE(fs::is_symlink(dir_ / "logs" / "web" / "vm.log"));
}

// QEMU logs left by versions that kept them: removed at start-up when no
// record and no domain has them; a running container's log stays.
TEST_F(CriConsoleLogTest, RecoveryRemovesQemuLogsOfContainersWithoutARecord) {
  hv_.log_dir = dir_ / "qemu-logs";
  fs::create_directories(hv_.log_dir);
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  ASSERT_TRUE(Start(ctr).ok());
  const fs::path live = hv_.DomainLogPath("kvcri-" + ctr);
  const fs::path orphan = hv_.DomainLogPath("kvcri-" + std::string(64, 'e'));
  const fs::path other = hv_.log_dir / "someone-else.log";
  for (const fs::path& p : {live, orphan, other}) std::ofstream(p) << "qemu says\n";
  Restart();
  EXPECT_TRUE(fs::exists(live));
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_TRUE(fs::exists(other));
}

}  // namespace
}  // namespace kvcri::cri
