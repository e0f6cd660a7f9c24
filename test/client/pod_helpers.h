// Pod helpers for integration tests and benchmarks: CRI configs, start/remove, waits.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "test/client/host_util.h"
#include "test/client/test_daemon.h"

namespace kvcri::testing {

// Path of a built guest artefact (oci-kernel, oci-disk, …) under KVCRI_GUEST_DIR.
std::string GuestImageDir(const std::string& name);

// A Pod config as kubelet sends it: metadata, a per-pod log directory under
// `log_root`, labels {"app": name}, and a hostname.
pb::PodSandboxConfig SandboxConfig(const std::string& name, const std::filesystem::path& log_root,
                                   const std::string& ns = "default");

// A VM container config: image, log path "vm/0.log".
pb::ContainerConfig VmContainerConfig(const std::string& name, const std::string& image);

struct PodTimings {
  double run_sandbox_ms = 0, create_ms = 0, start_ms = 0, total_ms = 0;
  // Reported by the daemon (ContainerStatus verbose info "timings").
  double libvirt_create_ms = 0;
  // Reported by the daemon (PodSandboxStatus verbose info "timings"): the
  // CNI plugins' run time (external programs) and our wiring + DHCP set-up.
  double cni_plugins_ms = 0, wiring_ms = 0;
};

// RunPodSandbox + CreateContainer + StartContainer; false (with a gtest
// failure) when a call fails.
bool StartPod(TestDaemon& d, const std::string& name, const std::string& image, std::string* pod_id,
              std::string* container_id, PodTimings* timings = nullptr,
              pb::PodSandboxConfig* sandbox_out = nullptr);

// The same with a caller-made sandbox config (port mappings, DNS, ...).
bool StartPodWithConfig(TestDaemon& d, const pb::PodSandboxConfig& config, const std::string& image,
                        std::string* pod_id, std::string* container_id, PodTimings* timings = nullptr);

// The same with a caller-made container config too (memory limit, ...).
bool StartPodWithConfigs(TestDaemon& d, const pb::PodSandboxConfig& config, const pb::ContainerConfig& container,
                         std::string* pod_id, std::string* container_id, PodTimings* timings = nullptr);

// CreateContainer of `config` in `pod_id` (made from `sandbox`); the new
// container's id in *container_id ("" on error). The call's status.
grpc::Status CreateContainerIn(TestDaemon& d, const std::string& pod_id, const pb::PodSandboxConfig& sandbox,
                               const pb::ContainerConfig& config, std::string* container_id,
                               std::chrono::seconds timeout = std::chrono::seconds(60));

// kubelet restarting a Pod's VM: StopContainer(ctr, timeout 0), then a new
// container of `image` (attempt 1, logging to vm/1.log) created and started.
// Its id, or "" with a gtest failure.
std::string RestartVmContainer(TestDaemon& d, const std::string& pod_id, const std::string& ctr,
                               const pb::PodSandboxConfig& sandbox, const std::string& image);

// StopPodSandbox + RemovePodSandbox (which removes its containers).
void RemovePod(TestDaemon& d, const std::string& pod_id);

// Waits until the file contains `needle`; returns whether it did.
bool WaitForFileContains(const std::filesystem::path& path, const std::string& needle,
                         std::chrono::seconds timeout);


// ContainerStatus with verbose info; fails the test when the call fails.
pb::ContainerStatusResponse GetContainerStatus(TestDaemon& d, const std::string& id);

// Polls ContainerStatus until the container reaches `state`.
bool WaitForContainerState(TestDaemon& d, const std::string& id, pb::ContainerState state,
                           std::chrono::seconds timeout);

}  // namespace kvcri::testing

namespace kvcri::testing {

inline constexpr char kKernelImage[] = "kvcri.test/guest-kernel:latest";
inline constexpr char kDiskImage[] = "kvcri.test/guest-disk:latest";

// Imports the built guest images into the daemon's store under kKernelImage
// and kDiskImage (through the `images import` subcommand, as operators do).
void ImportGuestImages(TestDaemon& d);

// Pids of processes whose command line contains `needle`.
std::vector<int> ProcessesMatching(const std::string& needle);

// Nothing of any Pod is left: container dirs, netns, sandbox records, QEMU
// processes, libvirt domain definitions.
void ExpectNoLeftovers(TestDaemon& d);

// Lines of a CRI log file that carry `needle`, checked for the CRI format
// "<RFC3339Nano> stdout F|P <text>".
int CountCriLogLines(const std::filesystem::path& log, const std::string& needle);

}  // namespace kvcri::testing
