// VM Pods in their Pod's cgroup on this host's real cgroup v1 tree: QEMU and virtiofsd placed, memory billed, removed, kept across kill -9, OOM kills reported.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;

// The hierarchies our cgroupfs driver uses on v1 (cpu and cpuacct are one
// mount here, reached through either name).
const char* const kHierarchies[] = {"memory", "cpu", "cpuacct", "cpuset", "pids"};

fs::path V1Dir(const std::string& hierarchy, const std::string& rel) {
  return fs::path("/sys/fs/cgroup") / hierarchy / rel.substr(1);
}

// The cgroup of `pid` in `hierarchy` ("" when it has none there).
std::string CgroupOf(pid_t pid, const std::string& hierarchy) {
  std::istringstream in(ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    // "4:memory:/a/b", "3:cpu,cpuacct:/a/b"
    size_t c1 = line.find(':'), c2 = line.find(':', c1 + 1);
    if (c1 == std::string::npos || c2 == std::string::npos) continue;
    std::string controllers = "," + line.substr(c1 + 1, c2 - c1 - 1) + ",";
    if (controllers.find("," + hierarchy + ",") != std::string::npos) return line.substr(c2 + 1);
  }
  return "";
}

uint64_t ReadU64(const fs::path& p) {
  std::string text = ReadFileOrEmpty(p);
  return text.empty() ? 0 : std::stoull(text);
}

uint64_t RssBytes(pid_t pid) {
  std::istringstream in(ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // "VmRSS:  123 kB"
  }
  return 0;
}

// A Pod cgroup made the way kubelet makes one (a directory in every
// hierarchy), removed at the end.
class PodCgroup {
 public:
  explicit PodCgroup(const std::string& rel) : rel_(rel) {
    for (const char* h : kHierarchies) fs::create_directories(V1Dir(h, rel_));
    // v1 cpuset: a new cgroup has no CPUs until given its parent's.
    for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {
      fs::path parent = V1Dir("cpuset", rel_).parent_path();
      std::ofstream(parent / f) << ReadFileOrEmpty(fs::path("/sys/fs/cgroup/cpuset") / f);
      std::ofstream(V1Dir("cpuset", rel_) / f) << ReadFileOrEmpty(fs::path("/sys/fs/cgroup/cpuset") / f);
    }
  }
  ~PodCgroup() {
    for (const char* h : kHierarchies) {
      ::rmdir(V1Dir(h, rel_).c_str());
      ::rmdir(V1Dir(h, rel_).parent_path().c_str());
    }
  }
  const std::string& rel() const { return rel_; }

 private:
  std::string rel_;
};

TEST(VmCgroup, QemuAndVirtiofsdRunInTheContainersCgroupBelowThePodsAndLeaveWithIt) {
  RequireIntegrationEnvironment(true);
  TestDaemon::Options o;
  // Unconfined, so a directory share is virtio-fs with its own virtiofsd.
  o.extra_config = "[security]\nvm_uid_range = \"\"\n";
  TestDaemon d(o);
  d.Start();
  ImportGuestImages(d);
  PodCgroup pod_cg("/kvcri-itest-" + d.dir().filename().string() + "/podcg");
  TempDir t;
  const fs::path share = t.path() / "share";
  fs::create_directories(share);

  pb::PodSandboxConfig sb = SandboxConfig("cg", d.log_dir());
  sb.mutable_linux()->set_cgroup_parent(pod_cg.rel());
  pb::ContainerConfig c = VmContainerConfig("vm", kKernelImage);
  pb::Mount* m = c.add_mounts();
  m->set_container_path("/data");
  m->set_host_path(share.string());
  std::string pod, ctr;
  ASSERT_TRUE(StartPodWithConfigs(d, sb, c, &pod, &ctr)) << d.DaemonLog();
  const std::string cg = pod_cg.rel() + "/kvcri-" + ctr;

  const pid_t qemu = QemuPidOf("kvcri-" + ctr);
  ASSERT_GT(qemu, 0);
  const std::vector<int> virtiofsd = ProcessesMatching("source=" + share.string());
  ASSERT_FALSE(virtiofsd.empty()) << "no virtiofsd for the share";
  for (const char* h : kHierarchies) {
    EXPECT_EQ(CgroupOf(qemu, h), cg) << "QEMU in hierarchy " << h;
    // The one libvirt started and the sandboxed worker it forked.
    for (int pid : virtiofsd) EXPECT_EQ(CgroupOf(pid, h), cg) << "virtiofsd " << pid << " in hierarchy " << h;
  }
  // The record names it too (ContainerStatus verbose info is the record).
  EXPECT_THAT(GetContainerStatus(d, ctr).info().at("info"), ::testing::HasSubstr(cg));

  // The guest's memory is billed to the Pod: what QEMU touched after the
  // move (the guest's boot: most of its resident set). What it touched
  // while paused stays billed to the daemon's cgroup: this kernel refuses
  // memory.move_charge_at_immigrate, and v2 never moves charges. The OOM
  // test below shows the guest's later growth counts against the Pod.
  const fs::path log = fs::path(sb.log_directory()) / "vm/0.log";
  ASSERT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-VOLUMES-DONE", std::chrono::seconds(180))) << d.DaemonLog();
  const uint64_t rss = RssBytes(qemu);
  const uint64_t usage = ReadU64(V1Dir("memory", cg) / "memory.usage_in_bytes");
  EXPECT_GT(rss, 20u << 20);
  EXPECT_GE(usage, rss / 2) << "usage " << usage << " rss " << rss;
  EXPECT_GE(ReadU64(V1Dir("memory", pod_cg.rel()) / "memory.usage_in_bytes"), usage) << "the Pod's cgroup is billed";
  EXPECT_GT(ReadU64(V1Dir("cpuacct", cg) / "cpuacct.usage"), 0u);

  // A crash of the daemon moves nothing.
  d.Kill9();
  d.Start();
  EXPECT_EQ(GetContainerStatus(d, ctr).status().state(), pb::CONTAINER_RUNNING);
  EXPECT_EQ(CgroupOf(qemu, "memory"), cg);
  for (int pid : virtiofsd) EXPECT_EQ(CgroupOf(pid, "memory"), cg);

  RemovePod(d, pod);
  for (const char* h : kHierarchies) EXPECT_FALSE(fs::exists(V1Dir(h, cg))) << "cgroup left in " << h;
  EXPECT_TRUE(fs::exists(V1Dir("memory", pod_cg.rel()))) << "the Pod's own cgroup is kubelet's";
  ExpectNoLeftovers(d);
}

TEST(VmCgroup, AGuestThatOutgrowsThePodsMemoryLimitIsOomKilled137) {
  RequireIntegrationEnvironment(true);
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  PodCgroup pod_cg("/kvcri-itest-" + d.dir().filename().string() + "/podoom");
  // Below what the guest fills (400 MiB of its 512), above a booting QEMU.
  std::ofstream(V1Dir("memory", pod_cg.rel()) / "memory.limit_in_bytes") << (320u << 20);

  pb::PodSandboxConfig sb = SandboxConfig("oom", d.log_dir());
  sb.mutable_linux()->set_cgroup_parent(pod_cg.rel());
  (*sb.mutable_annotations())["kubevirt-cri.io/kernel-cmdline"] = "console=ttyS0 panic=-1 quiet kvcri.memhog=400";
  std::string pod, ctr;
  ASSERT_TRUE(StartPodWithConfig(d, sb, kKernelImage, &pod, &ctr)) << d.DaemonLog();
  const fs::path log = fs::path(sb.log_directory()) / "vm/0.log";
  ASSERT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-MEMHOG-START", std::chrono::seconds(180)))
      << ReadFileOrEmpty(log) << d.DaemonLog();
  ASSERT_TRUE(WaitForContainerState(d, ctr, pb::CONTAINER_EXITED, std::chrono::seconds(120)))
      << ReadFileOrEmpty(log) << d.DaemonLog();
  pb::ContainerStatus st = GetContainerStatus(d, ctr).status();
  EXPECT_EQ(st.exit_code(), 137) << st.reason() << ": " << st.message();
  EXPECT_EQ(st.reason(), "OOMKilled");
  EXPECT_EQ(CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-MEMHOG-DONE"), 0) << "the guest filled its RAM unbounded";
  RemovePod(d, pod);
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
