// Firmware against real libvirt, QEMU (TCG) and OVMF: UEFI boots, Secure Boot refuses an unsigned loader, vTPM, bad
// values.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "absl/time/clock.h"
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

}  // namespace
}  // namespace kvcri::testing
