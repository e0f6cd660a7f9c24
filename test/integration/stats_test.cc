// CRI stats of a real VM in its Pod cgroup: one busy core, 200 MiB filled, Pod traffic, every filter.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test/client/exec_helpers.h"
#include "test/client/host_util.h"
#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kMiB = uint64_t{1} << 20;

// A Pod cgroup made the way kubelet makes one with the cgroupfs driver on
// v1 (a directory in every hierarchy), removed at the end.
class PodCgroup {
 public:
  explicit PodCgroup(std::string rel) : rel_(std::move(rel)) {
    for (const char* h : kHierarchies) fs::create_directories(Dir(h));
    for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {  // v1 cpuset: empty until given its parent's
      const std::string all = ReadFileOrEmpty(fs::path("/sys/fs/cgroup/cpuset") / f);
      std::ofstream(Dir("cpuset").parent_path() / f) << all;
      std::ofstream(Dir("cpuset") / f) << all;
    }
  }
  ~PodCgroup() {
    for (const char* h : kHierarchies) {
      ::rmdir(Dir(h).c_str());
      ::rmdir(Dir(h).parent_path().c_str());
    }
  }
  const std::string& rel() const { return rel_; }

 private:
  static constexpr const char* kHierarchies[] = {"memory", "cpu", "cpuacct", "cpuset", "pids"};
  fs::path Dir(const char* h) const { return fs::path("/sys/fs/cgroup") / h / rel_.substr(1); }
  std::string rel_;
};

pb::ContainerStats OneContainerStats(TestDaemon& d, const std::string& ctr) {
  pb::ListContainerStatsRequest req;
  req.mutable_filter()->set_id(ctr);
  pb::ListContainerStatsResponse resp;
  grpc::Status s = d.runtime().ListContainerStats(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.stats_size(), 1);
  return resp.stats_size() == 1 ? resp.stats(0) : pb::ContainerStats();
}

pb::PodSandboxStats OnePodStats(TestDaemon& d, const std::string& pod) {
  pb::PodSandboxStatsRequest req;
  req.set_pod_sandbox_id(pod);
  pb::PodSandboxStatsResponse resp;
  grpc::Status s = d.runtime().PodSandboxStats(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp.stats();
}

// Sends `bytes` to the guest's echo server (0.0.0.0:7001) and reads them back.
bool EchoThroughPodIp(const std::string& ip, size_t bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(7001);
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  std::thread writer([&] {
    std::string chunk(64 * 1024, 'x');
    for (size_t sent = 0; ok && sent < bytes; sent += chunk.size()) {
      if (::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(chunk.size())) break;
    }
    ::shutdown(fd, SHUT_WR);
  });
  size_t got = 0;
  char buf[65536];
  while (ok) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  writer.join();
  ::close(fd);
  return ok && got == bytes;
}

TEST(VmStats, ABusyGuestShowsOneCoreItsMemoryGrowsAndTrafficCountsOnThePodInterface) {
  RequireIntegrationEnvironment(true);
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  PodCgroup pod_cg("/kvcri-itest-" + d.dir().filename().string() + "/podstats");
  pb::PodSandboxConfig sb = SandboxConfig("stats", d.log_dir());
  sb.mutable_linux()->set_cgroup_parent(pod_cg.rel());
  (*sb.mutable_labels())["stats"] = "yes";
  (*sb.mutable_annotations())["kubevirt-cri.io/kernel-cmdline"] = "console=ttyS0 panic=-1 quiet";
  pb::ContainerConfig c = VmContainerConfig("vm", kKernelImage);
  c.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(640 * kMiB);
  (*c.mutable_labels())["tier"] = "vm";
  std::string pod, ctr;
  ASSERT_TRUE(StartPodWithConfigs(d, sb, c, &pod, &ctr)) << d.DaemonLog();
  const fs::path log = fs::path(sb.log_directory()) / "vm/0.log";
  ASSERT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-READY", std::chrono::seconds(300))) << d.DaemonLog();
  absl::Status ready = WaitForExec(d, ctr, std::chrono::seconds(180));
  ASSERT_TRUE(ready.ok()) << ready << d.DaemonLog();

  pb::ContainerStats s0 = OneContainerStats(d, ctr);
  ASSERT_TRUE(s0.has_cpu()) << "no CPU from the VM's cgroup:\n" << d.DaemonLog();
  EXPECT_GT(s0.cpu().usage_core_nano_seconds().value(), 0u);
  EXPECT_GT(s0.memory().working_set_bytes().value(), 20 * kMiB);
  EXPECT_GT(s0.writable_layer().used_bytes().value(), 0u);

  // CPU: a busy loop for 16 s; measured over 10 s of it. What the host
  // scheduler gave QEMU over the same window (utime + stime of all its
  // threads in /proc) is the independent reference: on an idle host that is
  // one core; on a host whose other work leaves the guest half a core, the
  // stats must say half.
  const pid_t qemu = QemuPidOf("kvcri-" + ctr);
  ASSERT_GT(qemu, 0);
  std::thread burn([&] { (void)ExecSync(d, ctr, {"sh", "-c", "while :; do :; done"}, 16); });
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const auto w0 = std::chrono::steady_clock::now();
  const double cpu0 = ProcCpuSeconds(qemu);
  pb::ContainerStats s1 = OneContainerStats(d, ctr);
  std::this_thread::sleep_for(std::chrono::seconds(10));
  pb::ContainerStats s2 = OneContainerStats(d, ctr);
  const double cpu1 = ProcCpuSeconds(qemu);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  burn.join();
  const double cores = static_cast<double>(s2.cpu().usage_nano_cores().value()) / 1e9;
  const double host_cores = (cpu1 - cpu0) / wall;
  EXPECT_NEAR(cores, host_cores, 0.2 * host_cores)
      << "usage_nano_cores over 10 s of a busy guest vs QEMU's CPU time in /proc; load average "
      << ReadFileOrEmpty("/proc/loadavg");
  // ctest runs this test alone (RUN_SERIAL): the busy vCPU has a core to itself.
  EXPECT_NEAR(cores, 1.0, 0.2) << "a busy guest is one core; load average " << ReadFileOrEmpty("/proc/loadavg");
  std::cout << "busy guest: usage_nano_cores " << cores << " cores, QEMU in /proc " << host_cores
            << " cores, load average " << ReadFileOrEmpty("/proc/loadavg");
  const double measured =
      static_cast<double>(s2.cpu().usage_core_nano_seconds().value() - s1.cpu().usage_core_nano_seconds().value()) /
      static_cast<double>(s2.cpu().timestamp() - s1.cpu().timestamp());
  EXPECT_NEAR(cores, measured, 0.01) << "the rate is the cumulative counter's over the samples' interval";

  // Memory: 200 MiB written to the guest's RAM-backed root file system.
  const uint64_t ws0 = OneContainerStats(d, ctr).memory().working_set_bytes().value();
  absl::StatusOr<pb::ExecSyncResponse> fill =
      ExecSync(d, ctr, {"sh", "-c", "dd if=/dev/zero of=/stats-hog bs=1M count=200 2>&1"}, 120);
  ASSERT_TRUE(fill.ok()) << fill.status();
  ASSERT_EQ(fill->exit_code(), 0) << fill->stdout();
  const pb::ContainerStats s3 = OneContainerStats(d, ctr);
  const uint64_t ws1 = s3.memory().working_set_bytes().value();
  EXPECT_GE(ws1, ws0 + 150 * kMiB) << "working set " << ws0 / kMiB << " MiB -> " << ws1 / kMiB << " MiB";
  EXPECT_GE(s3.memory().usage_bytes().value(), ws1);

  // Network: 4 MiB each way through the Pod IP.
  pb::PodSandboxStatusRequest st_req;
  st_req.set_pod_sandbox_id(pod);
  pb::PodSandboxStatusResponse st;
  ASSERT_TRUE(d.runtime().PodSandboxStatus(Ctx().get(), st_req, &st).ok());
  const pb::PodSandboxStats p0 = OnePodStats(d, pod);
  ASSERT_TRUE(p0.linux().has_network()) << d.DaemonLog();
  EXPECT_EQ(p0.linux().network().default_interface().name(), "eth0");
  ASSERT_TRUE(EchoThroughPodIp(st.status().network().ip(), 4 * kMiB));
  const pb::PodSandboxStats p1 = OnePodStats(d, pod);
  const auto& i0 = p0.linux().network().default_interface();
  const auto& i1 = p1.linux().network().default_interface();
  EXPECT_GE(i1.rx_bytes().value(), i0.rx_bytes().value() + 4 * kMiB);
  EXPECT_GE(i1.tx_bytes().value(), i0.tx_bytes().value() + 4 * kMiB);
  EXPECT_GT(p1.linux().process().process_count().value(), 0u);
  EXPECT_GE(p1.linux().memory().working_set_bytes().value(), ws1 - 10 * kMiB);
  ASSERT_EQ(p1.linux().containers_size(), 1);

  // Every filter of the List calls reaches this Pod, and a wrong one nothing.
  auto container_ids = [&](const pb::ContainerStatsFilter& f) {
    pb::ListContainerStatsRequest req;
    *req.mutable_filter() = f;
    pb::ListContainerStatsResponse resp;
    EXPECT_TRUE(d.runtime().ListContainerStats(Ctx().get(), req, &resp).ok());
    std::vector<std::string> ids;
    for (const auto& x : resp.stats()) ids.push_back(x.attributes().id());
    return ids;
  };
  pb::ContainerStatsFilter cf;
  cf.set_id(ctr.substr(0, 12));
  EXPECT_THAT(container_ids(cf), ::testing::ElementsAre(ctr));
  cf.Clear();
  cf.set_pod_sandbox_id(pod);
  EXPECT_THAT(container_ids(cf), ::testing::ElementsAre(ctr));
  cf.Clear();
  (*cf.mutable_label_selector())["tier"] = "vm";
  EXPECT_THAT(container_ids(cf), ::testing::ElementsAre(ctr));
  (*cf.mutable_label_selector())["tier"] = "other";
  EXPECT_THAT(container_ids(cf), ::testing::IsEmpty());
  auto pod_ids = [&](const pb::PodSandboxStatsFilter& f) {
    pb::ListPodSandboxStatsRequest req;
    *req.mutable_filter() = f;
    pb::ListPodSandboxStatsResponse resp;
    EXPECT_TRUE(d.runtime().ListPodSandboxStats(Ctx().get(), req, &resp).ok());
    std::vector<std::string> ids;
    for (const auto& x : resp.stats()) ids.push_back(x.attributes().id());
    return ids;
  };
  pb::PodSandboxStatsFilter pf;
  pf.set_id(pod);
  EXPECT_THAT(pod_ids(pf), ::testing::ElementsAre(pod));
  pf.Clear();
  (*pf.mutable_label_selector())["stats"] = "yes";
  EXPECT_THAT(pod_ids(pf), ::testing::ElementsAre(pod));
  (*pf.mutable_label_selector())["stats"] = "no";
  EXPECT_THAT(pod_ids(pf), ::testing::IsEmpty());

  // kubelet's /metrics/cadvisor source.
  pb::ListPodSandboxMetricsRequest mreq;
  pb::ListPodSandboxMetricsResponse mresp;
  ASSERT_TRUE(d.runtime().ListPodSandboxMetrics(Ctx().get(), mreq, &mresp).ok());
  ASSERT_EQ(mresp.pod_metrics_size(), 1);
  bool saw_cpu = false;
  for (const auto& cm : mresp.pod_metrics(0).container_metrics()) {
    for (const auto& m : cm.metrics()) {
      if (m.name() == "container_cpu_usage_seconds_total") saw_cpu = m.value().value() >= 10;
    }
  }
  EXPECT_TRUE(saw_cpu) << "container_cpu_usage_seconds_total counts the busy loop's seconds";

  RemovePod(d, pod);
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
