// CRI stats calls, N VM Pods vs containerd with N runc containers (docs/benchmarks.md, "Stats calls (issue 15)").
// (issue 15)"). One run starts N VM Pods from the test guest on our daemon and N runc Pods (one busybox `sleep` each)
// on the private containerd, every Pod with a cgroup_parent as kubelet gives one, then calls ListContainerStats and
// ListPodSandboxStats R times against each runtime's own socket, alternating
// which side goes first, so machine noise hits both alike. Reports p50/p99 and
// each side's CPU per call: utime + stime of the daemon (ours) and of
// containerd plus its shims (theirs: the shims read the cgroups), over the
// phase, minus what the same processes burn idle over as long.
// Every answer is checked (N entries, CPU and memory set): a broken answer
// cannot make a fast number.
// Usage: stats_bench [--pods N] [--rounds R] [--memory-mib M] [--parallel P]
// (needs root, like the integration tests; a gtest binary so the shared
// fixtures can report failures). Prints a markdown table.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test/client/containerd_fixture.h"
#include "test/client/host_util.h"
#include "test/client/pod_helpers.h"
#include "test/client/prom_text.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int g_pods = 20;
int g_rounds = 200;
int g_memory_mib = 128;  // the test guest runs in 128 MiB (pod_bench's VM Pods use it too)
int g_parallel = 5;      // Pod starts in flight at once; the guests then boot side by side

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
double Secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Nearest-rank percentile.
double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size()) + 0.999999);
  return v[std::min(v.size(), std::max<size_t>(rank, 1)) - 1];
}

double CpuOf(const std::vector<int>& pids) {
  double s = 0;
  for (int pid : pids) s += ProcCpuSeconds(pid);
  return s;
}

// The Pod cgroups of this run, below one root in every v1 hierarchy: made by
// the runtimes (our placer, runc), removed here deepest first once the Pods
// are gone (kubelet owns Pod cgroups; neither runtime removes them).
class BenchCgroups {
 public:
  explicit BenchCgroups(std::string root) : root_(std::move(root)) {}
  ~BenchCgroups() {
    std::error_code ec;
    for (const auto& h : fs::directory_iterator("/sys/fs/cgroup", ec)) {
      const fs::path top = h.path() / root_.substr(1);
      if (!fs::is_directory(top, ec)) continue;
      std::vector<fs::path> dirs{top};
      for (auto it = fs::recursive_directory_iterator(top, ec); !ec && it != fs::recursive_directory_iterator();
           it.increment(ec)) {
        if (it->is_directory(ec)) dirs.push_back(it->path());
      }
      std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
        return a.native().size() > b.native().size();  // children before parents
      });
      for (const fs::path& d : dirs) ::rmdir(d.c_str());
    }
  }
  BenchCgroups(const BenchCgroups&) = delete;
  BenchCgroups& operator=(const BenchCgroups&) = delete;
  std::string Pod(const std::string& side, int i) const { return root_ + "/" + side + "/pod" + std::to_string(i); }

 private:
  std::string root_;
};

// A short libvirt embed root for our daemon. libvirt binds qemu-guest-agent's
// socket at <root>/lib/qemu/channel/target/domain-<id>-<20 chars of the
// name>/org.qemu.guest_agent.0, and a unix socket path has at most 107
// bytes: under the TestDaemon's <dir>/root/libvirt that leaves one digit for
// the domain ID, so the 10th VM of a daemon's life fails to start. Removed
// (with anything left running below it) after the daemon.
class ShortEmbedRoot {
 public:
  ShortEmbedRoot() {
    char tmpl[] = "/tmp/kvsXXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~ShortEmbedRoot() {
    if (path_.empty()) return;
    KillProcessesUnder(path_);
    UnmountUnder(path_);
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  ShortEmbedRoot(const ShortEmbedRoot&) = delete;
  ShortEmbedRoot& operator=(const ShortEmbedRoot&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Removes both runtimes' Pods when the test ends, however it ends: VM Pods
// in parallel (each stop waits for the guest to power off).
class PodsGuard {
 public:
  PodsGuard(TestDaemon& d, ContainerdFixture& ctrd, fs::path libvirt_root)
      : d_(d), ctrd_(ctrd), libvirt_root_(std::move(libvirt_root)) {}
  ~PodsGuard() {
    std::vector<std::thread> stoppers;
    for (const std::string& id : ours) {
      if (!id.empty()) stoppers.emplace_back([this, id] { RemovePod(d_, id); });
    }
    for (const std::string& id : theirs) {
      pb::StopPodSandboxRequest stop;
      stop.set_pod_sandbox_id(id);
      pb::StopPodSandboxResponse stop_resp;
      grpc::Status s = ctrd_.runtime().StopPodSandbox(Ctx(std::chrono::seconds(60)).get(), stop, &stop_resp);
      EXPECT_TRUE(s.ok()) << "StopPodSandbox on containerd: " << s.error_message();
      pb::RemovePodSandboxRequest rm;
      rm.set_pod_sandbox_id(id);
      pb::RemovePodSandboxResponse rm_resp;
      s = ctrd_.runtime().RemovePodSandbox(Ctx(std::chrono::seconds(60)).get(), rm, &rm_resp);
      EXPECT_TRUE(s.ok()) << "RemovePodSandbox on containerd: " << s.error_message();
    }
    for (std::thread& t : stoppers) t.join();
    if (!ours.empty()) ExpectNoLeftovers(d_);
    // ExpectNoLeftovers looks for QEMU under the default embed root; ours is elsewhere.
    if (!libvirt_root_.empty()) {
      EXPECT_TRUE(ProcessesMatching(libvirt_root_.string()).empty()) << "QEMU processes left";
    }
  }
  PodsGuard(const PodsGuard&) = delete;
  PodsGuard& operator=(const PodsGuard&) = delete;

  std::vector<std::string> ours;    // VM Pod sandbox IDs ("" where the start failed)
  std::vector<std::string> theirs;  // runc Pod sandbox IDs on containerd

 private:
  TestDaemon& d_;
  ContainerdFixture& ctrd_;
  fs::path libvirt_root_;
};

// A runc Pod with one busybox `sleep`, through containerd's CRI directly.
// Returns the sandbox ID ("" with a gtest failure).
std::string StartRuncPod(ContainerdFixture& ctrd, const pb::PodSandboxConfig& sandbox, std::string* ctr_id) {
  fs::create_directories(sandbox.log_directory());
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = sandbox;
  pb::RunPodSandboxResponse run_resp;
  grpc::Status s = ctrd.runtime().RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &run_resp);
  if (!s.ok()) {
    ADD_FAILURE() << "RunPodSandbox on containerd: " << s.error_message();
    return "";
  }
  pb::CreateContainerRequest create;
  create.set_pod_sandbox_id(run_resp.pod_sandbox_id());
  *create.mutable_sandbox_config() = sandbox;
  create.mutable_config()->mutable_metadata()->set_name("c");
  create.mutable_config()->mutable_image()->set_image(ctrd.BusyboxImage());
  create.mutable_config()->add_command("/bin/sleep");
  create.mutable_config()->add_args("36000");
  create.mutable_config()->set_log_path("c.log");
  pb::CreateContainerResponse cresp;
  s = ctrd.runtime().CreateContainer(Ctx(std::chrono::seconds(60)).get(), create, &cresp);
  if (!s.ok()) {
    ADD_FAILURE() << "CreateContainer on containerd: " << s.error_message();
    return run_resp.pod_sandbox_id();
  }
  pb::StartContainerRequest start;
  start.set_container_id(cresp.container_id());
  pb::StartContainerResponse sresp;
  s = ctrd.runtime().StartContainer(Ctx(std::chrono::seconds(60)).get(), start, &sresp);
  EXPECT_TRUE(s.ok()) << "StartContainer on containerd: " << s.error_message();
  *ctr_id = cresp.container_id();
  return run_resp.pod_sandbox_id();
}

// "" when a ListContainerStats answer holds exactly the expected containers,
// each with CPU and memory; else what is wrong.
std::string CheckContainerStats(const pb::ListContainerStatsResponse& r, const std::set<std::string>& want) {
  if (r.stats_size() != static_cast<int>(want.size())) {
    return "ListContainerStats: " + std::to_string(r.stats_size()) + " entries, want " + std::to_string(want.size());
  }
  std::set<std::string> got;
  for (const pb::ContainerStats& s : r.stats()) {
    const std::string& id = s.attributes().id();
    if (!want.count(id)) return "ListContainerStats: unexpected container " + id;
    if (!s.has_cpu() || s.cpu().usage_core_nano_seconds().value() == 0) return "ListContainerStats: no CPU for " + id;
    if (!s.has_memory() || s.memory().working_set_bytes().value() == 0) {
      return "ListContainerStats: no memory for " + id;
    }
    got.insert(id);
  }
  return got == want ? "" : "ListContainerStats: a container twice";
}

std::string CheckPodStats(const pb::ListPodSandboxStatsResponse& r, const std::set<std::string>& want) {
  if (r.stats_size() != static_cast<int>(want.size())) {
    return "ListPodSandboxStats: " + std::to_string(r.stats_size()) + " entries, want " + std::to_string(want.size());
  }
  std::set<std::string> got;
  for (const pb::PodSandboxStats& s : r.stats()) {
    const std::string& id = s.attributes().id();
    if (!want.count(id)) return "ListPodSandboxStats: unexpected Pod " + id;
    const pb::LinuxPodSandboxStats& l = s.linux();
    if (!l.has_cpu() || l.cpu().usage_core_nano_seconds().value() == 0) return "ListPodSandboxStats: no CPU for " + id;
    if (!l.has_memory() || l.memory().working_set_bytes().value() == 0) {
      return "ListPodSandboxStats: no memory for " + id;
    }
    if (!l.has_network() || l.network().default_interface().name().empty()) {
      return "ListPodSandboxStats: no network for " + id;
    }
    if (l.containers_size() != 1) {
      return "ListPodSandboxStats: " + std::to_string(l.containers_size()) + " containers in " + id + ", want 1";
    }
    got.insert(id);
  }
  return got == want ? "" : "ListPodSandboxStats: a Pod twice";
}

// One timed call; sets *error on the first wrong answer.
using TimedCall = std::function<double(std::string* error)>;

TimedCall ContainerStatsCall(pb::RuntimeService::Stub& rt, const std::set<std::string>& want) {
  return [&rt, &want](std::string* error) {
    pb::ListContainerStatsResponse resp;
    auto t0 = Clock::now();
    grpc::Status s = rt.ListContainerStats(Ctx().get(), pb::ListContainerStatsRequest(), &resp);
    const double ms = Ms(Clock::now() - t0);
    if (error->empty()) *error = s.ok() ? CheckContainerStats(resp, want) : "ListContainerStats: " + s.error_message();
    return ms;
  };
}

TimedCall PodStatsCall(pb::RuntimeService::Stub& rt, const std::set<std::string>& want) {
  return [&rt, &want](std::string* error) {
    pb::ListPodSandboxStatsResponse resp;
    auto t0 = Clock::now();
    grpc::Status s = rt.ListPodSandboxStats(Ctx().get(), pb::ListPodSandboxStatsRequest(), &resp);
    const double ms = Ms(Clock::now() - t0);
    if (error->empty()) *error = s.ok() ? CheckPodStats(resp, want) : "ListPodSandboxStats: " + s.error_message();
    return ms;
  };
}

// The daemon's own account of a call: kvcri_stats_collection_duration_seconds
// {rpc} sum and count, from its metrics endpoint.
struct Collection {
  double sum_s = 0, count = 0;
};
Collection ReadCollection(int metrics_port, const std::string& rpc) {
  const std::string resp = HttpGet("127.0.0.1", metrics_port, "/metrics");
  const size_t body = resp.find("\r\n\r\n");
  EXPECT_NE(body, std::string::npos) << "metrics endpoint: " << resp.substr(0, 200);
  if (body == std::string::npos) return {};
  absl::StatusOr<std::map<std::string, PromFamily>> f = ParsePromText(resp.substr(body + 4));
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return {};
  Collection c;
  absl::StatusOr<double> sum = PromValue(*f, "kvcri_stats_collection_duration_seconds_sum", {{"rpc", rpc}});
  absl::StatusOr<double> count = PromValue(*f, "kvcri_stats_collection_duration_seconds_count", {{"rpc", rpc}});
  if (sum.ok()) c.sum_s = *sum;
  if (count.ok()) c.count = *count;
  return c;
}

struct SideResult {
  std::vector<double> ms;
  double cpu_s = 0;       // over the phase
  double idle_cpu_s = 0;  // what the same processes burn idle over as long
  double CpuPerCallMs() const { return ms.empty() ? 0 : (cpu_s - idle_cpu_s) * 1000 / static_cast<double>(ms.size()); }
  double RawCpuPerCallMs() const { return ms.empty() ? 0 : cpu_s * 1000 / static_cast<double>(ms.size()); }
};

struct Phase {
  SideResult ours, theirs;
  double server_ms_mean = 0;  // our daemon's collection time per call
  double wall_s = 0;
};

// R rounds of one call against both sides (theirs skipped when null),
// alternating which goes first. Idle rates are CPU seconds per second.
Phase RunPhase(const TimedCall& ours, const TimedCall* theirs, pid_t our_pid, const std::vector<int>& their_pids,
               double our_idle_rate, double their_idle_rate, int metrics_port, const std::string& rpc,
               std::string* error) {
  Phase p;
  const Collection c0 = ReadCollection(metrics_port, rpc);
  const double our0 = ProcCpuSeconds(our_pid), their0 = CpuOf(their_pids);
  const auto t0 = Clock::now();
  for (int r = 0; r < g_rounds && error->empty(); ++r) {
    if (theirs != nullptr && r % 2 == 1) p.theirs.ms.push_back((*theirs)(error));
    p.ours.ms.push_back(ours(error));
    if (theirs != nullptr && r % 2 == 0) p.theirs.ms.push_back((*theirs)(error));
  }
  p.wall_s = Secs(Clock::now() - t0);
  p.ours.cpu_s = ProcCpuSeconds(our_pid) - our0;
  p.theirs.cpu_s = CpuOf(their_pids) - their0;
  p.ours.idle_cpu_s = our_idle_rate * p.wall_s;
  p.theirs.idle_cpu_s = their_idle_rate * p.wall_s;
  const Collection c1 = ReadCollection(metrics_port, rpc);
  if (c1.count > c0.count) p.server_ms_mean = (c1.sum_s - c0.sum_s) * 1000 / (c1.count - c0.count);
  return p;
}

void PrintRow(const char* call, const char* side, int n, const SideResult& s) {
  std::printf("| %s | %s, %d | %.3f | %.3f | %.3f (raw %.3f) |\n", call, side, n, Percentile(s.ms, 50),
              Percentile(s.ms, 99), s.CpuPerCallMs(), s.RawCpuPerCallMs());
}

TEST(StatsBench, ListStatsCallsWithVmPodsVsContainerdWithRuncContainers) {
  RequireIntegrationEnvironment(true);
  const int metrics_port = FreeLoopbackPort();
  ContainerdFixture ctrd;
  ctrd.Start();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  ShortEmbedRoot embed;
  ASSERT_FALSE(embed.path().empty()) << "mkdtemp /tmp/kvsXXXXXX";
  TestDaemon::Options opts;
  opts.log_level = "info";
  opts.extra_config = "[metrics]\naddress = \"127.0.0.1:" + std::to_string(metrics_port) + "\"\n" +
                      "[libvirt]\nuri = \"qemu:///embed?root=" + embed.path().string() + "\"\n";
  TestDaemon d(opts);
  d.Start();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  ImportGuestImages(d);
  BenchCgroups cgroups("/kvcri-bench-" + d.dir().filename().string());
  PodsGuard guard(d, ctrd, embed.path());

  // N VM Pods, g_parallel starts in flight; the guests boot side by side.
  guard.ours.assign(g_pods, "");
  std::vector<std::string> our_ctrs(g_pods), consoles(g_pods);
  std::atomic<int> next{0};
  const auto boot0 = Clock::now();
  std::vector<std::thread> starters;
  for (int w = 0; w < std::min(g_parallel, g_pods); ++w) {
    starters.emplace_back([&] {
      for (int i = next++; i < g_pods; i = next++) {
        pb::PodSandboxConfig sb = SandboxConfig("vm-" + std::to_string(i), d.log_dir());
        sb.mutable_linux()->set_cgroup_parent(cgroups.Pod("ours", i));
        (*sb.mutable_annotations())["kubevirt-cri.io/kernel-cmdline"] = "console=ttyS0 panic=-1 quiet";
        pb::ContainerConfig c = VmContainerConfig("vm", kKernelImage);
        c.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(int64_t{g_memory_mib} << 20);
        if (StartPodWithConfigs(d, sb, c, &guard.ours[i], &our_ctrs[i])) {
          consoles[i] = (fs::path(sb.log_directory()) / c.log_path()).string();
        }
      }
    });
  }

  // Meanwhile N runc Pods on containerd.
  pb::PullImageRequest pull;
  pull.mutable_image()->set_image(ctrd.BusyboxImage());
  pb::PullImageResponse pull_resp;
  grpc::Status pulled = ctrd.images().PullImage(Ctx(std::chrono::seconds(120)).get(), pull, &pull_resp);
  std::set<std::string> their_ctrs, their_pods;
  if (pulled.ok()) {
    for (int i = 0; i < g_pods; ++i) {
      pb::PodSandboxConfig sb = SandboxConfig("runc-" + std::to_string(i), d.log_dir());
      sb.mutable_linux()->set_cgroup_parent(cgroups.Pod("theirs", i));
      std::string ctr;
      std::string pod = StartRuncPod(ctrd, sb, &ctr);
      if (!pod.empty()) guard.theirs.push_back(pod);
      if (!pod.empty() && !ctr.empty()) {
        their_pods.insert(pod);
        their_ctrs.insert(ctr);
      }
    }
  }
  for (std::thread& t : starters) t.join();
  ASSERT_TRUE(pulled.ok()) << "PullImage on containerd: " << pulled.error_message();
  ASSERT_EQ(static_cast<int>(their_ctrs.size()), g_pods) << ctrd.Log();
  const double started_s = Secs(Clock::now() - boot0);
  for (int i = 0; i < g_pods; ++i) {
    ASSERT_FALSE(consoles[i].empty()) << "VM Pod " << i << " did not start:\n" << d.DaemonLog();
  }
  // Under TCG N guests share two cores: allow each its turn.
  for (int i = 0; i < g_pods; ++i) {
    ASSERT_TRUE(WaitForFileContains(consoles[i], "KUBEVIRT-CRI-GUEST-READY", std::chrono::seconds(1200)))
        << "VM Pod " << i << ": no READY in " << consoles[i];
  }
  const double booted_s = Secs(Clock::now() - boot0);
  std::set<std::string> our_ctr_set(our_ctrs.begin(), our_ctrs.end());
  std::set<std::string> our_pod_set(guard.ours.begin(), guard.ours.end());

  // Let the guests' start-up work settle, then measure each side idle.
  std::this_thread::sleep_for(std::chrono::seconds(15));
  const fs::path ctrd_config = ctrd.LogPath().parent_path() / "config.toml";
  std::vector<int> their_pids = ProcessesMatching(ctrd_config.string());  // containerd
  const std::vector<int> shims = ProcessesMatching("-address " + ctrd.socket().string());
  ASSERT_EQ(their_pids.size(), 1u) << "containerd processes for " << ctrd_config;
  ASSERT_GE(static_cast<int>(shims.size()), 1);
  their_pids.insert(their_pids.end(), shims.begin(), shims.end());
  const double idle_window_s = 10;
  const double our_idle0 = ProcCpuSeconds(d.pid()), their_idle0 = CpuOf(their_pids);
  const auto idle_t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(static_cast<int>(idle_window_s)));
  const double idle_wall = Secs(Clock::now() - idle_t0);
  const double our_idle_rate = (ProcCpuSeconds(d.pid()) - our_idle0) / idle_wall;
  const double their_idle_rate = (CpuOf(their_pids) - their_idle0) / idle_wall;
  const std::string load_before = ReadFileOrEmpty("/proc/loadavg");

  // Warm-up (connections, first CPU samples) and the one-off check whether
  // containerd answers ListPodSandboxStats at all.
  std::string error;
  ContainerStatsCall(d.runtime(), our_ctr_set)(&error);
  ContainerStatsCall(ctrd.runtime(), their_ctrs)(&error);
  PodStatsCall(d.runtime(), our_pod_set)(&error);
  ASSERT_EQ(error, "") << "warm-up";
  pb::ListPodSandboxStatsResponse probe;
  const grpc::Status their_pod_stats =
      ctrd.runtime().ListPodSandboxStats(Ctx().get(), pb::ListPodSandboxStatsRequest(), &probe);
  const bool their_pod_stats_supported = their_pod_stats.error_code() != grpc::StatusCode::UNIMPLEMENTED;
  if (their_pod_stats_supported) {
    ASSERT_TRUE(their_pod_stats.ok()) << "ListPodSandboxStats on containerd: " << their_pod_stats.error_message();
    ASSERT_EQ(CheckPodStats(probe, their_pods), "") << "containerd";
  }

  const TimedCall our_cs = ContainerStatsCall(d.runtime(), our_ctr_set);
  const TimedCall their_cs = ContainerStatsCall(ctrd.runtime(), their_ctrs);
  const Phase cs = RunPhase(our_cs, &their_cs, d.pid(), their_pids, our_idle_rate, their_idle_rate, metrics_port,
                            "ListContainerStats", &error);
  ASSERT_EQ(error, "") << "ListContainerStats phase";
  const TimedCall our_ps = PodStatsCall(d.runtime(), our_pod_set);
  const TimedCall their_ps = PodStatsCall(ctrd.runtime(), their_pods);
  const Phase ps = RunPhase(our_ps, their_pod_stats_supported ? &their_ps : nullptr, d.pid(), their_pids, our_idle_rate,
                            their_idle_rate, metrics_port, "ListPodSandboxStats", &error);
  ASSERT_EQ(error, "") << "ListPodSandboxStats phase";
  const std::string load_after = ReadFileOrEmpty("/proc/loadavg");

  std::printf(
      "\n%d VM Pods (%d MiB, TCG) started in %.1f s, all guests READY after %.1f s; %d runc Pods on "
      "containerd (%zu shims)\n",
      g_pods, g_memory_mib, started_s, booted_s, g_pods, shims.size());
  std::printf("idle CPU: our daemon %.1f ms/s, containerd + shims %.1f ms/s; load average before %s",
              our_idle_rate * 1000, their_idle_rate * 1000, load_before.c_str());
  std::printf("load average after %s\n", load_after.c_str());
  std::printf("| call (%d rounds, interleaved) | runtime, entries | p50 ms | p99 ms | CPU ms per call, minus idle |\n",
              g_rounds);
  std::printf("| --- | --- | --- | --- | --- |\n");
  PrintRow("ListContainerStats", "kubevirt-cri", g_pods, cs.ours);
  PrintRow("ListContainerStats", "containerd + runc", g_pods, cs.theirs);
  PrintRow("ListPodSandboxStats", "kubevirt-cri", g_pods, ps.ours);
  if (their_pod_stats_supported) {
    PrintRow("ListPodSandboxStats", "containerd + runc", g_pods, ps.theirs);
  } else {
    std::printf("| ListPodSandboxStats | containerd + runc | UNIMPLEMENTED: %s | | |\n",
                their_pod_stats.error_message().c_str());
  }
  std::printf(
      "\nour daemon's own collection time per call (kvcri_stats_collection_duration_seconds): "
      "ListContainerStats %.3f ms, ListPodSandboxStats %.3f ms\n",
      cs.server_ms_mean, ps.server_ms_mean);
  std::printf("phase wall time: ListContainerStats %.1f s, ListPodSandboxStats %.1f s\n", cs.wall_s, ps.wall_s);
  std::printf("p99 ours / containerd: ListContainerStats %.2f",
              Percentile(cs.ours.ms, 99) / Percentile(cs.theirs.ms, 99));
  if (their_pod_stats_supported) {
    std::printf(", ListPodSandboxStats %.2f", Percentile(ps.ours.ms, 99) / Percentile(ps.theirs.ms, 99));
  }
  std::printf(" (target <= 1)\n");
  std::fflush(stdout);
}

}  // namespace
}  // namespace kvcri::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (a == "--pods") kvcri::testing::g_pods = std::max(1, v);
    if (a == "--rounds") kvcri::testing::g_rounds = std::max(10, v);
    if (a == "--memory-mib") kvcri::testing::g_memory_mib = std::max(64, v);
    if (a == "--parallel") kvcri::testing::g_parallel = std::max(1, v);
  }
  return RUN_ALL_TESTS();
}
