// kubevirt-cri benchmarks against the real daemon (results go to docs/benchmarks.md):
//   pod_start  RunPodSandbox -> CreateContainer -> StartContainer, split into the
//              daemon's own time and libvirt's domain-create time (reported by the
//              daemon in ContainerStatus verbose info), median of N runs;
//   list       ListPodSandbox / ListContainers / PodSandboxStatus latency with P pods.
//   list_while_stopping  (--stopping N) the same reads, plus ContainerStatus, while N
//              VM Pods whose guest ignores the power button are in a 30 s graceful
//              StopContainer, next to the same reads while they run; also Pod
//              sandbox churn (run, stop, remove) meanwhile.
//   same_image two VMs from one big containerDisk (--same-image-layout DIR, made by
//              test/bench/make-big-image.sh): create + start of the first and second.
// Usage: pod_bench [--runs N] [--pods P] [--stopping N] [--same-image-layout DIR]
//                  [--daemon PATH]  (another kubevirt-cri build, to compare side by side)
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
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

// Latencies of the reads kubelet makes every second, one entry per call.
struct ReadLatencies {
  std::vector<double> list_pods, list_ctrs, pod_status, ctr_status;
};

// `rounds` rounds of ListPodSandbox, ListContainers, PodSandboxStatus (of
// `sandboxes` in turn) and, when `containers` is not empty, ContainerStatus
// (of `containers` in turn).
ReadLatencies ReadRounds(TestDaemon& d, const std::vector<std::string>& sandboxes,
                         const std::vector<std::string>& containers, int rounds = 1000) {
  ReadLatencies r;
  for (int i = 0; i < rounds; ++i) {
    auto t0 = Clock::now();
    pb::ListPodSandboxResponse lp;
    (void)d.runtime().ListPodSandbox(Ctx().get(), pb::ListPodSandboxRequest(), &lp);
    auto t1 = Clock::now();
    pb::ListContainersResponse lc;
    (void)d.runtime().ListContainers(Ctx().get(), pb::ListContainersRequest(), &lc);
    auto t2 = Clock::now();
    pb::PodSandboxStatusRequest sr;
    sr.set_pod_sandbox_id(sandboxes[i % sandboxes.size()]);
    pb::PodSandboxStatusResponse ss;
    (void)d.runtime().PodSandboxStatus(Ctx().get(), sr, &ss);
    auto t3 = Clock::now();
    r.list_pods.push_back(Ms(t1 - t0));
    r.list_ctrs.push_back(Ms(t2 - t1));
    r.pod_status.push_back(Ms(t3 - t2));
    if (containers.empty()) continue;
    pb::ContainerStatusRequest cr;
    cr.set_container_id(containers[i % containers.size()]);
    pb::ContainerStatusResponse cs;
    (void)d.runtime().ContainerStatus(Ctx().get(), cr, &cs);
    r.ctr_status.push_back(Ms(Clock::now() - t3));
  }
  return r;
}

void PrintReads(const char* name, int pods, const ReadLatencies& r) {
  double worst = 0;
  for (const auto* v : {&r.list_pods, &r.list_ctrs, &r.pod_status, &r.ctr_status}) {
    for (double ms : *v) worst = std::max(worst, ms);
  }
  std::printf("%s pods=%d ListPodSandbox_p50_ms=%.3f p99_ms=%.3f ListContainers_p50_ms=%.3f p99_ms=%.3f "
              "PodSandboxStatus_p50_ms=%.3f p99_ms=%.3f",
              name, pods, Percentile(r.list_pods, 0.5), Percentile(r.list_pods, 0.99), Percentile(r.list_ctrs, 0.5),
              Percentile(r.list_ctrs, 0.99), Percentile(r.pod_status, 0.5), Percentile(r.pod_status, 0.99));
  if (!r.ctr_status.empty()) {
    std::printf(" ContainerStatus_p50_ms=%.3f p99_ms=%.3f", Percentile(r.ctr_status, 0.5),
                Percentile(r.ctr_status, 0.99));
  }
  std::printf(" max_ms=%.3f\n", worst);
}

// RunPodSandbox + StopPodSandbox + RemovePodSandbox of `n` Pods without a
// VM, one after the other: what another Pod's kubelet calls see. Time of
// each cycle in ms; fewer entries when a RunPodSandbox failed.
std::vector<double> SandboxChurn(TestDaemon& d, const std::string& prefix, int n) {
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    pb::RunPodSandboxRequest req;
    *req.mutable_config() = SandboxConfig(prefix + "-" + std::to_string(i), d.log_dir());
    req.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse resp;
    grpc::Status s = d.runtime().RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), req, &resp);
    if (!s.ok()) {
      std::fprintf(stderr, "RunPodSandbox: %s\n", s.error_message().c_str());
      break;
    }
    RemovePod(d, resp.pod_sandbox_id());
    ms.push_back(Ms(Clock::now() - t0));
  }
  return ms;
}

void PrintChurn(const char* name, const std::vector<double>& ms) {
  std::printf("%s cycles=%zu run_stop_remove_median_ms=%.1f max_ms=%.1f\n", name, ms.size(), Percentile(ms, 0.5),
              ms.empty() ? 0.0 : *std::max_element(ms.begin(), ms.end()));
}

int Main(int argc, char** argv) {
  int runs = 10, pods = 100, stopping = 0;
  std::string same_image_layout;
  TestDaemon::Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--runs") runs = std::atoi(argv[i + 1]);
    if (a == "--pods") pods = std::atoi(argv[i + 1]);
    if (a == "--stopping") stopping = std::atoi(argv[i + 1]);
    if (a == "--same-image-layout") same_image_layout = argv[i + 1];
    if (a == "--daemon") options.daemon_path = argv[i + 1];
  }
  std::printf("daemon %s\n", options.daemon_path.c_str());
  TestDaemon d(options);
  d.Start();
  std::string out;
  if (d.RunSubcommand({"images", "import", GuestImageDir("oci-kernel"), "bench/kernel:latest"}, &out) != 0) {
    std::fprintf(stderr, "import failed: %s\n", out.c_str());
    return 1;
  }

  // pod_start
  std::vector<double> total, own, libvirt, cni, wiring, own_run, own_create, own_start;
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
    // The same split by call: which one a change in own time comes from.
    own_run.push_back(t.run_sandbox_ms - t.cni_plugins_ms);
    own_create.push_back(t.create_ms);
    own_start.push_back(t.start_ms - t.libvirt_create_ms);
    RemovePod(d, pod_id);
  }
  std::printf("pod_start runs=%d median_total_ms=%.2f median_libvirt_create_ms=%.2f median_cni_plugins_ms=%.2f "
              "median_wiring_dhcp_ms=%.2f median_own_ms=%.2f own_share=%.1f%%\n",
              runs, Percentile(total, 0.5), Percentile(libvirt, 0.5), Percentile(cni, 0.5), Percentile(wiring, 0.5),
              Percentile(own, 0.5),
              100.0 * Percentile(own, 0.5) / std::max(0.001, Percentile(libvirt, 0.5)));
  std::printf("pod_start_own median_run_sandbox_ms=%.2f median_create_container_ms=%.2f "
              "median_start_container_ms=%.2f\n",
              Percentile(own_run, 0.5), Percentile(own_create, 0.5), Percentile(own_start, 0.5));

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
  PrintReads("list", pods, ReadRounds(d, ids, {}));

  // The same reads while `stopping` VM Pods are in a graceful stop. Their
  // guests never see the power button (acpi=off), so each StopContainer
  // waits out its 30 s and forces the VM off; reads and other Pods' calls
  // must not wait behind that. PodSandboxStatus and ContainerStatus ask
  // about the stopping Pods themselves.
  if (stopping > 0) {
    const int grace_s = 30;
    std::vector<std::string> vm_pods, vm_ctrs;
    std::vector<fs::path> consoles;
    for (int i = 0; i < stopping; ++i) {
      pb::PodSandboxConfig config = SandboxConfig("stop-" + std::to_string(i), d.log_dir());
      (*config.mutable_annotations())["kubevirt-cri.io/kernel-cmdline"] = "console=ttyS0 panic=-1 quiet acpi=off";
      pb::ContainerConfig ctr = VmContainerConfig("vm", "bench/kernel:latest");
      ctr.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(128ll << 20);
      std::string pod_id, ctr_id;
      if (!StartPodWithConfigs(d, config, ctr, &pod_id, &ctr_id)) return 1;
      vm_pods.push_back(pod_id);
      vm_ctrs.push_back(ctr_id);
      consoles.push_back(fs::path(config.log_directory()) / ctr.log_path());
    }
    // A stop pressed before the guest is up would test the boot, not the grace period.
    for (const fs::path& log : consoles) {
      if (!WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-READY", std::chrono::seconds(600))) {
        std::fprintf(stderr, "no READY in %s\n", log.c_str());
        return 1;
      }
    }
    PrintReads("list_running", pods + stopping, ReadRounds(d, vm_pods, vm_ctrs));
    PrintChurn("churn_running", SandboxChurn(d, "churn-running", 10));

    std::atomic<int> stops_returned{0};
    std::vector<double> stop_ms(stopping);
    std::vector<grpc::Status> stop_status(stopping);
    std::vector<std::thread> stoppers;
    const auto stop_t0 = Clock::now();
    for (int i = 0; i < stopping; ++i) {
      stoppers.emplace_back([&, i] {
        pb::StopContainerRequest req;
        req.set_container_id(vm_ctrs[i]);
        req.set_timeout(grace_s);
        pb::StopContainerResponse resp;
        auto t0 = Clock::now();
        stop_status[i] = d.runtime().StopContainer(Ctx(std::chrono::seconds(grace_s + 90)).get(), req, &resp);
        stop_ms[i] = Ms(Clock::now() - t0);
        ++stops_returned;
      });
    }
    // Every stop has pressed the button and is waiting by then.
    std::this_thread::sleep_for(std::chrono::seconds(1));
    ReadLatencies reads = ReadRounds(d, vm_pods, vm_ctrs);
    // Proof that the reads ran inside the grace period: no stop had returned.
    const double reads_done_s = Ms(Clock::now() - stop_t0) / 1000;
    const int returned_during_reads = stops_returned.load();
    // A churn cycle that waits behind a stop ends only when that stop does.
    std::vector<double> churn = SandboxChurn(d, "churn-stopping", 10);
    const double churn_done_s = Ms(Clock::now() - stop_t0) / 1000;
    PrintReads("list_while_stopping", pods + stopping, reads);
    PrintChurn("churn_while_stopping", churn);
    for (std::thread& t : stoppers) t.join();
    int killed = 0;
    for (int i = 0; i < stopping; ++i) {
      pb::ContainerStatusResponse st = GetContainerStatus(d, vm_ctrs[i]);
      if (stop_status[i].ok() && st.status().state() == pb::CONTAINER_EXITED && st.status().reason() == "Killed") {
        ++killed;
      } else {
        std::fprintf(stderr, "StopContainer %s: %s, state %d reason \"%s\"\n", vm_ctrs[i].c_str(),
                     stop_status[i].error_message().c_str(), st.status().state(), st.status().reason().c_str());
      }
    }
    std::printf("stop_container n=%d timeout_s=%d min_ms=%.0f median_ms=%.0f max_ms=%.0f exited_killed=%d "
                "reads_done_at_s=%.1f stops_returned_by_then=%d churn_done_at_s=%.1f\n",
                stopping, grace_s, *std::min_element(stop_ms.begin(), stop_ms.end()), Percentile(stop_ms, 0.5),
                *std::max_element(stop_ms.begin(), stop_ms.end()), killed, reads_done_s, returned_during_reads,
                churn_done_s);
    for (const std::string& id : vm_pods) RemovePod(d, id);
  }
  for (const std::string& id : ids) RemovePod(d, id);
  return 0;
}

}  // namespace
}  // namespace kvcri::testing

int main(int argc, char** argv) { return kvcri::testing::Main(argc, argv); }
