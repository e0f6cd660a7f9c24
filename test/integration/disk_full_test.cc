// A full host disk under a VM's overlay: QEMU pauses the guest, ContainerStatus says so (RUNNING with reason
// PausedIOError and the failed disk), and the sweep resumes the guest once space is back.
#include <sys/mount.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// The overlay file moved onto a small tmpfs and bind-mounted back over its
// own path: the VM writes to the tmpfs. Unmounted on destruction (also when
// the test fails half-way), so the daemon can remove the container.
class SmallFsUnderOverlay {
 public:
  SmallFsUnderOverlay(const fs::path& overlay, const fs::path& mount_dir, uint64_t free_bytes)
      : overlay_(overlay), dir_(mount_dir) {
    fs::create_directories(dir_);
    const uint64_t size = fs::file_size(overlay) + free_bytes;
    const std::string opts = "size=" + std::to_string(size) + ",mode=0700";
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      ADD_FAILURE() << "mount tmpfs on " << dir_ << ": " << std::strerror(errno);
      return;
    }
    mounted_fs_ = true;
    fs::copy_file(overlay, dir_ / "disk.qcow2");
    // The copy keeps the overlay's owner: CreateContainer gave it to the VM's
    // own uid ([security] vm_uid_range), and QEMU runs as that uid.
    struct stat st {};
    if (::stat(overlay.c_str(), &st) != 0 || ::chown((dir_ / "disk.qcow2").c_str(), st.st_uid, st.st_gid) != 0) {
      ADD_FAILURE() << "keep the owner of " << overlay << ": " << std::strerror(errno);
      return;
    }
    ::chmod((dir_ / "disk.qcow2").c_str(), 0600);
    if (::mount((dir_ / "disk.qcow2").c_str(), overlay.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      ADD_FAILURE() << "bind-mount over " << overlay << ": " << std::strerror(errno);
      return;
    }
    mounted_bind_ = true;
  }
  ~SmallFsUnderOverlay() { Unmount(); }
  bool ok() const { return mounted_fs_ && mounted_bind_; }
  // Frees space: the tmpfs grows.
  bool Grow(uint64_t bytes) {
    const std::string opts = "size=" + std::to_string(bytes);
    return ::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT, opts.c_str()) == 0;
  }
  void Unmount() {
    if (mounted_bind_ && ::umount2(overlay_.c_str(), MNT_DETACH) == 0) mounted_bind_ = false;
    if (mounted_fs_ && ::umount2(dir_.c_str(), MNT_DETACH) == 0) mounted_fs_ = false;
  }

 private:
  fs::path overlay_, dir_;
  bool mounted_fs_ = false, mounted_bind_ = false;
};

// Polls ContainerStatus until `pred` holds; returns the last status.
template <typename Pred>
pb::ContainerStatus WaitForStatus(TestDaemon& d, const std::string& id, Pred pred, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  pb::ContainerStatus s;
  do {
    s = GetContainerStatus(d, id).status();
    if (pred(s)) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  } while (std::chrono::steady_clock::now() < deadline);
  return s;
}

TEST(DiskFull, AVmPausedByAFullHostDiskIsReportedAndResumedWhenSpaceIsBack) {
  RequireIntegrationEnvironment(true);
  TestDaemon::Options opts;
  // The sweep that retries the resume runs every second; the failure bound
  // stays far away.
  opts.extra_config = "[libvirt]\nstate_poll_seconds = 1\n[vm]\nio_error_timeout_seconds = 3600\n";
  TestDaemon d(opts);
  d.Start();
  ImportGuestImages(d);

  pb::PodSandboxConfig config = SandboxConfig("disk-full", d.log_dir());
  // The test guest writes 16 MiB over its boot disk (test/guest/rootfs/sbin/kvcri-fill).
  (*config.mutable_annotations())["kubevirt-cri.io/user-data"] = "#kvcri-fill 16\n";
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = config;
  run.set_runtime_handler("kubevirt");
  pb::RunPodSandboxResponse run_resp;
  grpc::Status s = d.runtime().RunPodSandbox(Ctx().get(), run, &run_resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const std::string pod = run_resp.pod_sandbox_id();
  pb::CreateContainerRequest create;
  create.set_pod_sandbox_id(pod);
  *create.mutable_config() = VmContainerConfig("vm", kDiskImage);
  *create.mutable_sandbox_config() = config;
  pb::CreateContainerResponse create_resp;
  s = d.runtime().CreateContainer(Ctx().get(), create, &create_resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const std::string ctr = create_resp.container_id();

  // 4 MiB free for a guest that writes 16.
  const fs::path overlay = d.root() / "containers" / ctr / "disk.qcow2";
  ASSERT_TRUE(fs::exists(overlay)) << overlay;
  {
    SmallFsUnderOverlay small(overlay, d.dir() / "small-fs", 4 << 20);
    ASSERT_TRUE(small.ok());

    pb::StartContainerRequest start;
    start.set_container_id(ctr);
    pb::StartContainerResponse start_resp;
    s = d.runtime().StartContainer(Ctx().get(), start, &start_resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    const std::string log = GetContainerStatus(d, ctr).status().log_path();
    ASSERT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-FILLING 16", std::chrono::seconds(300)))
        << ReadFileOrEmpty(log) << d.DaemonLog();

    // The disk fills up: the VM is paused, and says so instead of a plain RUNNING.
    pb::ContainerStatus paused = WaitForStatus(
        d, ctr, [](const pb::ContainerStatus& st) { return st.reason() == "PausedIOError"; },
        std::chrono::seconds(300));
    ASSERT_EQ(paused.reason(), "PausedIOError") << d.DaemonLog();
    EXPECT_EQ(paused.state(), pb::CONTAINER_RUNNING);
    EXPECT_THAT(paused.message(), HasSubstr("vda: no space left on the host"));
    EXPECT_THAT(paused.message(), HasSubstr("resumed once the host has space again"));
    // Still paused a few sweeps later (each one tried a resume), and the
    // guest's writes did not complete.
    std::this_thread::sleep_for(std::chrono::seconds(3));
    EXPECT_EQ(GetContainerStatus(d, ctr).status().reason(), "PausedIOError");
    EXPECT_THAT(ReadFileOrEmpty(log), ::testing::Not(HasSubstr("KUBEVIRT-CRI-GUEST-FILLED")));

    // Space is back: the next sweep resumes the VM, the guest finishes.
    ASSERT_TRUE(small.Grow(64 << 20)) << std::strerror(errno);
    EXPECT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-FILLED 0", std::chrono::seconds(120)))
        << ReadFileOrEmpty(log) << d.DaemonLog();
    pb::ContainerStatus resumed = WaitForStatus(
        d, ctr, [](const pb::ContainerStatus& st) { return st.reason().empty(); }, std::chrono::seconds(30));
    EXPECT_EQ(resumed.state(), pb::CONTAINER_RUNNING);
    EXPECT_EQ(resumed.reason(), "") << resumed.message();
    EXPECT_EQ(resumed.message(), "");

    // The VM off before its overlay's file system goes away.
    pb::StopPodSandboxRequest stop;
    stop.set_pod_sandbox_id(pod);
    pb::StopPodSandboxResponse stop_resp;
    s = d.runtime().StopPodSandbox(Ctx().get(), stop, &stop_resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  RemovePod(d, pod);
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
