// runtime/cgroup/cgroup_fs on this host's real cgroup tree (v1 hybrid here, v2 where the host has it): create, join, read, remove.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/cgroup/cgroup_fs.h"
#include "test/client/test_daemon.h"

namespace kvcri::runtime::cgroup {
namespace {

TEST(CgroupHostTest, AProcessJoinsACreatedCgroupIsAccountedThereAndTheCgroupIsRemovedAfterIt) {
  kvcri::testing::RequireIntegrationEnvironment(false);
  absl::StatusOr<CgroupLayout> layout = CgroupLayout::Detect();
  ASSERT_TRUE(layout.ok()) << layout.status();
  const std::string rel = absl::StrCat("/kvcri-cgroup-host-test-", ::getpid());
  ASSERT_TRUE(CreateCgroup(*layout, rel).ok());

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Once moved (the parent joins it within 100 ms), touches 32 MiB, which
    // the new cgroup is charged for, then waits.
    ::usleep(100 * 1000);
    std::vector<char> touch(32 << 20, 1);
    ::pause();
    ::_exit(touch[0]);
  }
  absl::Status joined = JoinCgroup(*layout, rel, child);
  EXPECT_TRUE(joined.ok()) << joined;
  absl::StatusOr<std::vector<pid_t>> procs = CgroupProcs(*layout, rel);
  ASSERT_TRUE(procs.ok()) << procs.status();
  EXPECT_THAT(*procs, ::testing::Contains(child));
  ::usleep(600 * 1000);
  absl::StatusOr<CgroupSample> s = ReadCgroupSample(*layout, rel);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GE(s->pids, 1u);
  EXPECT_GE(s->memory_usage_bytes, uint64_t{24} << 20);
  EXPECT_GE(s->memory_rss_bytes, uint64_t{24} << 20);
  EXPECT_GE(s->memory_working_set_bytes, uint64_t{24} << 20);
  EXPECT_GT(s->cpu_usage_ns, 0u);
  EXPECT_GT(s->page_faults, 0u);
  EXPECT_TRUE(absl::IsFailedPrecondition(RemoveCgroup(*layout, rel))) << "busy while the child is in it";

  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  absl::Status removed = RemoveCgroup(*layout, rel);
  EXPECT_TRUE(removed.ok()) << removed;
  for (const auto& dir : layout->DirsOf(rel)) EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
}

}  // namespace
}  // namespace kvcri::runtime::cgroup
