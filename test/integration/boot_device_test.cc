// Persistent VMs against the real daemon, libvirt and QEMU (TCG): a loop device holding the test guest's bootable
// disk, given as a CRI device with the kubevirt-cri.io/boot-device annotation, boots the VM; a file the guest writes
// there is on the disk when a new Pod boots the same device; a second Pod asking for it meanwhile is refused, also
// after a kill -9 of the daemon. Two VM boots in all.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "test/client/exec_helpers.h"
#include "test/client/loop_device.h"
#include "test/client/pod_helpers.h"
#include "test/fakes/shell.h"

namespace kvcri::testing {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr char kBootDevice[] = "kubevirt-cri.io/boot-device";

class BootDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RequireIntegrationEnvironment(/*need_guest_images=*/true);
    ASSERT_EQ(::system("command -v losetup >/dev/null"), 0) << "losetup missing (package mount)";
    ASSERT_EQ(::system("command -v qemu-img >/dev/null"), 0) << "qemu-img missing (package qemu-utils)";
  }

  // A Pod whose VM boots from the device at /dev/vda, `host_path` on the host.
  pb::PodSandboxConfig PodConfig(TestDaemon& d, const std::string& name) {
    pb::PodSandboxConfig c = SandboxConfig(name, d.log_dir());
    (*c.mutable_annotations())[kBootDevice] = "/dev/vda";
    return c;
  }
  pb::ContainerConfig VmConfig(const std::string& host_path) {
    // The containerDisk only stands in for the image kubelet needs: its disk
    // is not attached.
    pb::ContainerConfig c = VmContainerConfig("vm", kDiskImage);
    pb::Device* dev = c.add_devices();
    dev->set_container_path("/dev/vda");
    dev->set_host_path(host_path);
    dev->set_permissions("mrw");  // what kubelet sends for volumeDevices
    return c;
  }

  std::string RunSandbox(TestDaemon& d, const pb::PodSandboxConfig& config) {
    pb::RunPodSandboxRequest run;
    *run.mutable_config() = config;
    run.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse rr;
    grpc::Status s = d.runtime().RunPodSandbox(Ctx(std::chrono::seconds(60)).get(), run, &rr);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return rr.pod_sandbox_id();
  }

  // Waits for the guest to have booted from the device and its agent to
  // answer; false (with failures) when it does not.
  bool WaitBootedFromDevice(TestDaemon& d, const pb::PodSandboxConfig& sandbox, const std::string& ctr_id) {
    const fs::path log = fs::path(sandbox.log_directory()) / "vm/0.log";
    if (!WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-VOLUMES-DONE", std::chrono::seconds(300))) {
      ADD_FAILURE() << "the guest did not boot from the device; log:\n"
                    << ReadFileOrEmpty(log) << "\ndaemon:\n"
                    << d.DaemonLog();
      return false;
    }
    // vda is the device (serial from its container path), the only disk
    // beside the seed: no overlay of the image's disk exists.
    EXPECT_EQ(CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-DISK vda vda"), 1) << ReadFileOrEmpty(log);
    EXPECT_EQ(CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-DISK vdb cidata"), 1) << ReadFileOrEmpty(log);
    EXPECT_EQ(CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-DISK vdc"), 0) << ReadFileOrEmpty(log);
    EXPECT_EQ(CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-BOOTDISK /dev/vda vda vda ro=0"), 1) << ReadFileOrEmpty(log);
    absl::Status agent = WaitForExec(d, ctr_id, std::chrono::seconds(180));
    EXPECT_TRUE(agent.ok()) << "the agent never answered: " << agent;
    return agent.ok();
  }

  // Runs `script` in the guest with sh -c; its stdout, or "" with a failure.
  std::string GuestSh(TestDaemon& d, const std::string& ctr_id, const std::string& script) {
    absl::StatusOr<pb::ExecSyncResponse> r = ExecSync(d, ctr_id, {"sh", "-c", script}, 60);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return "";
    EXPECT_EQ(r->exit_code(), 0) << script << "\nstdout: " << r->stdout() << "\nstderr: " << r->stderr();
    return r->stdout();
  }
};

TEST_F(BootDeviceTest, AVmBootsFromABlockDeviceKeepsItsDataAcrossPodsAndHoldsItAlone) {
  TempDir t;
  const fs::path raw = t.path() / "boot.raw";
  ShResult conv = Sh("qemu-img convert -f qcow2 -O raw '" + GuestImageDir("disk.qcow2") + "' '" + raw.string() + "'");
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  {
    LoopDevice loop(raw);
    ASSERT_FALSE(loop.dev().empty());
    struct stat st {};
    ASSERT_EQ(::stat(loop.dev().c_str(), &st), 0) << std::strerror(errno);
    const std::string numbers = absl::StrCat(major(st.st_rdev), ":", minor(st.st_rdev));
    // The same device at another path, as kubelet hands each Pod its own.
    const fs::path other_path = t.path() / "pv-node";
    ASSERT_EQ(::mknod(other_path.c_str(), S_IFBLK | 0600, st.st_rdev), 0) << std::strerror(errno);

    TestDaemon d;
    d.Start();
    ImportGuestImages(d);

    // First Pod: boots from the device and writes a file on its FAT partition.
    const pb::PodSandboxConfig first = PodConfig(d, "persist-1");
    std::string pod1, ctr1;
    ASSERT_TRUE(StartPodWithConfigs(d, first, VmConfig(loop.dev()), &pod1, &ctr1)) << d.DaemonLog();
    ASSERT_TRUE(WaitBootedFromDevice(d, first, ctr1));
    pb::ContainerStatusResponse st1 = GetContainerStatus(d, ctr1);
    EXPECT_THAT(st1.info().at("info"), HasSubstr("\"bootDevice\":\"/dev/vda\""));
    EXPECT_THAT(st1.info().at("info"), HasSubstr("\"boot\":\"device\""));
    EXPECT_EQ(GuestSh(d, ctr1,
                      "modprobe vfat; mkdir -p /mnt/p && mount -t vfat /dev/vda1 /mnt/p && "
                      "echo kept-across-pods >/mnt/p/persist.txt && sync && umount /mnt/p && echo written"),
              "written\n");

    // Second Pod, same device at another path, while the first runs.
    const pb::PodSandboxConfig second = PodConfig(d, "persist-2");
    const std::string pod2 = RunSandbox(d, second);
    ASSERT_FALSE(pod2.empty());
    auto expect_refused = [&] {
      std::string ctr;
      grpc::Status s = CreateContainerIn(d, pod2, second, VmConfig(other_path.string()), &ctr);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
      EXPECT_THAT(s.error_message(), HasSubstr("config.devices[0].host_path"));
      EXPECT_THAT(s.error_message(), HasSubstr("block device " + numbers));
      EXPECT_THAT(s.error_message(), HasSubstr("Pod \"default/persist-1\""));
      EXPECT_THAT(s.error_message(), HasSubstr(ctr1));
      pb::ListContainersRequest lr;
      lr.mutable_filter()->set_pod_sandbox_id(pod2);
      pb::ListContainersResponse lc;
      ASSERT_TRUE(d.runtime().ListContainers(Ctx().get(), lr, &lc).ok());
      EXPECT_EQ(lc.containers_size(), 0) << "a refused CreateContainer left a container";
    };
    expect_refused();
    // The hold is derived from the records on disk: a crashed daemon keeps it.
    d.Kill9();
    d.Start();
    expect_refused();

    // The first Pod goes (kubelet: StopPodSandbox + RemovePodSandbox); the
    // second boots the same disk and finds the file.
    RemovePod(d, pod1);
    // QEMU exits asynchronously after its domain is destroyed.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!ProcessesMatching("\"" + loop.dev() + "\"").empty() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    EXPECT_TRUE(ProcessesMatching("\"" + loop.dev() + "\"").empty()) << "a QEMU still holds " << loop.dev();
    std::string ctr2;
    grpc::Status s = CreateContainerIn(d, pod2, second, VmConfig(other_path.string()), &ctr2);
    ASSERT_TRUE(s.ok()) << s.error_message();
    pb::StartContainerRequest sr;
    sr.set_container_id(ctr2);
    pb::StartContainerResponse sresp;
    s = d.runtime().StartContainer(Ctx(std::chrono::seconds(120)).get(), sr, &sresp);
    ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << d.DaemonLog();
    ASSERT_TRUE(WaitBootedFromDevice(d, second, ctr2));
    EXPECT_EQ(GuestSh(d, ctr2,
                      "modprobe vfat; mkdir -p /mnt/p && mount -t vfat -o ro /dev/vda1 /mnt/p && "
                      "cat /mnt/p/persist.txt; umount /mnt/p"),
              "kept-across-pods\n");
    RemovePod(d, pod2);
    ExpectNoLeftovers(d);
  }
  // The loop device is detached: nothing holds the file any more.
  ShResult left = Sh("losetup -j '" + raw.string() + "'");
  EXPECT_EQ(left.exit_code, 0) << left.output;
  EXPECT_EQ(left.output, "") << "a loop device is still attached";
}

}  // namespace
}  // namespace kvcri::testing
