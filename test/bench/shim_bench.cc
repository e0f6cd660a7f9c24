// Pod start through containerd + containerd-shim-kubevirt-v1 vs through kubevirt-cri's own socket (results in
// docs/benchmarks.md, "The two ways in"): the same containerDisk image (the test guest's oci-disk), pulled or
// imported beforehand on both sides as kubelet pulls before CreateContainer, runs interleaved in one process.
// Per run: RunPodSandbox + CreateContainer + StartContainer (the CRI calls kubelet waits on), and the time
// until the guest prints its Pod IP on the console (the CRI log each side writes), median of N runs.
// Usage: shim_bench [--runs N]   (needs root, like the integration tests; a gtest binary so the shared
// fixtures can report failures). Prints a markdown table.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "test/client/containerd_fixture.h"
#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

using Clock = std::chrono::steady_clock;

int g_runs = 5;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// One Pod start: the three CRI calls, and from the first call to the guest's
// IP line on its console.
struct StartTimes {
  double calls_ms = -1, guest_ready_ms = -1;
};

// Polls `log` every 20 ms (boots take seconds; 200 ms steps would show in
// the median) until it holds `needle`; the time it was seen, or nullopt.
std::optional<Clock::time_point> SeenAt(const std::filesystem::path& log, const std::string& needle,
                                        std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (ReadFileOrEmpty(log).find(needle) != std::string::npos) return Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

// RunPodSandbox + CreateContainer + StartContainer of `container` on `rt`,
// timed, then the wait for the guest; the Pod is stopped and removed untimed.
StartTimes TimedStart(pb::RuntimeService::Stub& rt, const std::string& handler, const pb::PodSandboxConfig& sandbox,
                      const pb::ContainerConfig& container) {
  StartTimes out;
  const auto t0 = Clock::now();
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = sandbox;
  run.set_runtime_handler(handler);
  pb::RunPodSandboxResponse ran;
  grpc::Status s = rt.RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &ran);
  EXPECT_TRUE(s.ok()) << handler << " RunPodSandbox: " << s.error_message();
  if (!s.ok()) return out;
  pb::CreateContainerRequest create;
  create.set_pod_sandbox_id(ran.pod_sandbox_id());
  *create.mutable_sandbox_config() = sandbox;
  *create.mutable_config() = container;
  pb::CreateContainerResponse created;
  s = rt.CreateContainer(Ctx(std::chrono::seconds(120)).get(), create, &created);
  EXPECT_TRUE(s.ok()) << handler << " CreateContainer: " << s.error_message();
  if (s.ok()) {
    pb::StartContainerRequest start;
    start.set_container_id(created.container_id());
    pb::StartContainerResponse started;
    s = rt.StartContainer(Ctx(std::chrono::seconds(180)).get(), start, &started);
    EXPECT_TRUE(s.ok()) << handler << " StartContainer: " << s.error_message();
  }
  if (s.ok()) {
    out.calls_ms = Ms(Clock::now() - t0);
    const std::filesystem::path log = std::filesystem::path(sandbox.log_directory()) / container.log_path();
    std::optional<Clock::time_point> seen = SeenAt(log, "KUBEVIRT-CRI-GUEST-IP eth0 ", std::chrono::seconds(300));
    EXPECT_TRUE(seen.has_value()) << handler << ": the guest never printed its IP\n" << ReadFileOrEmpty(log);
    if (seen) out.guest_ready_ms = Ms(*seen - t0);
  }
  pb::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(ran.pod_sandbox_id());
  pb::StopPodSandboxResponse stopped;
  EXPECT_TRUE(rt.StopPodSandbox(Ctx(std::chrono::seconds(120)).get(), stop, &stopped).ok());
  pb::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(ran.pod_sandbox_id());
  pb::RemovePodSandboxResponse removed;
  EXPECT_TRUE(rt.RemovePodSandbox(Ctx(std::chrono::seconds(120)).get(), rm, &removed).ok());
  return out;
}

TEST(ShimBench, PodStartThroughContainerdAndOurShimVsThroughOurDaemon) {
  RequireIntegrationEnvironment(true);
  // containerd finds the shim on its $PATH and passes its environment on:
  // the shims' node config keeps their state in this run's dirs.
  TempDir bin, state, logs;
  std::filesystem::create_symlink(KVCRI_SHIM_PATH, bin.path() / "containerd-shim-kubevirt-v1");
  const char* path = ::getenv("PATH");
  ::setenv("PATH", (bin.path().string() + ":" + (path ? path : "/usr/bin:/bin")).c_str(), 1);
  std::ofstream(state.path() / "config.toml") << "root = \"" << (state.path() / "root").string() << "\"\n"
                                              << "state_dir = \"" << (state.path() / "run").string() << "\"\n";
  ::setenv("KVCRI_CONFIG", (state.path() / "config.toml").c_str(), 1);
  ContainerdFixture ctrd;
  ctrd.AddRuntime("kubevirt", "io.containerd.kubevirt.v1");
  ctrd.Start();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  const std::string ctrd_image = ctrd.PushImage(GuestImageDir("oci-disk"), "vm:bench");
  pb::PullImageRequest pull;
  pull.mutable_image()->set_image(ctrd_image);
  pb::PullImageResponse pulled;
  grpc::Status s = ctrd.images().PullImage(Ctx(std::chrono::seconds(300)).get(), pull, &pulled);
  ASSERT_TRUE(s.ok()) << s.error_message();

  TestDaemon::Options opts;
  opts.log_level = "info";
  TestDaemon d(opts);
  d.Start();
  ImportGuestImages(d);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());

  pb::ContainerConfig ours = VmContainerConfig("vm", kDiskImage);
  pb::ContainerConfig theirs = VmContainerConfig("vm", ctrd_image);
  theirs.add_command("vm");  // containerd's CRI refuses a container with no command (docs/node.md)

  // The first VM on each side pays for QEMU's capability probe (the shims
  // share a cache after it): one untimed warm-up each.
  std::vector<StartTimes> via_daemon, via_shim;
  for (int i = -1; i < g_runs; ++i) {
    const std::string n = std::to_string(i + 1);
    StartTimes a = TimedStart(d.runtime(), "", SandboxConfig("bench-daemon-" + n, logs.path()), ours);
    StartTimes b = TimedStart(ctrd.runtime(), "kubevirt", SandboxConfig("bench-shim-" + n, logs.path()), theirs);
    ASSERT_FALSE(::testing::Test::HasFailure()) << "containerd:\n" << ctrd.Log();
    if (i < 0) continue;
    via_daemon.push_back(a);
    via_shim.push_back(b);
  }
  auto med = [](const std::vector<StartTimes>& v, double StartTimes::*f) {
    std::vector<double> xs;
    for (const StartTimes& t : v) xs.push_back(t.*f);
    return Median(xs);
  };
  const double dc = med(via_daemon, &StartTimes::calls_ms), dg = med(via_daemon, &StartTimes::guest_ready_ms);
  const double sc = med(via_shim, &StartTimes::calls_ms), sg = med(via_shim, &StartTimes::guest_ready_ms);
  std::printf("\n%d runs each, interleaved, medians (ms)\n\n", g_runs);
  std::printf("| way in | RunPodSandbox + CreateContainer + StartContainer | to the guest's IP on its console |\n");
  std::printf("|---|---|---|\n");
  std::printf("| kubevirt-cri's own socket | %.1f | %.1f |\n", dc, dg);
  std::printf("| containerd + containerd-shim-kubevirt-v1 | %.1f | %.1f |\n", sc, sg);
  std::printf("| shim / daemon | %.2f | %.2f |\n", dc > 0 ? sc / dc : 0, dg > 0 ? sg / dg : 0);
  for (size_t i = 0; i < via_daemon.size(); ++i) {
    std::printf("run %zu: daemon %.1f / %.1f, shim %.1f / %.1f\n", i, via_daemon[i].calls_ms,
                via_daemon[i].guest_ready_ms, via_shim[i].calls_ms, via_shim[i].guest_ready_ms);
  }
  ::unsetenv("KVCRI_CONFIG");
}

}  // namespace
}  // namespace kvcri::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--runs") kvcri::testing::g_runs = std::atoi(argv[i + 1]);
  }
  return RUN_ALL_TESTS();
}
