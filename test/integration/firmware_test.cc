// Firmware against real libvirt, QEMU (TCG) and OVMF: UEFI boots, Secure Boot refuses an unsigned loader, a
// persistent VM's variable store on a block volume, vTPM, bad values.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/time/clock.h"
#include "config/base/unique_fd.h"
#include "runtime/nvram_slice.h"
#include "test/client/exec_helpers.h"
#include "test/client/loop_device.h"
#include "test/fakes/shell.h"
#include "absl/time/time.h"
#include "test/client/host_util.h"
#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kUefiImage[] = "kvcri.test/guest-disk-uefi:latest";
constexpr char kUnsignedImage[] = "kvcri.test/guest-disk-uefi-unsigned:latest";
// OVMF under TCG on a busy 2-core machine: about 70-90 s to READY for a
// disk through shim + GRUB, about 20 s to the refusal (measured by hand).
constexpr auto kUefiBoot = std::chrono::seconds(300);

void ImportUefiImages(TestDaemon& d) {
  for (const auto& [dir, ref] :
       {std::pair<std::string, std::string>{"oci-disk-uefi", kUefiImage}, {"oci-disk-uefi-unsigned", kUnsignedImage}}) {
    ASSERT_TRUE(std::filesystem::exists(GuestImageDir(dir) + "/index.json"))
        << GuestImageDir(dir) << " missing: run test/guest/build-guest.sh (ctest fixture guest_images)";
    std::string out;
    ASSERT_EQ(d.RunSubcommand({"images", "import", GuestImageDir(dir), ref}, &out), 0) << dir << ": " << out;
  }
}

// Debian's signed GRUB under OVMF fails "out of memory" loading the kernel
// and initrd into a 256 MiB guest (VmContainerConfig's size); 512 MiB boots.
pb::ContainerConfig UefiContainer(const std::string& image) {
  pb::ContainerConfig c = VmContainerConfig("vm", image);
  c.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(512ll << 20);
  return c;
}

pb::PodSandboxConfig WithAnnotations(pb::PodSandboxConfig c, std::map<std::string, std::string> annotations) {
  for (auto& [k, v] : annotations) (*c.mutable_annotations())[k] = v;
  return c;
}

std::string LogOf(TestDaemon& d, const std::string& ctr) { return GetContainerStatus(d, ctr).status().log_path(); }

// The QEMU command line of the container's domain ("" when none runs).
std::string QemuCmdline(const std::string& ctr) {
  pid_t pid = QemuPidOf("kvcri-" + ctr);
  if (pid <= 0) return "";
  std::string cmd = ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/cmdline");
  for (char& c : cmd) {
    if (c == '\0') c = ' ';
  }
  return cmd;
}

class FirmwareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RequireIntegrationEnvironment(/*need_guest_images=*/true);
    for (const char* f : {"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"}) {
      ASSERT_TRUE(std::filesystem::exists(f)) << f << " missing: install the package ovmf (scripts/install-deps.sh)";
    }
  }

  grpc::Status Create(TestDaemon& d, const pb::PodSandboxConfig& config, const std::string& image, std::string* pod) {
    pb::RunPodSandboxRequest run;
    *run.mutable_config() = config;
    run.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse run_resp;
    grpc::Status s = d.runtime().RunPodSandbox(Ctx(std::chrono::seconds(60)).get(), run, &run_resp);
    if (!s.ok()) return s;
    *pod = run_resp.pod_sandbox_id();
    pb::CreateContainerRequest req;
    req.set_pod_sandbox_id(*pod);
    *req.mutable_config() = VmContainerConfig("vm", image);
    *req.mutable_sandbox_config() = config;
    pb::CreateContainerResponse resp;
    return d.runtime().CreateContainer(Ctx(std::chrono::seconds(60)).get(), req, &resp);
  }
};

// The image's label picks UEFI; the VM's own variable store sits in its
// container directory, owned by its uid, and goes with the container.
TEST_F(FirmwareTest, UefiDiskBootsFromItsLabelWithItsOwnNvram) {
  TestDaemon d;
  d.Start();
  ImportUefiImages(d);
  std::string pod, ctr;
  const absl::Time t0 = absl::Now();
  ASSERT_TRUE(StartPodWithConfigs(d, SandboxConfig("uefi", d.log_dir()), UefiContainer(kUefiImage), &pod, &ctr));
  const std::filesystem::path nvram = d.root() / "containers" / ctr / "nvram.fd";
  struct stat st;
  ASSERT_EQ(::stat(nvram.c_str(), &st), 0) << nvram;
  EXPECT_EQ(st.st_size, std::filesystem::file_size("/usr/share/OVMF/OVMF_VARS_4M.fd"));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_NE(st.st_uid, 0u) << "the confined VM's uid owns its NVRAM";
  const std::string cmd = QemuCmdline(ctr);
  EXPECT_THAT(cmd, HasSubstr("/usr/share/OVMF/OVMF_CODE_4M.fd"));
  EXPECT_THAT(cmd, HasSubstr(nvram.string()));
  EXPECT_THAT(cmd, HasSubstr("q35"));
  ASSERT_TRUE(WaitForFileContains(LogOf(d, ctr), "KUBEVIRT-CRI-GUEST-READY", kUefiBoot))
      << ReadFileOrEmpty(LogOf(d, ctr)) << "\ndaemon:\n"
      << d.DaemonLog();
  std::cerr << "uefi: READY " << absl::ToInt64Seconds(absl::Now() - t0) << " s after RunPodSandbox\n";
  // The guest sees its disk as vda, as under BIOS.
  EXPECT_TRUE(WaitForFileContains(LogOf(d, ctr), "KUBEVIRT-CRI-GUEST-DISK vda", std::chrono::seconds(30)));
  RemovePod(d, pod);
  EXPECT_FALSE(std::filesystem::exists(nvram));
  ExpectNoLeftovers(d);
}

// Secure Boot (annotation over the label): OVMF refuses systemd-boot, which
// nobody signed, and boots Debian's shim -> GRUB -> kernel chain. The
// refusal is OVMF's boot manager line on the serial console:
//   BdsDxe: failed to load Boot0002 "UEFI Misc Device" from ...: Access Denied
TEST_F(FirmwareTest, SecureBootRefusesAnUnsignedLoaderAndBootsTheSignedChain) {
  TestDaemon d;
  d.Start();
  ImportUefiImages(d);
  const std::map<std::string, std::string> secure = {{"kubevirt-cri.io/firmware", "uefi-secure"}};
  std::string pod_bad, ctr_bad, pod_good, ctr_good;
  const absl::Time t0 = absl::Now();
  ASSERT_TRUE(StartPodWithConfigs(d, WithAnnotations(SandboxConfig("sb-unsigned", d.log_dir()), secure),
                                  UefiContainer(kUnsignedImage), &pod_bad, &ctr_bad));
  ASSERT_TRUE(StartPodWithConfigs(d, WithAnnotations(SandboxConfig("sb-signed", d.log_dir()), secure),
                                  UefiContainer(kUefiImage), &pod_good, &ctr_good));
  for (const std::string& ctr : {ctr_bad, ctr_good}) {
    const std::string cmd = QemuCmdline(ctr);
    EXPECT_THAT(cmd, HasSubstr("/usr/share/OVMF/OVMF_CODE_4M.ms.fd")) << ctr;
    EXPECT_THAT(cmd, HasSubstr("smm=on")) << ctr;
  }
  const std::string bad_log = LogOf(d, ctr_bad), good_log = LogOf(d, ctr_good);
  ASSERT_TRUE(WaitForFileContains(bad_log, "Access Denied", kUefiBoot)) << ReadFileOrEmpty(bad_log);
  std::cerr << "uefi-secure: unsigned refused " << absl::ToInt64Seconds(absl::Now() - t0) << " s after start\n";
  EXPECT_THAT(ReadFileOrEmpty(bad_log), HasSubstr("BdsDxe: failed to load"));
  ASSERT_TRUE(WaitForFileContains(good_log, "KUBEVIRT-CRI-GUEST-READY", kUefiBoot))
      << ReadFileOrEmpty(good_log) << "\ndaemon:\n"
      << d.DaemonLog();
  std::cerr << "uefi-secure: signed READY " << absl::ToInt64Seconds(absl::Now() - t0) << " s after start\n";
  // The refused one never got further (its firmware waits in the boot menu).
  EXPECT_THAT(ReadFileOrEmpty(bad_log), Not(HasSubstr("KUBEVIRT-CRI-GUEST-READY")));
  EXPECT_THAT(ReadFileOrEmpty(good_log), Not(HasSubstr("Access Denied")));
  RemovePod(d, pod_bad);
  RemovePod(d, pod_good);
  ExpectNoLeftovers(d);
}

TEST_F(FirmwareTest, BadValuesAreInvalidArgumentNamingTheAnnotation) {
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  std::string pod;
  grpc::Status s =
      Create(d, WithAnnotations(SandboxConfig("fw-bad", d.log_dir()), {{"kubevirt-cri.io/firmware", "efi"}}),
             kDiskImage, &pod);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("kubevirt-cri.io/firmware"));
  RemovePod(d, pod);
  s = Create(d, WithAnnotations(SandboxConfig("fw-kernel", d.log_dir()), {{"kubevirt-cri.io/firmware", "uefi-secure"}}),
             kKernelImage, &pod);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("kernel image"));
  RemovePod(d, pod);
  s = Create(d, WithAnnotations(SandboxConfig("tpm-bad", d.log_dir()), {{"kubevirt-cri.io/tpm", "yes"}}), kDiskImage,
             &pod);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("kubevirt-cri.io/tpm"));
  RemovePod(d, pod);
  // Confined VMs (the default) cannot reach swtpm's socket: refused up front.
  s = Create(d, WithAnnotations(SandboxConfig("tpm-confined", d.log_dir()), {{"kubevirt-cri.io/tpm", "2.0"}}),
             kDiskImage, &pod);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("vm_uid_range"));
  RemovePod(d, pod);
  ExpectNoLeftovers(d);
}

// With confinement off, libvirt runs swtpm beside QEMU; its state goes with
// the domain. The kernel image under BIOS keeps this boot short.
TEST_F(FirmwareTest, TpmIsEmulatedBySwtpmForUnconfinedVms) {
  TestDaemon::Options o;
  o.extra_config = "[security]\nvm_uid_range = \"\"\n";
  TestDaemon d(o);
  d.Start();
  ImportGuestImages(d);
  std::string pod, ctr;
  ASSERT_TRUE(StartPodWithConfig(d,
                                 WithAnnotations(SandboxConfig("tpm", d.log_dir()), {{"kubevirt-cri.io/tpm", "2.0"}}),
                                 kKernelImage, &pod, &ctr));
  EXPECT_THAT(QemuCmdline(ctr), HasSubstr("tpm-crb"));
  EXPECT_FALSE(ProcessesMatching("swtpm socket").empty()) << "no swtpm runs";
  ASSERT_TRUE(WaitForFileContains(LogOf(d, ctr), "KUBEVIRT-CRI-GUEST-READY", std::chrono::seconds(180)))
      << ReadFileOrEmpty(LogOf(d, ctr)) << "\ndaemon:\n"
      << d.DaemonLog();
  RemovePod(d, pod);
  for (int pid : ProcessesMatching("swtpm socket")) {
    EXPECT_THAT(ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/cmdline"), Not(HasSubstr(d.root().string())))
        << "swtpm of this daemon still runs";
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(d.root() / "libvirt" / "lib" / "swtpm", ec)) {
    ADD_FAILURE() << "TPM state left: " << e.path();
  }
  ExpectNoLeftovers(d);
}

// --- A persistent VM's UEFI variable store on a block volume (kubevirt-cri.io/nvram-device) ---

constexpr uint64_t kVarsSize = 540672;  // OVMF_VARS_4M.fd

uint64_t BlockSize(const std::string& path) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  uint64_t size = 0;
  if (!fd.valid() || ::ioctl(fd.get(), BLKGETSIZE64, &size) != 0) return 0;
  return size;
}

// Whether /dev/loopN is bound (its sysfs backing_file exists).
bool LoopBound(int number) {
  return std::filesystem::exists("/sys/block/loop" + std::to_string(number) + "/loop/backing_file");
}

bool WaitLoopUnbound(int number) {
  for (int i = 0; i < 50 && LoopBound(number); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return !LoopBound(number);
}

// No VM: the slice's size, its node's owner, writes reaching the volume, and
// the loop device going away with its last opener (QEMU in real use).
TEST(NvramSlice, IsTheTemplateSizeOwnedByTheVmAndDetachesWithItsLastOpener) {
  TempDir t;
  LoopDevice volume(t.path() / "pv.raw", "", 1 << 20);
  ASSERT_FALSE(volume.dev().empty());
  const std::filesystem::path node = t.path() / "nvram.blk";
  int number = -1;
  base::UniqueFd qemu;  // stands in for QEMU's open
  {
    absl::StatusOr<runtime::NvramSlice> slice = runtime::NvramSlice::Attach(volume.dev(), kVarsSize, node, 4242, 4243);
    ASSERT_TRUE(slice.ok()) << slice.status();
    number = slice->loop_number();
    EXPECT_TRUE(LoopBound(number));
    struct stat st {};
    ASSERT_EQ(::stat(node.c_str(), &st), 0);
    EXPECT_TRUE(S_ISBLK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    EXPECT_EQ(st.st_uid, 4242u);
    EXPECT_EQ(st.st_gid, 4243u);
    EXPECT_EQ(BlockSize(node), kVarsSize) << "OVMF needs the template's size exactly";
    qemu.Reset(::open(node.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(qemu.valid());
    ASSERT_EQ(::pwrite(qemu.get(), "written-through", 15, 4096), 15);
    ASSERT_EQ(::fsync(qemu.get()), 0);
  }
  EXPECT_FALSE(std::filesystem::exists(node)) << "the node goes with the slice";
  EXPECT_TRUE(LoopBound(number)) << "QEMU's open keeps the loop device";
  qemu.Reset();
  EXPECT_TRUE(WaitLoopUnbound(number)) << "loop" << number << " outlived its last opener";
  EXPECT_EQ(volume.FirstSector(), "");
  std::string head(15, '\0');
  base::UniqueFd vol(::open(volume.dev().c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(::pread(vol.get(), head.data(), head.size(), 4096), 15);
  EXPECT_EQ(head, "written-through");

  // Nobody opened it: closing ours detaches it at once.
  {
    absl::StatusOr<runtime::NvramSlice> slice = runtime::NvramSlice::Attach(volume.dev(), kVarsSize, node, 0, 0);
    ASSERT_TRUE(slice.ok()) << slice.status();
    number = slice->loop_number();
  }
  EXPECT_TRUE(WaitLoopUnbound(number));

  // Refusals name what is wrong and leave nothing.
  absl::StatusOr<runtime::NvramSlice> big = runtime::NvramSlice::Attach(volume.dev(), 2 << 20, node, 0, 0);
  EXPECT_TRUE(absl::IsInvalidArgument(big.status())) << big.status();
  EXPECT_THAT(big.status().message(), HasSubstr("has 1048576 bytes"));
  const std::filesystem::path nodev = t.path() / "nodev";
  std::filesystem::create_directories(nodev);
  ASSERT_EQ(::mount("tmpfs", nodev.c_str(), "tmpfs", MS_NODEV, "size=1m"), 0) << std::strerror(errno);
  absl::StatusOr<runtime::NvramSlice> refused =
      runtime::NvramSlice::Attach(volume.dev(), kVarsSize, nodev / "nvram.blk", 0, 0);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("nodev"));
  ::umount(nodev.c_str());
  EXPECT_FALSE(std::filesystem::exists(node));
}

// A persistent UEFI VM: it boots from one volume (the UEFI test disk) and
// keeps its variables on another; a variable the guest writes through
// efivarfs is there for the VM of the next Pod with the same two volumes.
TEST_F(FirmwareTest, APersistentUefiVmsVariableStoreFollowsItsVolumeFromPodToPod) {
  TempDir t;
  const std::filesystem::path raw = t.path() / "boot.raw";
  ShResult conv = Sh("qemu-img convert -f qcow2 -O raw '" + GuestImageDir("disk-uefi.qcow2") + "' '" + raw.string() + "'");
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  LoopDevice boot(raw);
  LoopDevice volume(t.path() / "vars.raw", "", 1 << 20);  // a 1 MiB Block PVC
  ASSERT_FALSE(boot.dev().empty());
  ASSERT_FALSE(volume.dev().empty());
  TestDaemon d;
  d.Start();
  ImportUefiImages(d);
  // Our own vendor GUID: the variable means nothing to the firmware.
  const std::string var = "/sys/firmware/efi/efivars/KvcriPersist-4b564352-0000-4000-8000-00000000ee01";
  const std::string efivarfs =
      "modprobe efivarfs; grep -q efivarfs /proc/mounts || "
      "mount -t efivarfs efivarfs /sys/firmware/efi/efivars; ";
  auto run_pod = [&](const std::string& name, std::string* pod, std::string* ctr) {
    pb::PodSandboxConfig sb =
        WithAnnotations(SandboxConfig(name, d.log_dir()),
                        {{"kubevirt-cri.io/boot-device", "/dev/vda"}, {"kubevirt-cri.io/nvram-device", "/dev/vdz"}});
    // The image only stands in for what kubelet needs; its label picks UEFI.
    pb::ContainerConfig c = UefiContainer(kUefiImage);
    for (const auto& [path, dev] : {std::pair<std::string, std::string>{"/dev/vda", boot.dev()}, {"/dev/vdz", volume.dev()}}) {
      pb::Device* d = c.add_devices();
      d->set_container_path(path);
      d->set_host_path(dev);
      d->set_permissions("mrw");
    }
    ASSERT_TRUE(StartPodWithConfigs(d, sb, c, pod, ctr)) << d.DaemonLog();
    const std::string info = GetContainerStatus(d, *ctr).info().at("info");
    EXPECT_THAT(info, HasSubstr("\"nvramDevice\":\"/dev/vdz\""));
    EXPECT_THAT(info, HasSubstr("\"bootDevice\":\"/dev/vda\""));
    EXPECT_THAT(info, HasSubstr("\"firmware\":\"uefi\""));
    // QEMU opens the slice's node, never the volume itself, and the node is
    // gone once QEMU holds it.
    const std::filesystem::path node = d.root() / "containers" / *ctr / "nvram.blk";
    EXPECT_THAT(QemuCmdline(*ctr), HasSubstr(node.string()));
    EXPECT_THAT(QemuCmdline(*ctr), Not(HasSubstr(volume.dev())));
    EXPECT_FALSE(std::filesystem::exists(node));
    ASSERT_TRUE(WaitForFileContains(LogOf(d, *ctr), "KUBEVIRT-CRI-GUEST-READY", kUefiBoot))
        << ReadFileOrEmpty(LogOf(d, *ctr)) << "\ndaemon:\n"
        << d.DaemonLog();
    absl::Status agent = WaitForExec(d, *ctr, std::chrono::seconds(180));
    ASSERT_TRUE(agent.ok()) << agent;
    // The guest's disks: the boot volume and the seed; the store is none.
    EXPECT_TRUE(WaitForFileContains(LogOf(d, *ctr), "KUBEVIRT-CRI-GUEST-VOLUMES-DONE", std::chrono::seconds(120)));
    const std::string log = ReadFileOrEmpty(LogOf(d, *ctr));
    EXPECT_THAT(log, HasSubstr("KUBEVIRT-CRI-GUEST-BOOTDISK /dev/vda vda vda ro=0"));
    EXPECT_THAT(log, Not(HasSubstr("KUBEVIRT-CRI-GUEST-DISK vdc")));
  };
  auto guest_sh = [&](const std::string& ctr, const std::string& script) -> std::string {
    absl::StatusOr<pb::ExecSyncResponse> r = ExecSync(d, ctr, {"sh", "-c", script}, 60);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return "";
    EXPECT_EQ(r->exit_code(), 0) << script << "\nstdout: " << r->stdout() << "\nstderr: " << r->stderr();
    return r->stdout();
  };

  std::string pod1, ctr1;
  ASSERT_NO_FATAL_FAILURE(run_pod("nvram-1", &pod1, &ctr1));
  EXPECT_THAT(d.DaemonLog(), HasSubstr("UEFI variable store initialised on its device"));
  // efivarfs: 4 bytes of attributes (non-volatile, boot and runtime access), then the data.
  EXPECT_EQ(guest_sh(ctr1, efivarfs + "printf '\\007\\000\\000\\000kept-in-nvram' >" + var + " && tail -c +5 " + var),
            "kept-in-nvram");
  RemovePod(d, pod1);
  std::string pod2, ctr2;
  ASSERT_NO_FATAL_FAILURE(run_pod("nvram-2", &pod2, &ctr2));
  EXPECT_THAT(d.DaemonLog(), HasSubstr("UEFI variable store kept"));
  EXPECT_EQ(guest_sh(ctr2, efivarfs + "tail -c +5 " + var), "kept-in-nvram");
  RemovePod(d, pod2);
  ExpectNoLeftovers(d);
  // Every slice detached itself with its QEMU.
  for (int i = 0; i < 50; ++i) {
    ShResult sh = Sh("losetup -j '" + volume.dev() + "'");
    if (sh.output.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ShResult left = Sh("losetup -j '" + volume.dev() + "'");
  EXPECT_EQ(left.output, "") << "a slice's loop device is still bound";
}

}  // namespace
}  // namespace kvcri::testing
