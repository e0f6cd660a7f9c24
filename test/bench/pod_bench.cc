// kubevirt-cri benchmarks against the real daemon (results go to docs/benchmarks.md):
//   pod_start  RunPodSandbox -> CreateContainer -> StartContainer, split into the
//              daemon's own time and libvirt's domain-create time (reported by the
//              daemon in ContainerStatus verbose info), median of N runs;
//   list       ListPodSandbox / ListContainers / PodSandboxStatus latency with P pods.
//   same_image two VMs from one big containerDisk (--same-image-layout DIR, made by
//              test/bench/make-big-image.sh): create + start of the first and second.
// Usage: pod_bench [--runs N] [--pods P] [--same-image-layout DIR]
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test/client/test_daemon.h"
#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t idx = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[idx];
}

// VmRSS of `pid` in KiB (0 when unreadable).
long RssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  long value = 0;
  while (in >> key) {
    if (key == "VmRSS:") {
      in >> value;
      return value;
    }
    in.ignore(1 << 12, '\n');
  }
  return 0;
}

int Main(int argc, char** argv) {
  int runs = 10, pods = 100;
  std::string same_image_layout;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--runs") runs = std::atoi(argv[i + 1]);
    if (a == "--pods") pods = std::atoi(argv[i + 1]);
    if (a == "--same-image-layout") same_image_layout = argv[i + 1];
  }
  TestDaemon d;
  d.Start();
  std::string out;
  if (d.RunSubcommand({"images", "import", GuestImageDir("oci-kernel"), "bench/kernel:latest"}, &out) != 0) {
    std::fprintf(stderr, "import failed: %s\n", out.c_str());
    return 1;
  }

  // pod_start
  std::vector<double> total, own, libvirt, cni, wiring;
  for (int i = 0; i < runs; ++i) {
    PodTimings t;
    std::string pod_id, ctr_id;
    if (!StartPod(d, "bench-" + std::to_string(i), "bench/kernel:latest", &pod_id, &ctr_id, &t)) return 1;
    total.push_back(t.total_ms);
    libvirt.push_back(t.libvirt_create_ms);
    // Our own time: everything but libvirt's domain create and the CNI
    // plugins (external programs the node's network brings).
    own.push_back(t.total_ms - t.libvirt_create_ms - t.cni_plugins_ms);
    cni.push_back(t.cni_plugins_ms);
    wiring.push_back(t.wiring_ms);
    RemovePod(d, pod_id);
  }
  std::printf("pod_start runs=%d median_total_ms=%.2f median_libvirt_create_ms=%.2f median_cni_plugins_ms=%.2f "
              "median_wiring_dhcp_ms=%.2f median_own_ms=%.2f own_share=%.1f%%\n",
              runs, Percentile(total, 0.5), Percentile(libvirt, 0.5), Percentile(cni, 0.5), Percentile(wiring, 0.5),
              Percentile(own, 0.5),
              100.0 * Percentile(own, 0.5) / std::max(0.001, Percentile(libvirt, 0.5)));

  // Two VMs from one (big) containerDisk image: both boot from qcow2
  // overlays over the one stored disk, so the second starts as fast as the
  // first and neither copies the image.
  if (!same_image_layout.empty()) {
    auto ti = Clock::now();
    if (d.RunSubcommand({"images", "import", same_image_layout, "bench/big:latest"}, &out) != 0) {
      std::fprintf(stderr, "import failed: %s\n", out.c_str());
      return 1;
    }
    const double import_ms = Ms(Clock::now() - ti);
    std::vector<std::string> big_pods;
    std::vector<PodTimings> big;
    for (int i = 0; i < 2; ++i) {
      PodTimings t;
      std::string pod_id, ctr_id;
      if (!StartPod(d, "big-" + std::to_string(i), "bench/big:latest", &pod_id, &ctr_id, &t)) return 1;
      big_pods.push_back(pod_id);
      big.push_back(t);
      std::error_code ec;
      std::printf("same_image vm=%d create_ms=%.2f start_ms=%.2f overlay_bytes=%lld\n", i + 1, t.create_ms,
                  t.start_ms,
                  static_cast<long long>(fs::file_size(d.root() / "containers" / ctr_id / "disk.qcow2", ec)));
    }
    std::printf("same_image import_ms=%.0f first_create_plus_start_ms=%.2f second_create_plus_start_ms=%.2f\n",
                import_ms, big[0].create_ms + big[0].start_ms, big[1].create_ms + big[1].start_ms);
    for (const std::string& id : big_pods) RemovePod(d, id);
  }

  // Daemon memory per running VM Pod (QEMU's own memory is not ours).
  {
    const int vm_pods = 4;
    std::vector<std::string> vm_ids;
    const long before = RssKiB(d.pid());
    for (int i = 0; i < vm_pods; ++i) {
      std::string pod_id, ctr_id;
      if (!StartPod(d, "rss-" + std::to_string(i), "bench/kernel:latest", &pod_id, &ctr_id)) return 1;
      vm_ids.push_back(pod_id);
    }
    const long after = RssKiB(d.pid());
    std::printf("rss_vm daemon_kib_before=%ld after_%d_vm_pods_kib=%ld per_vm_pod_kib=%.1f\n", before, vm_pods, after,
                static_cast<double>(after - before) / vm_pods);
    for (const std::string& id : vm_ids) RemovePod(d, id);
  }

  // list latency with `pods` sandboxes (no VMs needed for the list path).
  std::vector<std::string> ids;
  const long rss_before = RssKiB(d.pid());
  for (int i = 0; i < pods; ++i) {
    pb::RunPodSandboxRequest req;
    *req.mutable_config() = SandboxConfig("list-" + std::to_string(i), d.log_dir());
    req.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse resp;
    grpc::Status s = d.runtime().RunPodSandbox(Ctx().get(), req, &resp);
    if (!s.ok()) {
      std::fprintf(stderr, "RunPodSandbox: %s\n", s.error_message().c_str());
      return 1;
    }
    ids.push_back(resp.pod_sandbox_id());
  }
  const long rss_after = RssKiB(d.pid());
  std::printf("rss daemon_kib_before=%ld after_%d_sandboxes_kib=%ld per_pod_kib=%.1f\n", rss_before, pods, rss_after,
              static_cast<double>(rss_after - rss_before) / std::max(1, pods));
  std::vector<double> list_pods, list_ctrs, pod_status;
  for (int i = 0; i < 1000; ++i) {
    auto t0 = Clock::now();
    pb::ListPodSandboxResponse lp;
    (void)d.runtime().ListPodSandbox(Ctx().get(), pb::ListPodSandboxRequest(), &lp);
    auto t1 = Clock::now();
    pb::ListContainersResponse lc;
    (void)d.runtime().ListContainers(Ctx().get(), pb::ListContainersRequest(), &lc);
    auto t2 = Clock::now();
    pb::PodSandboxStatusRequest sr;
    sr.set_pod_sandbox_id(ids[i % ids.size()]);
    pb::PodSandboxStatusResponse ss;
    (void)d.runtime().PodSandboxStatus(Ctx().get(), sr, &ss);
    auto t3 = Clock::now();
    list_pods.push_back(Ms(t1 - t0));
    list_ctrs.push_back(Ms(t2 - t1));
    pod_status.push_back(Ms(t3 - t2));
  }
  std::printf("list pods=%d ListPodSandbox_p50_ms=%.3f p99_ms=%.3f ListContainers_p50_ms=%.3f p99_ms=%.3f "
              "PodSandboxStatus_p50_ms=%.3f p99_ms=%.3f\n",
              pods, Percentile(list_pods, 0.5), Percentile(list_pods, 0.99), Percentile(list_ctrs, 0.5),
              Percentile(list_ctrs, 0.99), Percentile(pod_status, 0.5), Percentile(pod_status, 0.99));
  for (const std::string& id : ids) RemovePod(d, id);
  return 0;
}

}  // namespace
}  // namespace kvcri::testing

int main(int argc, char** argv) { return kvcri::testing::Main(argc, argv); }
