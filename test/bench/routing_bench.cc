// Forwarding overhead of kubevirt-cri's router (results in docs/benchmarks.md,
// "Forwarding to containerd"): the same CRI calls for runc Pods sent to a
// private containerd directly and through kubevirt-cri's socket, interleaved,
// median of N runs each.
//   run_sandbox     RunPodSandbox of a runc Pod (pause image already pulled)
//   list_containers ListContainers with C busybox containers running upstream
//                   (through us this is the merged list: ours + containerd's)
// Usage: routing_bench [--runs N] [--containers C]   (needs root, like the
// integration tests; a gtest binary so the shared fixtures can report failures)
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "test/client/containerd_fixture.h"
#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

using Clock = std::chrono::steady_clock;

int g_runs = 15;
int g_containers = 10;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

pb::PodSandboxConfig BenchSandbox(const std::string& name, const std::filesystem::path& logs) {
  pb::PodSandboxConfig c = SandboxConfig(name, logs);
  std::filesystem::create_directories(c.log_directory());
  return c;
}

// RunPodSandbox timed, then stopped and removed untimed. Returns ms or -1.
double TimedRunSandbox(pb::RuntimeService::Stub& rt, const pb::PodSandboxConfig& config) {
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = config;
  pb::RunPodSandboxResponse resp;
  auto t0 = Clock::now();
  grpc::Status s = rt.RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &resp);
  double ms = Ms(Clock::now() - t0);
  EXPECT_TRUE(s.ok()) << s.error_message();
  if (!s.ok()) return -1;
  pb::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(resp.pod_sandbox_id());
  pb::StopPodSandboxResponse stop_resp;
  EXPECT_TRUE(rt.StopPodSandbox(Ctx(std::chrono::seconds(60)).get(), stop, &stop_resp).ok());
  pb::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(resp.pod_sandbox_id());
  pb::RemovePodSandboxResponse rm_resp;
  EXPECT_TRUE(rt.RemovePodSandbox(Ctx(std::chrono::seconds(60)).get(), rm, &rm_resp).ok());
  return ms;
}

double TimedListContainers(pb::RuntimeService::Stub& rt, int* count) {
  pb::ListContainersResponse resp;
  auto t0 = Clock::now();
  grpc::Status s = rt.ListContainers(Ctx().get(), pb::ListContainersRequest(), &resp);
  double ms = Ms(Clock::now() - t0);
  EXPECT_TRUE(s.ok()) << s.error_message();
  *count = resp.containers_size();
  return ms;
}

TEST(RoutingBench, ForwardingOverheadVsContainerdDirect) {
  RequireIntegrationEnvironment(/*need_guest_images=*/false);
  ContainerdFixture ctrd;
  ctrd.Start();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  TestDaemon::Options opts;
  opts.extra_config = "[upstream]\nendpoint = \"" + ctrd.Endpoint() + "\"\n";
  opts.log_level = "info";
  TestDaemon d(opts);
  d.Start();

  // Warm-up: pulls the pause image, opens both connections.
  ASSERT_GT(TimedRunSandbox(ctrd.runtime(), BenchSandbox("warm-direct", d.log_dir())), 0);
  ASSERT_GT(TimedRunSandbox(d.runtime(), BenchSandbox("warm-routed", d.log_dir())), 0);

  std::vector<double> run_direct, run_routed;
  for (int i = 0; i < g_runs; ++i) {
    run_direct.push_back(TimedRunSandbox(ctrd.runtime(), BenchSandbox("rd-" + std::to_string(i), d.log_dir())));
    run_routed.push_back(TimedRunSandbox(d.runtime(), BenchSandbox("rr-" + std::to_string(i), d.log_dir())));
  }

  // C running busybox containers in one runc Pod, made through us.
  pb::PodSandboxConfig sandbox = BenchSandbox("list", d.log_dir());
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = sandbox;
  pb::RunPodSandboxResponse run_resp;
  ASSERT_TRUE(d.runtime().RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &run_resp).ok());
  pb::PullImageRequest pull;
  pull.mutable_image()->set_image(ctrd.BusyboxImage());
  *pull.mutable_sandbox_config() = sandbox;
  pb::PullImageResponse pull_resp;
  ASSERT_TRUE(d.images().PullImage(Ctx(std::chrono::seconds(120)).get(), pull, &pull_resp).ok());
  for (int i = 0; i < g_containers; ++i) {
    pb::CreateContainerRequest create;
    create.set_pod_sandbox_id(run_resp.pod_sandbox_id());
    *create.mutable_sandbox_config() = sandbox;
    create.mutable_config()->mutable_metadata()->set_name("c" + std::to_string(i));
    create.mutable_config()->mutable_image()->set_image(ctrd.BusyboxImage());
    create.mutable_config()->add_command("/bin/sleep");
    create.mutable_config()->add_args("3600");
    create.mutable_config()->set_log_path("c" + std::to_string(i) + ".log");
    pb::CreateContainerResponse cresp;
    ASSERT_TRUE(d.runtime().CreateContainer(Ctx(std::chrono::seconds(60)).get(), create, &cresp).ok());
    pb::StartContainerRequest start;
    start.set_container_id(cresp.container_id());
    pb::StartContainerResponse sresp;
    ASSERT_TRUE(d.runtime().StartContainer(Ctx(std::chrono::seconds(60)).get(), start, &sresp).ok());
  }
  std::vector<double> list_direct, list_routed;
  int n_direct = 0, n_routed = 0;
  for (int i = 0; i < std::max(g_runs, 50); ++i) {
    list_direct.push_back(TimedListContainers(ctrd.runtime(), &n_direct));
    list_routed.push_back(TimedListContainers(d.runtime(), &n_routed));
  }
  EXPECT_EQ(n_direct, g_containers);
  EXPECT_EQ(n_routed, g_containers);
  pb::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(run_resp.pod_sandbox_id());
  pb::StopPodSandboxResponse stop_resp;
  EXPECT_TRUE(d.runtime().StopPodSandbox(Ctx(std::chrono::seconds(60)).get(), stop, &stop_resp).ok());
  pb::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(run_resp.pod_sandbox_id());
  pb::RemovePodSandboxResponse rm_resp;
  EXPECT_TRUE(d.runtime().RemovePodSandbox(Ctx(std::chrono::seconds(60)).get(), rm, &rm_resp).ok());

  std::printf("run_sandbox runs=%d median_direct_ms=%.2f median_routed_ms=%.2f overhead_ms=%.2f\n", g_runs,
              Median(run_direct), Median(run_routed), Median(run_routed) - Median(run_direct));
  std::printf("list_containers runs=%zu containers=%d median_direct_ms=%.3f median_routed_ms=%.3f overhead_ms=%.3f\n",
              list_direct.size(), g_containers, Median(list_direct), Median(list_routed),
              Median(list_routed) - Median(list_direct));
}

}  // namespace
}  // namespace kvcri::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--runs") kvcri::testing::g_runs = std::max(10, std::atoi(argv[i + 1]));
    if (a == "--containers") kvcri::testing::g_containers = std::atoi(argv[i + 1]);
  }
  return RUN_ALL_TESTS();
}
