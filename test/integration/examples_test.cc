// Every crictl example in docs/examples/ run as crictl would run it, through our own CRI client, against the real
// daemon on the sample CNI network: the VM boots, its console is in the CRI log, the host reaches the HTTP ports
// the example names, volumes and user-data arrive in the guest, and stop/remove leave nothing behind.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "test/client/loop_device.h"
#include "test/client/examples.h"
#include "test/client/pod_helpers.h"
#include "test/fakes/shell.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;
namespace ex = examples;
using ::testing::HasSubstr;

constexpr auto kBootTimeout = std::chrono::seconds(300);

// docs/examples/cni's conflist with only what must be private to this test
// changed: the bridge name, the subnet and host-local's store (tests run side
// by side, and next to a demo on the same machine).
std::string LocalizedSampleConflist(const TestNetwork& net, const fs::path& ipam_dir) {
  nlohmann::json conf = nlohmann::json::parse(ex::ReadAll(ex::Dir() / "cni" / "10-kubevirt-cri-demo.conflist"));
  for (nlohmann::json& plugin : conf["plugins"]) {
    if (plugin["type"] != "bridge") continue;
    plugin["bridge"] = net.bridge;
    plugin["ipam"]["ranges"] = nlohmann::json::array({nlohmann::json::array({{{"subnet", net.subnet}}})});
    plugin["ipam"]["dataDir"] = ipam_dir.string();
  }
  return conf.dump(2);
}

class CrictlExamples : public ::testing::Test {
 protected:
  void SetUp() override {
    RequireIntegrationEnvironment(/*need_guest_images=*/true);
    net_ = MakeTestNetwork(ipam_.path());
    TestDaemon::Options opts;
    opts.cni_conflist = LocalizedSampleConflist(net_, ipam_.path());
    d_ = std::make_unique<TestDaemon>(opts);
    d_->Start();
    // What scripts/demo.sh does: the guest's containerDisk, imported under the examples' image name.
    std::string out;
    ASSERT_EQ(d_->RunSubcommand({"images", "import", GuestImageDir("oci-disk"), ex::kDemoImage}, &out), 0) << out;
  }
  void TearDown() override {
    d_.reset();
    loops_.clear();
    // The bridge plugin leaves its bridge behind by design (shared by Pods).
    Sh("ip link del " + net_.bridge);
  }

  // Runs example `name` as `crictl runp --runtime kubevirt pod.json`, `crictl create POD container.json pod.json`,
  // `crictl start`, `crictl logs`, `crictl inspectp` (the IP) and `curl` would, then stops and removes it.
  void RunExample(const std::string& name) {
    pb::PodSandboxConfig pod;
    pb::ContainerConfig ctr;
    std::string error;
    ASSERT_TRUE(ex::ParseJson(ex::Dir() / name / "pod.json", &pod, &error)) << error;
    ASSERT_TRUE(ex::ParseJson(ex::Dir() / name / "container.json", &ctr, &error)) << error;
    // Local: the log directory, and host paths that stand in for the volumes kubelet would attach.
    pod.set_log_directory((d_->log_dir() / fs::path(pod.log_directory()).filename()).string());
    std::map<std::string, LoopDevice*> disk_of;  // container path -> its loop device
    std::map<std::string, fs::path> dir_of;      // container path -> the shared host directory
    std::string boot_device;                     // the container path the VM boots from
    if (auto it = pod.annotations().find("kubevirt-cri.io/boot-device"); it != pod.annotations().end()) {
      boot_device = it->second;
    }
    for (int i = 0; i < ctr.devices_size(); ++i) {
      pb::Device* dev = ctr.mutable_devices(i);
      fs::path link = vol_.path() / ("block" + std::to_string(i));
      const fs::path img = vol_.path() / ("block" + std::to_string(i) + ".img");
      if (dev->container_path() == boot_device) {
        // The persistent disk: a raw copy of the demo image's bootable disk.
        ShResult conv = Sh("qemu-img convert -f qcow2 -O raw '" + GuestImageDir("disk.qcow2") + "' '" +
                           img.string() + "'");
        ASSERT_EQ(conv.exit_code, 0) << conv.output;
        loops_.push_back(std::make_unique<LoopDevice>(img));
      } else {
        loops_.push_back(std::make_unique<LoopDevice>(img, "", 16 << 20));
      }
      // Handed over as a symlink to the device, as kubelet does for CSI raw block volumes.
      fs::create_symlink(loops_.back()->dev(), link);
      if (dev->container_path() != boot_device) disk_of[dev->container_path()] = loops_.back().get();
      dev->set_host_path(link.string());
    }
    for (int i = 0; i < ctr.mounts_size(); ++i) {
      pb::Mount* m = ctr.mutable_mounts(i);
      fs::path dir = vol_.path() / ("files" + std::to_string(i));
      fs::create_directories(dir);
      dir_of[m->container_path()] = dir;
      m->set_host_path(dir.string());
    }

    pb::RunPodSandboxRequest run;
    *run.mutable_config() = pod;
    run.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse run_resp;
    grpc::Status s = d_->runtime().RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &run_resp);
    ASSERT_TRUE(s.ok()) << "RunPodSandbox: " << s.error_message() << "\ndaemon:\n" << d_->DaemonLog();
    const std::string pod_id = run_resp.pod_sandbox_id();
    pb::CreateContainerRequest create;
    create.set_pod_sandbox_id(pod_id);
    *create.mutable_config() = ctr;
    *create.mutable_sandbox_config() = pod;
    pb::CreateContainerResponse create_resp;
    s = d_->runtime().CreateContainer(Ctx(std::chrono::seconds(120)).get(), create, &create_resp);
    ASSERT_TRUE(s.ok()) << "CreateContainer: " << s.error_message();
    const std::string ctr_id = create_resp.container_id();
    pb::StartContainerRequest start;
    start.set_container_id(ctr_id);
    pb::StartContainerResponse start_resp;
    s = d_->runtime().StartContainer(Ctx(std::chrono::seconds(120)).get(), start, &start_resp);
    ASSERT_TRUE(s.ok()) << "StartContainer: " << s.error_message() << "\ndaemon:\n" << d_->DaemonLog();

    // crictl logs: the guest's console in CRI log format.
    const fs::path log = fs::path(pod.log_directory()) / ctr.log_path();
    ASSERT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-READY", kBootTimeout))
        << ReadFileOrEmpty(log) << "\ndaemon:\n" << d_->DaemonLog();
    EXPECT_EQ(CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-READY"), 1);

    // The VM is sized by the container's resources as documented.
    pb::ContainerStatusResponse st = GetContainerStatus(*d_, ctr_id);
    EXPECT_EQ(st.status().state(), pb::CONTAINER_RUNNING);
    nlohmann::json info = nlohmann::json::parse(st.info().at("info"));
    const auto& res = ctr.linux().resources();
    if (res.cpu_quota() > 0 && res.cpu_period() > 0) {
      EXPECT_EQ(info["vcpus"], (res.cpu_quota() + res.cpu_period() - 1) / res.cpu_period());
    }
    if (res.memory_limit_in_bytes() > 0) {
      EXPECT_EQ(info["memoryMib"], res.memory_limit_in_bytes() >> 20);
    }

    // user-data reached the guest's seed byte for byte.
    if (auto it = pod.annotations().find("kubevirt-cri.io/user-data"); it != pod.annotations().end()) {
      const fs::path ud = vol_.path() / "user-data";
      std::ofstream(ud, std::ios::binary) << it->second;
      ShResult sum = Sh("sha256sum '" + ud.string() + "'");
      ASSERT_EQ(sum.exit_code, 0) << sum.output;
      const std::string line = "KUBEVIRT-CRI-GUEST-USERDATA " + std::to_string(it->second.size()) + " " +
                               sum.output.substr(0, sum.output.find(' '));
      EXPECT_TRUE(WaitForFileContains(log, line, kBootTimeout)) << line << "\n" << ReadFileOrEmpty(log);
    }
    // Volumes: the guest found each one at its container path and wrote to it; the host sees the writes.
    if (!disk_of.empty() || !dir_of.empty() || !boot_device.empty()) {
      ASSERT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-VOLUMES-DONE", kBootTimeout)) << ReadFileOrEmpty(log);
    }
    if (!boot_device.empty()) {
      // Booted from the device: it is vda, and no overlay of the image's disk exists.
      EXPECT_EQ(CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-BOOTDISK " + boot_device + " "), 1) << ReadFileOrEmpty(log);
      EXPECT_EQ(info["bootDevice"], boot_device);
      EXPECT_FALSE(fs::exists(d_->root() / "containers" / ctr_id / "disk.qcow2"));
    }
    for (const auto& [path, loop] : disk_of) {
      EXPECT_EQ(CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-BLOCK " + path + " "), 1) << ReadFileOrEmpty(log);
      EXPECT_EQ(CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-BLKWROTE " + path), 1) << ReadFileOrEmpty(log);
      EXPECT_THAT(loop->FirstSector(), HasSubstr("KVCRI-GUEST-WAS-HERE"));
    }
    for (const auto& [path, dir] : dir_of) {
      EXPECT_EQ(CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-MOUNT " + path + " ok"), 1) << ReadFileOrEmpty(log);
      EXPECT_THAT(ReadFileOrEmpty(dir / "guest-was-here"), HasSubstr("guest-was-here"));
    }

    // crictl inspectp: the Pod IP, from the sample network's subnet; then what the example says the guest serves.
    pb::PodSandboxStatusRequest sreq;
    sreq.set_pod_sandbox_id(pod_id);
    pb::PodSandboxStatusResponse sresp;
    ASSERT_TRUE(d_->runtime().PodSandboxStatus(Ctx().get(), sreq, &sresp).ok());
    const std::string ip = sresp.status().network().ip();
    const std::string prefix = net_.subnet.substr(0, net_.subnet.rfind('.') + 1);
    EXPECT_EQ(ip.rfind(prefix, 0), 0u) << ip << " not in " << net_.subnet;
    for (const ex::HttpCheck& check : ex::HttpChecks(name)) {
      SCOPED_TRACE("GET http://" + ip + ":" + std::to_string(check.port) + check.path);
      const std::string needle = check.path == "/" ? "kubevirt-cri-guest " + pod.hostname() : "200 OK";
      EXPECT_THAT(HttpGetUntil(ip, check.port, check.path, needle, std::chrono::seconds(120)), HasSubstr(needle))
          << ReadFileOrEmpty(log);
    }

    // crictl stop, stopp, rmp.
    pb::StopContainerRequest stop;
    stop.set_container_id(ctr_id);
    stop.set_timeout(30);
    pb::StopContainerResponse stop_resp;
    s = d_->runtime().StopContainer(Ctx(std::chrono::seconds(120)).get(), stop, &stop_resp);
    EXPECT_TRUE(s.ok()) << "StopContainer: " << s.error_message();
    EXPECT_TRUE(WaitForContainerState(*d_, ctr_id, pb::CONTAINER_EXITED, std::chrono::seconds(10)));
    RemovePod(*d_, pod_id);
    ExpectNoLeftovers(*d_);
    // ExpectNoLeftovers knows the TestDaemon's own network only: the sample network's IPs and veths.
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(ipam_.path() / "kubevirt-cri-demo", ec)) {
      const std::string f = e.path().filename();
      if (f != "lock" && f.rfind("last_reserved_ip", 0) != 0) ADD_FAILURE() << "IP still allocated: " << f;
    }
    for (const auto& e : fs::directory_iterator(fs::path("/sys/class/net") / net_.bridge / "brif", ec)) {
      ADD_FAILURE() << "veth left on bridge " << net_.bridge << ": " << e.path().filename();
    }
  }

  TempDir ipam_;
  TempDir vol_;
  TestNetwork net_;
  std::unique_ptr<TestDaemon> d_;
  std::vector<std::unique_ptr<LoopDevice>> loops_;
};

TEST_F(CrictlExamples, VmPodBootsWithItsUserDataAndLimitsAndServesHttpAtThePodIp) { RunExample("vm-pod"); }

TEST_F(CrictlExamples, VmVolumesGetsTheBlockDeviceAndTheDirectoryAtTheirContainerPaths) { RunExample("vm-volumes"); }

TEST_F(CrictlExamples, ReadinessProbeIsAnsweredOnThePodIpAsKubeletWouldProbeIt) { RunExample("readiness-probe"); }

TEST_F(CrictlExamples, PersistentVmBootsFromItsBlockDevice) { RunExample("persistent-vm"); }

// A new example must be run here too, or it could rot unnoticed.
TEST(CrictlExamplesList, EveryExampleHasATestAbove) {
  EXPECT_THAT(ex::Names(), ::testing::ElementsAre("persistent-vm", "readiness-probe", "vm-pod", "vm-volumes"));
}

}  // namespace
}  // namespace kvcri::testing
