// Plain-image Pods (the Pod micro-VM) side by side with their peers, one run (results in docs/benchmarks.md, "Plain-image Pods"):
//   pod start    RunPodSandbox -> CreateContainer (boots the micro-VM) -> StartContainer of busybox, until
//                StartContainer returns (crun runs it), vs a bare LibvirtHypervisor::Create of the same
//                kernel + initramfs with the same share and agent channel until kvcri-agent answers;
//   second       CreateContainer + StartContainer of busybox in a running Pod, vs containerd + runc doing
//                the same in a running runc Pod (image pulled);
//   memory       PSS of the idle busybox Pod's QEMU and virtiofsd processes (QEMU's TCG code buffer apart)
//                and the daemon's PSS growth per Pod.
// Runs alternate so both sides see the same machine.
// Usage: microvm_bench [--runs N] [--seconds N]   (root; KVCRI_MICROVM_DIR built)
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "runtime/accelerator.h"
#include "runtime/agent/agent_client.h"
#include "runtime/libvirt_hypervisor.h"
#include "runtime/microvm/container_root.h"
#include "test/client/containerd_fixture.h"
#include "test/client/oci_layout.h"
#include "test/client/pod_helpers.h"
#include "test/client/test_daemon.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int g_runs = 3;
int g_second_runs = 10;
const fs::path kMicroVmDir = KVCRI_MICROVM_DIR;
constexpr char kBusybox[] = "kvcri.test/busybox:1";

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

pb::ContainerConfig Sleeper(const std::string& name) {
  pb::ContainerConfig c;
  c.mutable_metadata()->set_name(name);
  c.mutable_image()->set_image(kBusybox);
  c.set_log_path(name + ".log");
  c.add_command("/bin/sleep");
  c.add_command("3600");
  return c;
}

// CreateContainer + StartContainer on `rt`; ms, or -1 with a failure.
double CreateAndStart(pb::RuntimeService::Stub& rt, const std::string& pod, const pb::PodSandboxConfig& sandbox,
                      const pb::ContainerConfig& c, std::string* id) {
  const auto t0 = Clock::now();
  pb::CreateContainerRequest create;
  create.set_pod_sandbox_id(pod);
  *create.mutable_config() = c;
  *create.mutable_sandbox_config() = sandbox;
  pb::CreateContainerResponse created;
  grpc::Status s = rt.CreateContainer(Ctx(std::chrono::seconds(240)).get(), create, &created);
  EXPECT_TRUE(s.ok()) << "CreateContainer: " << s.error_message();
  if (!s.ok()) return -1;
  pb::StartContainerRequest start;
  start.set_container_id(created.container_id());
  pb::StartContainerResponse started;
  s = rt.StartContainer(Ctx(std::chrono::seconds(120)).get(), start, &started);
  EXPECT_TRUE(s.ok()) << "StartContainer: " << s.error_message();
  if (id != nullptr) *id = created.container_id();
  return s.ok() ? Ms(Clock::now() - t0) : -1;
}

std::string RunSandbox(pb::RuntimeService::Stub& rt, const pb::PodSandboxConfig& sandbox, const std::string& handler) {
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = sandbox;
  run.set_runtime_handler(handler);
  pb::RunPodSandboxResponse resp;
  grpc::Status s = rt.RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &resp);
  EXPECT_TRUE(s.ok()) << "RunPodSandbox: " << s.error_message();
  return resp.pod_sandbox_id();
}

void StopAndRemove(pb::RuntimeService::Stub& rt, const std::string& pod) {
  pb::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod);
  pb::StopPodSandboxResponse stopped;
  EXPECT_TRUE(rt.StopPodSandbox(Ctx(std::chrono::seconds(120)).get(), stop, &stopped).ok());
  pb::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(pod);
  pb::RemovePodSandboxResponse removed;
  EXPECT_TRUE(rt.RemovePodSandbox(Ctx(std::chrono::seconds(120)).get(), rm, &removed).ok());
}

// The bare side: the same boot files, share and channel on this process's
// own embedded driver, until kvcri-agent answers HELLO. ms, or -1.
double BareBoot(runtime::LibvirtHypervisor& hv, const fs::path& dir, int round, config::Accelerator accel) {
  const fs::path share = dir / ("share" + std::to_string(round));
  fs::create_directories(share);
  EXPECT_TRUE(runtime::microvm::MountPodShare(share).ok());
  runtime::VmSpec spec;
  spec.name = "kvcri-bench-bare" + std::to_string(round);
  spec.pod_id = spec.container_id = "bench-bare" + std::to_string(round);
  spec.memory_mib = 512;
  spec.accel = accel;
  spec.kernel = kMicroVmDir / "vmlinuz";
  spec.initrd = kMicroVmDir / "initramfs.img";
  spec.cmdline = "console=ttyS0 panic=-1 quiet";
  spec.console_log = dir / ("console" + std::to_string(round) + ".log");
  spec.agent_socket = dir / ("a" + std::to_string(round) + ".sock");
  runtime::FilesystemSpec fsx;
  fsx.source_dir = share;
  fsx.tag = "kvcri-pod";
  spec.filesystems.push_back(fsx);
  const auto t0 = Clock::now();
  absl::Status created = hv.Create(spec);
  EXPECT_TRUE(created.ok()) << created;
  double ms = -1;
  for (auto deadline = t0 + std::chrono::minutes(3); created.ok() && Clock::now() < deadline;) {
    if (runtime::agent::ConnectAgent(spec.agent_socket, runtime::agent::AgentLimits{}).ok()) {
      ms = Ms(Clock::now() - t0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(hv.Remove(spec.name).ok());
  EXPECT_TRUE(runtime::microvm::UnmountPodShare(share).ok());
  return ms;
}

struct Pss {
  double total_mib = 0;
  double tcg_mib = 0;  // QEMU's anonymous rwx mappings: the TCG translation buffer
};

Pss PssOf(int pid) {
  Pss out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  std::string line;
  bool rwx_anon = false;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string first, second;
    words >> first >> second;
    if (first.find('-') != std::string::npos && first.back() != ':') {
      std::string offset, devnum, inode, path;
      words >> offset >> devnum >> inode;
      std::getline(words, path);
      rwx_anon = second == "rwxp" && path.find_first_not_of(' ') == std::string::npos;
    } else if (first == "Pss:") {
      const double mib = std::atof(second.c_str()) / 1024.0;
      out.total_mib += mib;
      if (rwx_anon) out.tcg_mib += mib;
    }
  }
  return out;
}

TEST(MicroVmBench, PodStartSecondContainerAndMemory) {
  RequireIntegrationEnvironment(/*need_guest_images=*/false);
  ContainerdFixture ctrd;
  ctrd.Start();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  TestDaemon::Options o;
  o.log_level = "info";
  o.extra_config = "[microvm]\nkernel = \"" + (kMicroVmDir / "vmlinuz").string() + "\"\ninitramfs = \"" +
                   (kMicroVmDir / "initramfs.img").string() + "\"\n";
  TestDaemon d(o);
  d.Start();
  const fs::path layout = d.dir() / "busybox-layout";
  WriteLayout(layout, {BusyboxLayer()});
  std::string out;
  ASSERT_EQ(d.RunSubcommand({"images", "import", layout.string(), kBusybox}, &out), 0) << out;

  char tmpl[] = "/tmp/kvmb-XXXXXX";
  const fs::path bare_dir = ::mkdtemp(tmpl);
  auto hv = runtime::LibvirtHypervisor::Open(
      runtime::LibvirtHypervisorOptions{"qemu:///embed?root=" + (bare_dir / "lv").string()});
  ASSERT_TRUE(hv.ok()) << hv.status();
  auto accel = runtime::ChooseAccelerator(config::Accelerator::kAuto, runtime::HostProbe());
  const config::Accelerator a = accel.ok() ? accel->accel : config::Accelerator::kTcg;

  // 1. Pod start vs bare boot, alternating.
  std::vector<double> pod_ms, bare_ms, sandbox_ms;
  for (int i = 0; i < g_runs; ++i) {
    bare_ms.push_back(BareBoot(**hv, bare_dir, i, a));
    pb::PodSandboxConfig sandbox = SandboxConfig("bench-plain-" + std::to_string(i), d.log_dir());
    const auto t0 = Clock::now();
    const std::string pod = RunSandbox(d.runtime(), sandbox, "kubevirt");
    sandbox_ms.push_back(Ms(Clock::now() - t0));
    std::string id;
    const double c = CreateAndStart(d.runtime(), pod, sandbox, Sleeper("c"), &id);
    pod_ms.push_back(c < 0 ? -1 : Ms(Clock::now() - t0));
    StopAndRemove(d.runtime(), pod);
  }

  // 2. A second container in a running Pod, ours vs containerd + runc.
  pb::PodSandboxConfig ours_sb = SandboxConfig("bench-second", d.log_dir());
  const std::string ours = RunSandbox(d.runtime(), ours_sb, "kubevirt");
  ASSERT_GT(CreateAndStart(d.runtime(), ours, ours_sb, Sleeper("first"), nullptr), 0);
  // 3 (taken now, the Pod idle with one busybox container): memory.
  std::this_thread::sleep_for(std::chrono::seconds(5));
  Pss qemu, virtiofsd;
  // QEMU's command line names the domain, virtiofsd's the Pod's share.
  auto add = [](Pss& into, int pid) {
    Pss p = PssOf(pid);
    into.total_mib += p.total_mib;
    into.tcg_mib += p.tcg_mib;
  };
  for (int pid : ProcessesMatching("kvcri-" + ours)) {
    if (ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/cmdline").find("virtiofsd") == std::string::npos) add(qemu, pid);
  }
  for (int pid : ProcessesMatching((d.root() / "pods" / ours / "share").string())) add(virtiofsd, pid);
  const double daemon_with = PssOf(d.pid()).total_mib;
  std::printf("daemon PSS with the idle Pod: %.1f MiB\n", daemon_with);

  pb::PodSandboxConfig runc_sb = SandboxConfig("bench-runc", d.log_dir());
  fs::create_directories(runc_sb.log_directory());
  const std::string theirs = RunSandbox(ctrd.runtime(), runc_sb, "");
  pb::PullImageRequest pull;
  pull.mutable_image()->set_image(ctrd.BusyboxImage());
  pb::PullImageResponse pulled;
  ASSERT_TRUE(ctrd.images().PullImage(Ctx(std::chrono::seconds(120)).get(), pull, &pulled).ok());
  std::vector<double> second_ours, second_runc;
  for (int i = 0; i < g_second_runs; ++i) {
    second_ours.push_back(CreateAndStart(d.runtime(), ours, ours_sb, Sleeper("s" + std::to_string(i)), nullptr));
    pb::ContainerConfig c = Sleeper("s" + std::to_string(i));
    c.mutable_image()->set_image(ctrd.BusyboxImage());
    second_runc.push_back(CreateAndStart(ctrd.runtime(), theirs, runc_sb, c, nullptr));
  }
  StopAndRemove(d.runtime(), ours);
  const double daemon_without = PssOf(d.pid()).total_mib;
  StopAndRemove(ctrd.runtime(), theirs);

  std::printf("\n| Pod start (%d runs, alternating) | median ms |\n| --- | --- |\n", g_runs);
  std::printf("| bare libvirt: create + kernel/initramfs boot to kvcri-agent's answer | %.0f |\n", Median(bare_ms));
  std::printf("| kubevirt-cri: RunPodSandbox -> busybox running (StartContainer returned) | %.0f |\n", Median(pod_ms));
  std::printf("| of which RunPodSandbox (CNI) | %.0f |\n", Median(sandbox_ms));
  std::printf("\nratio pod / bare = %.2f (target <= 1.2)\n", Median(bare_ms) > 0 ? Median(pod_ms) / Median(bare_ms) : 0);
  std::printf("\n| Second container, CreateContainer + StartContainer (%d runs, alternating) | median ms |\n| --- | --- |\n",
              g_second_runs);
  std::printf("| kubevirt-cri, busybox in the running micro-VM | %.0f |\n", Median(second_ours));
  std::printf("| containerd + runc, busybox in a running runc Pod | %.0f |\n", Median(second_runc));
  std::printf("\nratio ours / containerd = %.2f (target <= 2)\n",
              Median(second_runc) > 0 ? Median(second_ours) / Median(second_runc) : 0);
  std::printf("\n| Idle busybox Pod, PSS | MiB |\n| --- | --- |\n");
  std::printf("| QEMU (512 MiB guest), without its TCG code buffer | %.1f |\n", qemu.total_mib - qemu.tcg_mib);
  std::printf("| QEMU's TCG code buffer (absent under KVM) | %.1f |\n", qemu.tcg_mib);
  std::printf("| virtiofsd | %.1f |\n", virtiofsd.total_mib);
  std::printf("| the daemon's share (its PSS with the Pod minus after its removal; heap is not returned) | %.1f |\n",
              daemon_with - daemon_without);
  fs::remove_all(bare_dir);
}

}  // namespace
}  // namespace kvcri::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--runs") kvcri::testing::g_runs = std::max(1, std::atoi(argv[i + 1]));
    if (a == "--second-runs") kvcri::testing::g_second_runs = std::max(1, std::atoi(argv[i + 1]));
  }
  return RUN_ALL_TESTS();
}
