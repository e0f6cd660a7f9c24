// Pod start side by side with bare libvirt (results go to docs/benchmarks.md):
//   direct  LibvirtHypervisor::Create of the test guest (with a cloud-init seed
//           disk like a Pod's) on an embedded driver of this process, until
//           the guest prints READY on its console;
//   pod     RunPodSandbox -> CreateContainer -> StartContainer of the same
//           guest (same kernel, initrd, command line, vCPUs, memory) through
//           the daemon, until READY appears on its console (and, reported
//           apart, in the Pod's CRI log). The Pod's VM also has its NIC.
// Runs alternate so both see the same machine. Target: pod <= 1.1 x direct.
// Usage: boot_bench [--runs N]   (root; KVCRI_GUEST_DIR built)
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "runtime/accelerator.h"
#include "runtime/cloud_init_seed.h"
#include "runtime/libvirt_hypervisor.h"
#include "test/client/pod_helpers.h"
#include "test/client/test_daemon.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kReady[] = "KUBEVIRT-CRI-GUEST-READY";
constexpr char kCmdline[] = "console=ttyS0 panic=-1 quiet";

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Polls `path` every 5 ms until it holds READY; the elapsed time since t0.
double UntilReady(const fs::path& path, Clock::time_point t0) {
  auto deadline = t0 + std::chrono::minutes(4);
  while (Clock::now() < deadline) {
    if (ReadFileOrEmpty(path).find(kReady) != std::string::npos) return Ms(Clock::now() - t0);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return -1;
}

int Main(int argc, char** argv) {
  int runs = 5;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--runs") runs = std::atoi(argv[i + 1]);
  }
  const fs::path guest = KVCRI_GUEST_DIR;
  absl::StatusOr<runtime::AccelChoice> accel =
      runtime::ChooseAccelerator(config::Accelerator::kAuto, runtime::HostProbe());
  if (!accel.ok()) {
    std::fprintf(stderr, "no accelerator: %s\n", std::string(accel.status().message()).c_str());
    return 1;
  }

  TempDir direct_root;
  runtime::LibvirtHypervisorOptions options;
  options.uri = "qemu:///embed?root=" + (direct_root.path() / "lv").string();
  absl::StatusOr<std::unique_ptr<runtime::LibvirtHypervisor>> hv = runtime::LibvirtHypervisor::Open(options);
  if (!hv.ok()) {
    std::fprintf(stderr, "libvirt: %s\n", std::string(hv.status().message()).c_str());
    return 1;
  }

  TestDaemon d;
  d.Start();
  ImportGuestImages(d);

  std::vector<double> direct, pod, pod_api, pod_cri_log;
  for (int i = 0; i < runs; ++i) {
    // Bare libvirt.
    runtime::VmSpec spec;
    spec.name = "kvcri-direct" + std::to_string(i);
    spec.container_id = "direct" + std::to_string(i);
    spec.pod_id = "pod-direct" + std::to_string(i);
    spec.pod_namespace = "default";
    spec.pod_name = "direct";
    spec.vcpus = 1;
    spec.memory_mib = 256;
    spec.accel = accel->accel;
    spec.kernel = guest / "vmlinuz";
    spec.initrd = guest / "initrd.img";
    spec.cmdline = kCmdline;
    fs::create_directories(direct_root.path() / spec.container_id);
    spec.console_log = direct_root.path() / spec.container_id / "console.log";
    // The same extra hardware the Pod's VM has: its cloud-init seed disk.
    runtime::CloudInitSeed seed;
    seed.instance_id = spec.container_id;
    seed.hostname = "direct";
    const fs::path seed_path = direct_root.path() / spec.container_id / "cidata.img";
    if (absl::Status s = runtime::WriteSeedImage(seed_path, seed); !s.ok()) return 1;
    runtime::DiskSpec seed_disk;
    seed_disk.path = seed_path;
    seed_disk.format = "raw";
    seed_disk.read_only = true;
    seed_disk.serial = "cidata";
    spec.disks.push_back(seed_disk);
    auto t0 = Clock::now();
    if (absl::Status s = (*hv)->Create(spec); !s.ok()) {
      std::fprintf(stderr, "direct create: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    double ready = UntilReady(spec.console_log, t0);
    (void)(*hv)->Destroy(spec.name);
    (void)(*hv)->Remove(spec.name);
    if (ready < 0) return 1;
    direct.push_back(ready);

    // Through the CRI, same guest and command line.
    pb::PodSandboxConfig config = SandboxConfig("boot-" + std::to_string(i), d.log_dir());
    (*config.mutable_annotations())["kubevirt-cri.io/kernel-cmdline"] = kCmdline;
    std::string pod_id, ctr_id;
    t0 = Clock::now();
    if (!StartPodWithConfig(d, config, kKernelImage, &pod_id, &ctr_id)) return 1;
    pod_api.push_back(Ms(Clock::now() - t0));
    // The guest's console itself (the CRI log copy follows within its 100 ms poll).
    ready = UntilReady(d.root() / "containers" / ctr_id / "console.log", t0);
    double cri_log = UntilReady(d.log_dir() / ("default_boot-" + std::to_string(i)) / "vm" / "0.log", t0);
    RemovePod(d, pod_id);
    if (ready < 0 || cri_log < 0) return 1;
    pod.push_back(ready);
    pod_cri_log.push_back(cri_log);
  }
  std::printf("boot runs=%d direct_libvirt_to_ready_median_ms=%.1f pod_to_ready_median_ms=%.1f "
              "pod_to_ready_in_cri_log_median_ms=%.1f pod_api_calls_median_ms=%.1f ratio=%.3f\n",
              runs, Median(direct), Median(pod), Median(pod_cri_log), Median(pod_api),
              Median(pod) / std::max(1.0, Median(direct)));
  return 0;
}

}  // namespace
}  // namespace kvcri::testing

int main(int argc, char** argv) { return kvcri::testing::Main(argc, argv); }
