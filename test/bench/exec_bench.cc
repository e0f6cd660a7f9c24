// ExecSync round trip and port-forward throughput (results in docs/benchmarks.md, "Exec and port-forward"):
// ExecSync `true` p50/p99 through kvcri-agent, through qemu-guest-agent and through containerd + runc, interleaved in
// one run; port-forward through kvcri-agent and via the Pod IP against a direct TCP connection to the same guests.
// Usage: exec_bench [--calls N] [--connections C] [--mib M]   (needs root, like the integration tests; a gtest
// binary so the shared fixtures can report failures). Prints a markdown table.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "test/client/containerd_fixture.h"
#include "test/client/exec_helpers.h"

namespace kvcri::testing {
namespace {

using Clock = std::chrono::steady_clock;

int g_calls = 200;
int g_connections = 4;
int g_mib = 16;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Nearest-rank percentile.
double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size()) + 0.999999);
  return v[std::min(v.size(), std::max<size_t>(rank, 1)) - 1];
}

// A running busybox container in a runc Pod on containerd, made through its CRI directly.
std::string StartRuncContainer(ContainerdFixture& ctrd, const std::filesystem::path& logs) {
  pb::PodSandboxConfig sandbox = SandboxConfig("bench-runc", logs);
  std::filesystem::create_directories(sandbox.log_directory());
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = sandbox;
  pb::RunPodSandboxResponse run_resp;
  grpc::Status s = ctrd.runtime().RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &run_resp);
  EXPECT_TRUE(s.ok()) << "RunPodSandbox on containerd: " << s.error_message();
  pb::PullImageRequest pull;
  pull.mutable_image()->set_image(ctrd.BusyboxImage());
  *pull.mutable_sandbox_config() = sandbox;
  pb::PullImageResponse pull_resp;
  s = ctrd.images().PullImage(Ctx(std::chrono::seconds(120)).get(), pull, &pull_resp);
  EXPECT_TRUE(s.ok()) << "PullImage on containerd: " << s.error_message();
  pb::CreateContainerRequest create;
  create.set_pod_sandbox_id(run_resp.pod_sandbox_id());
  *create.mutable_sandbox_config() = sandbox;
  create.mutable_config()->mutable_metadata()->set_name("c");
  create.mutable_config()->mutable_image()->set_image(ctrd.BusyboxImage());
  create.mutable_config()->add_command("/bin/sleep");
  create.mutable_config()->add_args("3600");
  create.mutable_config()->set_log_path("c.log");
  pb::CreateContainerResponse cresp;
  s = ctrd.runtime().CreateContainer(Ctx(std::chrono::seconds(60)).get(), create, &cresp);
  EXPECT_TRUE(s.ok()) << "CreateContainer on containerd: " << s.error_message();
  pb::StartContainerRequest start;
  start.set_container_id(cresp.container_id());
  pb::StartContainerResponse sresp;
  s = ctrd.runtime().StartContainer(Ctx(std::chrono::seconds(60)).get(), start, &sresp);
  EXPECT_TRUE(s.ok()) << "StartContainer on containerd: " << s.error_message();
  return cresp.container_id();
}

// One ExecSync `true`, timed; -1 on failure (with a gtest failure).
double TimedExecSync(pb::RuntimeService::Stub& rt, const std::string& ctr) {
  pb::ExecSyncRequest req;
  req.set_container_id(ctr);
  req.add_cmd("true");
  req.set_timeout(10);
  pb::ExecSyncResponse resp;
  auto t0 = Clock::now();
  grpc::Status s = rt.ExecSync(Ctx(std::chrono::seconds(30)).get(), req, &resp);
  double ms = Ms(Clock::now() - t0);
  EXPECT_TRUE(s.ok() && resp.exit_code() == 0) << ctr << ": " << s.error_message();
  return s.ok() ? ms : -1;
}

// MB/s each way (10^6 bytes per second of payload sent, echoed back too).
double Throughput(const std::string& what,
                  const std::function<absl::StatusOr<std::unique_ptr<ForwardedConnection>>(int)>& connect) {
  const size_t bytes = static_cast<size_t>(g_mib) << 20;
  auto t0 = Clock::now();
  absl::Status s = ConcurrentEcho(g_connections, bytes, connect);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_TRUE(s.ok()) << what << ": " << s;
  return s.ok() ? static_cast<double>(bytes) * g_connections / secs / 1e6 : 0;
}

TEST(ExecBench, ExecSyncRoundTripAndPortForwardThroughput) {
  RequireIntegrationEnvironment(true);
  ContainerdFixture ctrd;
  ctrd.Start();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  TestDaemon::Options opts;
  opts.log_level = "info";
  TestDaemon d(opts);
  d.Start();
  ImportGuestImages(d);
  std::vector<VmPod> pods = {VmPod{.name = "bench-agent"}, VmPod{.name = "bench-qga", .cmdline_extra = "kvcri.agent=0"}};
  ASSERT_TRUE(StartVmPods(d, pods));
  const VmPod& agent = pods[0];
  const VmPod& qga = pods[1];
  for (const VmPod& p : pods) {
    absl::Status s = WaitForExec(d, p.container_id, std::chrono::seconds(120));
    ASSERT_TRUE(s.ok()) << p.name << ": " << s;
  }
  const std::string runc = StartRuncContainer(ctrd, d.log_dir());
  ASSERT_FALSE(::testing::Test::HasFailure()) << ctrd.Log();

  // Interleaved, so drift on the shared host hits all three alike.
  std::vector<double> via_agent, via_qga, via_runc;
  for (int i = 0; i < 10; ++i) {  // warm-up: connections, page cache, the agents' first spawn
    TimedExecSync(d.runtime(), agent.container_id);
    TimedExecSync(d.runtime(), qga.container_id);
    TimedExecSync(ctrd.runtime(), runc);
  }
  for (int i = 0; i < g_calls; ++i) {
    via_agent.push_back(TimedExecSync(d.runtime(), agent.container_id));
    via_qga.push_back(TimedExecSync(d.runtime(), qga.container_id));
    via_runc.push_back(TimedExecSync(ctrd.runtime(), runc));
  }

  // Port-forward over SPDY (what kubelet and crictl speak), one connection
  // with a stream pair per forwarded connection.
  auto forward = [&](const VmPod& pod, uint16_t port) {
    absl::StatusOr<std::string> url = PortForwardUrl(d, pod.pod_id, {});
    EXPECT_TRUE(url.ok()) << url.status();
    if (!url.ok()) return 0.0;
    absl::StatusOr<std::unique_ptr<PortForwardClient>> pf = OpenSpdyPortForward(*url);
    EXPECT_TRUE(pf.ok()) << pf.status();
    if (!pf.ok()) return 0.0;
    return Throughput(pod.name + " forward " + std::to_string(port), [&](int) { return (*pf)->Connect(port); });
  };
  auto direct = [&](const VmPod& pod, uint16_t port) {
    return Throughput(pod.name + " direct " + std::to_string(port), [&](int) { return DialTcp(pod.ip, port); });
  };
  const double pf_agent = forward(agent, 7000);
  const double direct_agent = direct(agent, 7001);
  const double pf_podip = forward(qga, 7001);
  const double direct_podip = direct(qga, 7001);

  std::printf("\n| ExecSync `true` (%d calls each, interleaved) | p50 ms | p99 ms |\n| --- | --- | --- |\n", g_calls);
  std::printf("| kubevirt-cri via kvcri-agent | %.2f | %.2f |\n", Percentile(via_agent, 50), Percentile(via_agent, 99));
  std::printf("| kubevirt-cri via qemu-guest-agent | %.2f | %.2f |\n", Percentile(via_qga, 50),
              Percentile(via_qga, 99));
  std::printf("| containerd + runc | %.2f | %.2f |\n", Percentile(via_runc, 50), Percentile(via_runc, 99));
  std::printf("\nkvcri-agent p50 / containerd p50 = %.2f (target <= 0.5)\n",
              Percentile(via_runc, 50) > 0 ? Percentile(via_agent, 50) / Percentile(via_runc, 50) : 0);
  std::printf("\n| Port-forward (%d connections x %d MiB each way, SPDY) | MB/s each way | direct TCP to the guest, MB/s | "
              "ratio |\n| --- | --- | --- | --- |\n",
              g_connections, g_mib);
  std::printf("| through kvcri-agent to 127.0.0.1:7000 | %.1f | %.1f | %.2f |\n", pf_agent, direct_agent,
              direct_agent > 0 ? pf_agent / direct_agent : 0);
  std::printf("| via the Pod IP (kvcri.agent=0) to :7001 | %.1f | %.1f | %.2f |\n", pf_podip, direct_podip,
              direct_podip > 0 ? pf_podip / direct_podip : 0);

  for (const VmPod& p : pods) RemovePod(d, p.pod_id);
}

}  // namespace
}  // namespace kvcri::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--calls") kvcri::testing::g_calls = std::max(10, std::atoi(argv[i + 1]));
    if (a == "--connections") kvcri::testing::g_connections = std::max(1, std::atoi(argv[i + 1]));
    if (a == "--mib") kvcri::testing::g_mib = std::max(1, std::atoi(argv[i + 1]));
  }
  return RUN_ALL_TESTS();
}
