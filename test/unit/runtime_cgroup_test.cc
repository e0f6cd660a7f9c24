// runtime/cgroup/cgroup_fs: layout detection, paths, and accounting reads on scratch cgroup v1 and v2 trees.
#include "runtime/cgroup/cgroup_fs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

namespace kvcri::runtime::cgroup {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class CgroupFsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/kvcri-cgroup-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }
  void Write(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  // Every number of a sample but its timestamp.
  static void ExpectSample(const CgroupLayout& l, const std::string& rel, const CgroupSample& want) {
    absl::StatusOr<CgroupSample> s = ReadCgroupSample(l, rel);
    ASSERT_TRUE(s.ok()) << s.status();
    CgroupSample got = *s;
    got.timestamp = want.timestamp;
    auto fields = [](const CgroupSample& x) {
      return std::vector<uint64_t>{x.cpu_usage_ns, x.memory_usage_bytes, x.memory_working_set_bytes,
                                   x.memory_rss_bytes, x.page_faults, x.major_page_faults,
                                   x.memory_limit_bytes, x.oom_kills, x.pids};
    };
    EXPECT_EQ(fields(got), fields(want))
        << "cpu, usage, working set, rss, faults, major faults, limit, oom kills, pids";
  }
  fs::path root_;
};

TEST_F(CgroupFsTest, V1LayoutReadsEachControllersHierarchy) {
  for (const char* c : {"cpu", "cpuacct", "memory", "pids"}) fs::create_directories(root_ / c);
  absl::StatusOr<CgroupLayout> l = CgroupLayout::Detect(root_);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->version(), CgroupVersion::kV1);
  EXPECT_THAT(l->DirsOf("/kubepods/pod1"), ElementsAre(root_ / "cpu/kubepods/pod1", root_ / "cpuacct/kubepods/pod1",
                                                       root_ / "memory/kubepods/pod1", root_ / "pids/kubepods/pod1"));
  const std::string rel = "/kubepods/pod1";
  ASSERT_TRUE(CreateCgroup(*l, rel).ok());
  Write(root_ / "cpuacct/kubepods/pod1/cpuacct.usage", "123456789\n");
  Write(root_ / "memory/kubepods/pod1/memory.usage_in_bytes", "104857600\n");
  Write(root_ / "memory/kubepods/pod1/memory.stat",
        "cache 1\nrss 2\ntotal_cache 4096\ntotal_rss 52428800\ntotal_inactive_file 4194304\n"
        "total_pgfault 77\ntotal_pgmajfault 3\n");
  Write(root_ / "memory/kubepods/pod1/memory.limit_in_bytes", "9223372036854771712\n");
  Write(root_ / "memory/kubepods/pod1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  Write(root_ / "pids/kubepods/pod1/pids.current", "7\n");
  // v1's huge limit means none.
  ExpectSample(*l, rel, {.cpu_usage_ns = 123456789, .memory_usage_bytes = 104857600,
                         .memory_working_set_bytes = 104857600 - 4194304, .memory_rss_bytes = 52428800,
                         .page_faults = 77, .major_page_faults = 3, .memory_limit_bytes = 0, .oom_kills = 2, .pids = 7});

  Write(root_ / "memory/kubepods/pod1/cgroup.procs", "");
  for (const char* c : {"cpu", "cpuacct", "pids"}) Write(root_ / c / "kubepods/pod1/cgroup.procs", "");
  ASSERT_TRUE(JoinCgroup(*l, rel, 4242).ok());
  absl::StatusOr<std::vector<pid_t>> procs = CgroupProcs(*l, rel);
  ASSERT_TRUE(procs.ok()) << procs.status();
  EXPECT_THAT(*procs, ElementsAre(4242));
}

TEST_F(CgroupFsTest, V2LayoutReadsTheUnifiedFiles) {
  Write(root_ / "cgroup.controllers", "cpuset cpu io memory pids\n");
  absl::StatusOr<CgroupLayout> l = CgroupLayout::Detect(root_);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->version(), CgroupVersion::kV2);
  const std::string rel = "/kubepods.slice/kubepods-pod1.slice/kvcri-abc.scope";
  EXPECT_THAT(l->DirsOf(rel), ElementsAre(root_ / rel.substr(1)));
  const fs::path d = root_ / rel.substr(1);
  Write(d / "cpu.stat", "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n");
  Write(d / "memory.current", "209715200\n");
  Write(d / "memory.stat", "anon 157286400\nfile 10485760\ninactive_file 8388608\npgfault 1000\npgmajfault 10\n");
  Write(d / "memory.max", "max\n");
  Write(d / "memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n");
  Write(d / "pids.current", "12\n");
  // "max" is no limit.
  ExpectSample(*l, rel, {.cpu_usage_ns = 2500000, .memory_usage_bytes = 209715200,
                         .memory_working_set_bytes = 209715200 - 8388608, .memory_rss_bytes = 157286400,
                         .page_faults = 1000, .major_page_faults = 10, .memory_limit_bytes = 0, .oom_kills = 1, .pids = 12});
  Write(d / "memory.max", "402653184\n");
  absl::StatusOr<CgroupSample> s = ReadCgroupSample(*l, rel);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->memory_limit_bytes, 402653184u);
}

TEST_F(CgroupFsTest, AMissingCgroupIsNotFoundAndAHostWithoutAccountingIsRefused) {
  EXPECT_TRUE(absl::IsFailedPrecondition(CgroupLayout::Detect(root_).status()));
  Write(root_ / "cgroup.controllers", "memory\n");
  absl::StatusOr<CgroupLayout> l = CgroupLayout::Detect(root_);
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE(absl::IsNotFound(ReadCgroupSample(*l, "/nope").status()));
  EXPECT_TRUE(RemoveCgroup(*l, "/nope").ok()) << "already gone is done";
}

TEST_F(CgroupFsTest, AnOversizedCgroupFileIsAnErrorNotABuffer) {
  Write(root_ / "cgroup.controllers", "memory\n");
  absl::StatusOr<CgroupLayout> l = CgroupLayout::Detect(root_);
  ASSERT_TRUE(l.ok());
  Write(root_ / "x/cpu.stat", std::string(1 << 20, 'a'));
  absl::StatusOr<CgroupSample> s = ReadCgroupSample(*l, "/x");
  EXPECT_TRUE(absl::IsOutOfRange(s.status())) << s.status();
}

TEST(CgroupPaths, SystemdSlicesExpandAsSystemdDoes) {
  absl::StatusOr<std::string> p = ExpandSystemdSlice("kubepods-burstable-pod1234.slice");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice");
  EXPECT_EQ(*ExpandSystemdSlice("kubepods.slice"), "/kubepods.slice");
  EXPECT_EQ(*ExpandSystemdSlice("-.slice"), "/");
  for (const char* bad : {"kubepods", "a--b.slice", "-a.slice", "a-.slice", "a/b.slice", ".slice"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ExpandSystemdSlice(bad).status())) << bad;
  }
}

TEST(CgroupPaths, KubeletPathsAreNormalisedAndEscapesRefused) {
  EXPECT_EQ(*CleanCgroupPath("kubepods//burstable/pod1/"), "/kubepods/burstable/pod1");
  EXPECT_EQ(*CleanCgroupPath("/kubepods/besteffort/pod2"), "/kubepods/besteffort/pod2");
  for (const char* bad : {"/", "", "/kubepods/../etc", "/a/./b", "/a b", "/a\n"}) {
    absl::StatusOr<std::string> p = CleanCgroupPath(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << bad;
  }
  EXPECT_THAT(std::string(CleanCgroupPath("/a/../b").status().message()), HasSubstr("\"..\""));
}

}  // namespace
}  // namespace kvcri::runtime::cgroup
