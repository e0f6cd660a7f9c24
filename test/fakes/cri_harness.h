// CriHarness: the cri/ services over the Pod orchestrator and fakes, for unit tests of the Pod lifecycle.
#pragma once

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include <gtest/gtest.h>

#include "cni/pod_network.h"
#include "config/base/clock.h"
#include "cri/pod_lifecycle.h"
#include "cri/runtime_service.h"
#include "runtime/console_log.h"
#include "sandbox/file_sandbox_store.h"
#include "test/fakes/fake_agent.h"
#include "test/fakes/fake_hypervisor.h"
#include "test/fakes/fake_image_store.h"
#include "test/fakes/fake_netns.h"
#include "test/fakes/fake_network.h"

namespace kvcri::cri {

namespace fs = std::filesystem;
using testing::FakeCniRunner;
using testing::FakeDhcp;
using testing::FakeHypervisor;
using testing::FakeImageStore;
using testing::FakeNetns;
using testing::FakeTapWiring;
using testing::NetworkCallLog;

// A RuntimeService over PodLifecycle and fakes, on a temp dir. Restart() is a
// daemon restart over the same disk state.
class CriHarness : public ::testing::Test {
 protected:
  void SetUp() override {
    // tmpfs when there is one: the timing tests measure our code, not fsync
    // latency on a busy disk.
    std::string tmpl = fs::is_directory("/dev/shm") ? "/dev/shm/kvcri-unit-XXXXXX" : "/tmp/kvcri-unit-XXXXXX";
    dir_ = ::mkdtemp(tmpl.data());
    config_.root = dir_ / "root";
    config_.state_dir = dir_ / "run";
    fs::create_directories(config_.root / "containers");
    fs::create_directories(dir_ / "images");
    std::ofstream(dir_ / "images" / "vmlinuz") << "kernel";
    runtime::image::ImageInfo kernel;
    kernel.id = "sha256:" + std::string(64, '1');
    kernel.repo_tags = {"example.com/vm:1"};
    kernel.boot.kind = runtime::image::BootKind::kKernel;
    kernel.boot.kernel = dir_ / "images" / "vmlinuz";
    images_.Add("example.com/vm:1", kernel);
    runtime::image::ImageInfo plain = kernel;
    plain.id = "sha256:" + std::string(64, '2');
    plain.boot = {};
    plain.boot.unbootable_reason = "no /disk/ file and no /boot/vmlinuz";
    images_.Add("busybox", plain);
    // A plain image whose layers were unpacked (the layer store's dirs).
    runtime::image::ImageInfo layered = plain;
    layered.id = "sha256:" + std::string(64, '3');
    fs::create_directories(dir_ / "images" / "layer0" / "bin");
    layered.layer_dirs = {dir_ / "images" / "layer0"};
    images_.Add("busybox-layered", layered);
    config_.microvm.kernel = dir_ / "microvm" / "vmlinuz";  // not there
    config_.microvm.initramfs = dir_ / "microvm" / "initramfs.img";
    Restart();
  }
  void TearDown() override {
    service_.reset();
    pods_.reset();
    fs::remove_all(dir_);
  }

  // A new service over the same disk state, like a daemon restart.
  void Restart() {
    service_.reset();
    pods_.reset();
    console_ = std::make_unique<runtime::ConsoleLogCopier>(runtime::ConsoleLogOptions{.start_thread = false});
    store_ = std::make_unique<sandbox::FileSandboxStore>(config_.root);
    absl::StatusOr<sandbox::LoadReport> report = store_->Load();
    ASSERT_TRUE(report.ok()) << report.status();
    RuntimeDeps deps;
    deps.clock = clock_;
    deps.config = &config_;
    deps.accelerator = config::Accelerator::kTcg;
    deps.hypervisor = &hv_;
    deps.console = console_.get();
    deps.images = &images_;
    deps.store = store_.get();
    deps.netns = &netns_;
    deps.network = &network_;
    deps.agents = &agents_;  // the daemon's: plain images take the micro-VM path
    if (add_deps_) add_deps_(deps);
    pods_ = std::make_unique<PodLifecycle>(deps, pod_options_);
    ASSERT_TRUE(pods_->Recover(*report).ok());
    service_ = std::make_unique<RuntimeService>(deps, pods_.get(), event_hub_);
  }

  pb::PodSandboxConfig PodConfig(const std::string& name) {
    pb::PodSandboxConfig c;
    c.mutable_metadata()->set_name(name);
    c.mutable_metadata()->set_namespace_("ns");
    c.mutable_metadata()->set_uid("uid-" + name);
    c.set_log_directory((dir_ / "logs" / name).string());
    (*c.mutable_labels())["app"] = name;
    return c;
  }

  grpc::Status RunPod(const std::string& name, std::string* id) { return RunPod(name, {}, id); }
  // With these Pod annotations (kubevirt-cri.io/firmware, .../boot-device, ...).
  grpc::Status RunPod(const std::string& name, const std::map<std::string, std::string>& annotations,
                      std::string* id) {
    pb::RunPodSandboxRequest req;
    *req.mutable_config() = PodConfig(name);
    for (const auto& [k, v] : annotations) (*req.mutable_config()->mutable_annotations())[k] = v;
    req.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse resp;
    grpc::Status s = service_->RunPodSandbox(nullptr, &req, &resp);
    *id = resp.pod_sandbox_id();
    return s;
  }

  grpc::Status CreateVm(const std::string& pod, const std::string& image, std::string* id,
                        const std::string& name = "vm", uint32_t attempt = 0) {
    pb::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod);
    req.mutable_config()->mutable_metadata()->set_name(name);
    req.mutable_config()->mutable_metadata()->set_attempt(attempt);
    req.mutable_config()->mutable_image()->set_image(image);
    req.mutable_config()->set_log_path("vm.log");
    pb::CreateContainerResponse resp;
    grpc::Status s = service_->CreateContainer(nullptr, &req, &resp);
    *id = resp.container_id();
    return s;
  }

  grpc::Status Start(const std::string& id) {
    pb::StartContainerRequest req;
    req.set_container_id(id);
    pb::StartContainerResponse resp;
    return service_->StartContainer(nullptr, &req, &resp);
  }

  pb::ContainerStatus Status(const std::string& id) {
    pb::ContainerStatusRequest req;
    req.set_container_id(id);
    pb::ContainerStatusResponse resp;
    EXPECT_TRUE(service_->ContainerStatus(nullptr, &req, &resp).ok());
    return resp.status();
  }

  grpc::Status StopCtr(const std::string& id, int64_t timeout) {
    pb::StopContainerRequest req;
    req.set_container_id(id);
    req.set_timeout(timeout);
    pb::StopContainerResponse resp;
    return service_->StopContainer(nullptr, &req, &resp);
  }
  grpc::Status StopPod(const std::string& id) {
    pb::StopPodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    pb::StopPodSandboxResponse resp;
    return service_->StopPodSandbox(nullptr, &req, &resp);
  }
  grpc::Status RemovePod(const std::string& id) {
    pb::RemovePodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    pb::RemovePodSandboxResponse resp;
    return service_->RemovePodSandbox(nullptr, &req, &resp);
  }
  grpc::Status RemoveCtr(const std::string& id) {
    pb::RemoveContainerRequest req;
    req.set_container_id(id);
    pb::RemoveContainerResponse resp;
    return service_->RemoveContainer(nullptr, &req, &resp);
  }
  // ListContainers: memory only, so it shows what the monitor settled.
  pb::ContainerState ListedState(const std::string& id) {
    pb::ListContainersRequest req;
    req.mutable_filter()->set_id(id);
    pb::ListContainersResponse resp;
    EXPECT_TRUE(service_->ListContainers(nullptr, &req, &resp).ok());
    return resp.containers_size() == 1 ? resp.containers(0).state() : pb::CONTAINER_UNKNOWN;
  }
  std::string RunningPodVm(const std::string& name, std::string* pod) {
    std::string ctr;
    EXPECT_TRUE(RunPod(name, pod).ok());
    EXPECT_TRUE(CreateVm(*pod, "example.com/vm:1", &ctr).ok());
    EXPECT_TRUE(Start(ctr).ok());
    return ctr;
  }

  base::ManualClock manual_clock_;
  base::RealClock real_clock_;
  // Manual by default (grace periods pass at once); tests of timing use real time.
  base::Clock* clock_ = &manual_clock_;
  PodLifecycleOptions pod_options_;
  // Set before SetUp: adds what a test needs to the deps on every Restart
  // (the store is new by then), e.g. the exec dispatcher.
  std::function<void(RuntimeDeps&)> add_deps_;
  // GetContainerEvents' hub, when add_deps_ makes one (it reads the store).
  ContainerEventHub* event_hub_ = nullptr;
  fs::path dir_;
  config::Config config_;
  testing::FakeGuestAgents agents_;
  FakeHypervisor hv_;
  FakeNetns netns_;
  FakeImageStore images_;
  NetworkCallLog net_log_;
  FakeCniRunner cni_{&net_log_};
  FakeTapWiring tap_{&net_log_};
  FakeDhcp dhcp_{&net_log_};
  cni::PodNetwork network_{&cni_, &tap_, &dhcp_};
  std::unique_ptr<runtime::ConsoleLogCopier> console_;
  std::unique_ptr<sandbox::FileSandboxStore> store_;
  std::unique_ptr<PodLifecycle> pods_;
  std::unique_ptr<RuntimeService> service_;
};

}  // namespace kvcri::cri
