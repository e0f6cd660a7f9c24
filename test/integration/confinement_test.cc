// QEMU confinement against the real daemon, libvirt and QEMU (TCG): per-VM uids, seccomp, and a hostile guest on a rw
// share.
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// The value of a "Key:\t..." line of /proc/<pid>/status.
std::string StatusField(int pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      std::string v = line.substr(key.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      v.erase(v.find_last_not_of(" \t") + 1);
      return v;
    }
  }
  return "";
}

std::string Cmdline(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (char& c : s) {
    if (c == '\0') c = ' ';
  }
  return s;
}

// The QEMU of container `id` (its domain is kvcri-<id>), or -1.
int QemuPid(const std::string& id) {
  for (int pid : ProcessesMatching("guest=kvcri-" + id)) {
    if (Cmdline(pid).find("qemu-system") != std::string::npos) return pid;
  }
  return -1;
}

// Whether uid/gid `id` (no supplementary groups, as QEMU runs) can open
// `path` with `flags`: a forked child drops to it and tries.
bool CanOpenAs(uint32_t id, const fs::path& path, int flags) {
  pid_t child = ::fork();
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(id, id, id) != 0 || ::setresuid(id, id, id) != 0) ::_exit(2);
    int fd = ::open(path.c_str(), flags | O_CLOEXEC);
    ::_exit(fd >= 0 ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 2) << "could not drop to uid " << id;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

uint32_t FirstNumber(const std::string& s) { return static_cast<uint32_t>(std::stoul(s)); }

class ConfinementTest : public ::testing::Test {
 protected:
  void SetUp() override { RequireIntegrationEnvironment(/*need_guest_images=*/true); }
};

TEST_F(ConfinementTest, EachQemuRunsUnderItsOwnUidWithSeccompAndAHostileGuestGetsNoSetuidRootOrDeviceOnAShare) {
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  TempDir t;
  const fs::path share = t.path() / "share";
  fs::create_directories(share);
  std::ofstream(share / "kvcri-hostile") << "guest: try setuid and mknod here\n";

  // VM A: disk boot (an overlay of its own) with a read-write share.
  pb::PodSandboxConfig sandbox_a = SandboxConfig("conf-a", d.log_dir());
  pb::ContainerConfig ctr_a = VmContainerConfig("vm", kDiskImage);
  pb::Mount* m = ctr_a.add_mounts();
  m->set_container_path("/data");
  m->set_host_path(share.string());
  std::string pod_a, a;
  ASSERT_TRUE(StartPodWithConfigs(d, sandbox_a, ctr_a, &pod_a, &a)) << d.DaemonLog();
  // VM B: the same image, nothing shared.
  std::string pod_b, b;
  pb::PodSandboxConfig sandbox_b;
  ASSERT_TRUE(StartPod(d, "conf-b", kDiskImage, &pod_b, &b, nullptr, &sandbox_b)) << d.DaemonLog();

  const int qemu_a = QemuPid(a), qemu_b = QemuPid(b);
  ASSERT_GT(qemu_a, 0) << "no QEMU for " << a;
  ASSERT_GT(qemu_b, 0) << "no QEMU for " << b;
  const uint32_t uid_a = FirstNumber(StatusField(qemu_a, "Uid")), uid_b = FirstNumber(StatusField(qemu_b, "Uid"));
  // The default range of config/kubevirt-cri.toml.
  for (uint32_t uid : {uid_a, uid_b}) {
    EXPECT_GE(uid, 2000000000u);
    EXPECT_LE(uid, 2000065535u);
  }
  EXPECT_NE(uid_a, uid_b) << "two VMs share a uid";
  for (int pid : {qemu_a, qemu_b}) {
    const std::string uids = StatusField(pid, "Uid"), gids = StatusField(pid, "Gid");
    // Real, effective, saved and filesystem uid are all the VM's.
    const std::string one = std::to_string(FirstNumber(uids));
    EXPECT_EQ(uids, one + "\t" + one + "\t" + one + "\t" + one);
    EXPECT_EQ(gids, uids) << "gid == uid";
    EXPECT_EQ(StatusField(pid, "Groups"), std::to_string(FirstNumber(uids))) << "no supplementary group but its own";
    EXPECT_EQ(StatusField(pid, "CapEff"), "0000000000000000");
    EXPECT_EQ(StatusField(pid, "Seccomp"), "2") << "QEMU runs without a seccomp filter";
    EXPECT_THAT(Cmdline(pid),
                HasSubstr("-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"));
  }

  // One VM's uid cannot open the other's overlay; each opens its own.
  const fs::path overlay_a = d.root() / "containers" / a / "disk.qcow2";
  const fs::path overlay_b = d.root() / "containers" / b / "disk.qcow2";
  ASSERT_TRUE(fs::exists(overlay_a));
  ASSERT_TRUE(fs::exists(overlay_b));
  EXPECT_TRUE(CanOpenAs(uid_a, overlay_a, O_RDWR)) << "positive control";
  EXPECT_TRUE(CanOpenAs(uid_b, overlay_b, O_RDWR)) << "positive control";
  EXPECT_FALSE(CanOpenAs(uid_a, overlay_b, O_RDONLY)) << "VM A's uid opens VM B's overlay";
  EXPECT_FALSE(CanOpenAs(uid_b, overlay_a, O_RDONLY)) << "VM B's uid opens VM A's overlay";
  EXPECT_FALSE(CanOpenAs(uid_a, d.root() / "containers" / b / "console.log", O_RDONLY));
  EXPECT_FALSE(CanOpenAs(uid_a, d.root() / "containers" / b / "cidata.img", O_RDONLY));
  EXPECT_FALSE(CanOpenAs(uid_b, share, O_RDONLY | O_DIRECTORY)) << "VM B reaches VM A's share";

  // Both guests boot and get their Pod IP with an unprivileged QEMU.
  for (const pb::PodSandboxConfig* sb : {&sandbox_a, &sandbox_b}) {
    const fs::path log = fs::path(sb->log_directory()) / "vm/0.log";
    EXPECT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-IP", std::chrono::seconds(240)))
        << ReadFileOrEmpty(log) << "\n"
        << d.DaemonLog();
  }

  // The hostile guest on the share: chown 0 + chmod 4755 of a copied busybox,
  // mknod of a char and a block device.
  const fs::path log_a = fs::path(sandbox_a.log_directory()) / "vm/0.log";
  ASSERT_TRUE(WaitForFileContains(log_a, "KUBEVIRT-CRI-GUEST-HOSTILE", std::chrono::seconds(240)))
      << ReadFileOrEmpty(log_a);
  const std::string text = ReadFileOrEmpty(log_a);
  EXPECT_THAT(text, HasSubstr("KUBEVIRT-CRI-GUEST-MOUNT /data ok 9p")) << "confined VMs share over 9p";
  EXPECT_THAT(text, HasSubstr("mknod-chr=1 mknod-blk=1")) << "mknod of a device worked in the guest:\n" << text;
  struct stat st {};
  ASSERT_EQ(::lstat((share / "suid-sh").c_str(), &st), 0) << "the guest's copy is missing:\n" << text;
  EXPECT_EQ(st.st_uid, uid_a) << "the guest's file belongs to its VM's uid, not to root";
  EXPECT_FALSE(st.st_uid == 0 && (st.st_mode & S_ISUID)) << "a setuid-root binary on the host";
  for (const fs::directory_entry& e : fs::directory_iterator(share)) {
    EXPECT_FALSE(e.is_character_file() || e.is_block_file()) << "device node " << e.path() << " on the host";
  }
  EXPECT_EQ(ReadFileOrEmpty(share / "guest-was-here"), "guest-was-here data\n") << "the share is still writable";

  // Status says how QEMU is confined, and what AppArmor offers here.
  pb::StatusRequest sreq;
  sreq.set_verbose(true);
  pb::StatusResponse sresp;
  ASSERT_TRUE(d.runtime().Status(Ctx().get(), sreq, &sresp).ok());
  nlohmann::json info = nlohmann::json::parse(sresp.info().at("kubevirt-cri"));
  ASSERT_TRUE(info.contains("confinement")) << info.dump();
  EXPECT_THAT(info["confinement"]["qemuUser"].get<std::string>(), HasSubstr("per-VM uid"));
  EXPECT_FALSE(info["confinement"]["apparmor"].get<std::string>().empty());

  // Removal takes the VM's ACL entries back: its uid no longer reaches the share.
  RemovePod(d, pod_a);
  EXPECT_FALSE(CanOpenAs(uid_a, share, O_RDONLY | O_DIRECTORY)) << "VM A's uid keeps its share after removal";
  RemovePod(d, pod_b);
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
