// CRI devices and mounts of a VM Pod against the real daemon, libvirt and
// QEMU (TCG): loop devices as virtio-blk disks, host directories over 9p
// served by the VM's own unprivileged QEMU, a single-file mount through the
// seed; and the refusals, which need no VM. One VM boot in all.
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test/client/loop_device.h"
#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// Processes exit asynchronously after their domain is destroyed.
bool NoProcessMatchesWithin(const std::string& needle, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ProcessesMatching(needle).empty()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return true;
}

class VolumesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RequireIntegrationEnvironment(/*need_guest_images=*/true);
    ASSERT_EQ(::system("command -v losetup >/dev/null"), 0) << "losetup missing (package mount)";
  }

  std::string RunSandbox(TestDaemon& d, const std::string& name, pb::PodSandboxConfig* config) {
    pb::RunPodSandboxRequest run;
    *run.mutable_config() = SandboxConfig(name, d.log_dir());
    run.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse rr;
    grpc::Status s = d.runtime().RunPodSandbox(Ctx().get(), run, &rr);
    EXPECT_TRUE(s.ok()) << s.error_message();
    *config = run.config();
    return rr.pod_sandbox_id();
  }
};

void AddDevice(pb::ContainerConfig& c, const std::string& container, const std::string& host,
               const std::string& perms) {
  pb::Device* d = c.add_devices();
  d->set_container_path(container);
  d->set_host_path(host);
  d->set_permissions(perms);
}

void AddMount(pb::ContainerConfig& c, const std::string& container, const std::string& host, bool ro) {
  pb::Mount* m = c.add_mounts();
  m->set_container_path(container);
  m->set_host_path(host);
  m->set_readonly(ro);
}

TEST_F(VolumesTest, LoopDevicesAndHostDirectoriesReachTheGuestAndAreReleased) {
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  TempDir t;
  LoopDevice rw_disk(t.path() / "rw.img", "HOST-RW");
  LoopDevice ro_disk(t.path() / "ro.img", "HOST-RO");
  ASSERT_FALSE(rw_disk.dev().empty());
  ASSERT_FALSE(ro_disk.dev().empty());
  const fs::path rw_dir = t.path() / "rwdir", ro_dir = t.path() / "rodir";
  fs::create_directories(rw_dir);
  fs::create_directories(ro_dir);
  std::ofstream(rw_dir / "kvcri-probe") << "host-rw-content\n";
  std::ofstream(ro_dir / "kvcri-probe") << "host-ro-content\n";
  std::ofstream(t.path() / "hosts") << "10.1.2.3 volumes-test-host\n";

  pb::PodSandboxConfig sandbox;
  std::string pod_id = RunSandbox(d, "vols", &sandbox);
  ASSERT_FALSE(pod_id.empty());
  pb::ContainerConfig c = VmContainerConfig("vm", kKernelImage);
  AddDevice(c, "/dev/xvdb", rw_disk.dev(), "rwm");
  AddDevice(c, "/dev/xvdc", ro_disk.dev(), "r");
  AddMount(c, "/data", rw_dir.string(), false);
  AddMount(c, "/config", ro_dir.string(), true);
  AddMount(c, "/etc/hosts", (t.path() / "hosts").string(), false);
  std::string ctr_id;
  grpc::Status s = CreateContainerIn(d, pod_id, sandbox, c, &ctr_id);
  ASSERT_TRUE(s.ok()) << s.error_message();
  pb::StartContainerRequest sr;
  sr.set_container_id(ctr_id);
  pb::StartContainerResponse sresp;
  s = d.runtime().StartContainer(Ctx(std::chrono::seconds(120)).get(), sr, &sresp);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << d.DaemonLog();

  const fs::path log = fs::path(sandbox.log_directory()) / "vm/0.log";
  ASSERT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-VOLUMES-DONE", std::chrono::seconds(240)))
      << "log:\n" << ReadFileOrEmpty(log) << "\ndaemon:\n" << d.DaemonLog();
  const std::string text = ReadFileOrEmpty(log);
  auto expect_line = [&](const std::string& needle) {
    EXPECT_EQ(CountCriLogLines(log, needle), 1) << "missing \"" << needle << "\" in:\n" << text;
  };
  expect_line("KUBEVIRT-CRI-GUEST-VOLUMES-DONE 5");
  // Block devices: virtio disks with serials from the container paths.
  expect_line("KUBEVIRT-CRI-GUEST-BLOCK /dev/xvdb xvdb vd");
  expect_line("KUBEVIRT-CRI-GUEST-BLOCK /dev/xvdc xvdc vd");
  EXPECT_THAT(text, HasSubstr("/dev/xvdb xvdb vd"));
  EXPECT_EQ(CountCriLogLines(log, "ro=1"), 1) << text;  // only xvdc
  expect_line("KUBEVIRT-CRI-GUEST-BLKWROTE /dev/xvdb");
  expect_line("KUBEVIRT-CRI-GUEST-ROBLK /dev/xvdc");
  // Directories: host content readable, rw writable, ro refused also after a guest remount.
  // 9p, not virtio-fs: libvirt 9.0 would run virtiofsd as root (docs/security.md "Shares").
  expect_line("KUBEVIRT-CRI-GUEST-MOUNT /data ok 9p");
  expect_line("KUBEVIRT-CRI-GUEST-MOUNT /config ok 9p");
  expect_line("KUBEVIRT-CRI-GUEST-FILE /data/kvcri-probe host-rw-content");
  expect_line("KUBEVIRT-CRI-GUEST-FILE /config/kvcri-probe host-ro-content");
  expect_line("KUBEVIRT-CRI-GUEST-WROTE /data/guest-was-here");
  expect_line("KUBEVIRT-CRI-GUEST-ROFS /config");
  expect_line("KUBEVIRT-CRI-GUEST-ROFS-HOST /config");
  EXPECT_EQ(ReadFileOrEmpty(rw_dir / "guest-was-here"), "guest-was-here data\n");
  EXPECT_FALSE(fs::exists(ro_dir / "guest-was-here"));
  // The single-file mount arrives through the seed.
  expect_line("KUBEVIRT-CRI-GUEST-FILEMOUNT /etc/hosts ok");
  expect_line("KUBEVIRT-CRI-GUEST-FILE /etc/hosts 10.1.2.3 volumes-test-host");

  // The share's server is the VM's QEMU, which belongs to the domain, not to
  // us: it survives a daemon crash.
  const std::string server = "path=" + rw_dir.string();
  EXPECT_FALSE(ProcessesMatching(server).empty()) << "no QEMU serving " << rw_dir;
  EXPECT_TRUE(ProcessesMatching("source=" + rw_dir.string()).empty()) << "a root virtiofsd serves a confined VM";
  d.Kill9();
  d.Start();
  EXPECT_FALSE(ProcessesMatching(server).empty()) << "the share's QEMU died with the daemon";
  EXPECT_EQ(GetContainerStatus(d, ctr_id).status().state(), pb::CONTAINER_RUNNING);

  // StopPodSandbox releases everything: no QEMU holding the disks or the shares.
  RemovePod(d, pod_id);
  EXPECT_TRUE(NoProcessMatchesWithin(rw_dir.string(), std::chrono::seconds(30)));
  EXPECT_TRUE(NoProcessMatchesWithin("\"" + rw_disk.dev() + "\"", std::chrono::seconds(30)));
  EXPECT_EQ(rw_disk.FirstSector(), "KVCRI-GUEST-WAS-HERE xvdb\n") << "the guest's write is on the loop device";
  EXPECT_EQ(ro_disk.FirstSector(), "HOST-RO") << "the read-only device was written";
  ExpectNoLeftovers(d);
}

TEST_F(VolumesTest, BadDevicesAndMountsAreRefusedLeavingNothing) {
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  TempDir t;
  std::ofstream(t.path() / "plain.img") << "not a device";
  fs::create_directories(t.path() / "real");
  fs::create_directory_symlink(t.path() / "real", t.path() / "link");

  pb::PodSandboxConfig sandbox;
  std::string pod_id = RunSandbox(d, "badvols", &sandbox);
  ASSERT_FALSE(pod_id.empty());
  struct Case {
    const char* what;
    grpc::StatusCode code;
    const char* field;
    const char* reason;
    std::function<void(pb::ContainerConfig&)> add;
  };
  const std::vector<Case> cases = {
      {"device is a regular file", grpc::StatusCode::INVALID_ARGUMENT, "config.devices[0].host_path",
       "not a block device",
       [&](pb::ContainerConfig& c) { AddDevice(c, "/dev/xvdb", (t.path() / "plain.img").string(), "rwm"); }},
      {"mount host path missing", grpc::StatusCode::NOT_FOUND, "config.mounts[1].host_path", "does not exist",
       [&](pb::ContainerConfig& c) {
         AddMount(c, "/ok", (t.path() / "real").string(), false);
         AddMount(c, "/data", (t.path() / "missing").string(), false);
       }},
      {"mount host path is a symlink", grpc::StatusCode::INVALID_ARGUMENT, "config.mounts[0].host_path", "symlink",
       [&](pb::ContainerConfig& c) { AddMount(c, "/data", (t.path() / "link").string(), false); }},
  };
  for (const Case& k : cases) {
    pb::ContainerConfig c = VmContainerConfig("vm", kKernelImage);
    k.add(c);
    std::string ctr_id;
    grpc::Status s = CreateContainerIn(d, pod_id, sandbox, c, &ctr_id);
    EXPECT_EQ(s.error_code(), k.code) << k.what << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(k.field)) << k.what;
    EXPECT_THAT(s.error_message(), HasSubstr(k.reason)) << k.what;
    pb::ListContainersResponse lc;
    ASSERT_TRUE(d.runtime().ListContainers(Ctx().get(), pb::ListContainersRequest(), &lc).ok());
    EXPECT_EQ(lc.containers_size(), 0) << k.what << ": a refused CreateContainer left a container";
  }
  RemovePod(d, pod_id);
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
