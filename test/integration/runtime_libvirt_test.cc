// LibvirtHypervisor against the real embedded QEMU driver (TCG where KVM
// cannot run guests). Needs root, qemu-system-x86_64, libvirt's QEMU driver
// and the test guest (test/guest/build-guest.sh); fails naming what is missing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/time/clock.h"
#include "test/client/host_util.h"
#include "runtime/accelerator.h"
#include "runtime/console_log.h"
#include "runtime/libvirt_hypervisor.h"

extern char** environ;

namespace kvcri::runtime {
namespace {

// What StopContainer does, without the orchestrator: press the power button
// (again every 5 s: a booting guest loses presses) until the VM is off.
absl::Status PowerOff(Hypervisor& hv, const std::string& name, absl::Duration grace) {
  absl::Time deadline = absl::Now() + grace;
  absl::Time next_press = absl::InfinitePast();
  while (absl::Now() < deadline) {
    absl::StatusOr<VmStatus> st = hv.Status(name);
    if (!st.ok()) return st.status();
    if (st->phase != VmPhase::kRunning && st->phase != VmPhase::kPaused) return absl::OkStatus();
    if (absl::Now() >= next_press) {
      if (absl::Status s = hv.PowerButton(name); !s.ok()) return s;
      next_press = absl::Now() + absl::Seconds(5);
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError("guest did not power off");
}

using ::testing::HasSubstr;

const std::filesystem::path kGuestDir = KVCRI_GUEST_DIR;
constexpr char kReady[] = "KUBEVIRT-CRI-GUEST-READY";
constexpr char kRootEnv[] = "KVCRI_RUNTIME_TEST_ROOT";

// Empty when everything this test needs is here, else what is missing.
std::string MissingPrerequisites() {
  std::string missing;
  if (geteuid() != 0) missing += "root (the embedded QEMU driver runs privileged); ";
  if (!std::filesystem::exists("/usr/bin/qemu-system-x86_64")) missing += "/usr/bin/qemu-system-x86_64 (qemu-system-x86); ";
  if (!std::filesystem::exists("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so")) {
    missing += "libvirt's QEMU driver (libvirt-daemon-driver-qemu); ";
  }
  for (const char* f : {"vmlinuz", "initrd.img"}) {
    if (!std::filesystem::exists(kGuestDir / f)) {
      missing += "test guest " + (kGuestDir / f).string() + " (run test/guest/build-guest.sh " + kGuestDir.string() +
                 " or ctest -L integration); ";
    }
  }
  return missing;
}

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Waits until `path` contains `needle`; false on timeout.
bool WaitForText(const std::filesystem::path& path, std::string_view needle, absl::Duration timeout,
                 size_t min_count = 1) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::string text = ReadAll(path);
    size_t count = 0;
    for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++count;
    if (count >= min_count) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

size_t CountOf(const std::filesystem::path& path, std::string_view needle) {
  std::string text = ReadAll(path);
  size_t count = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++count;
  return count;
}

bool QemuRunningFor(std::string_view domain) { return testing::QemuPidOf(domain) > 0; }

config::Accelerator PickAccelerator() {
  auto choice = ChooseAccelerator(config::Accelerator::kAuto, HostProbe());
  EXPECT_TRUE(choice.ok()) << choice.status();
  if (!choice.ok()) return config::Accelerator::kTcg;
  std::cerr << "accelerator: " << config::AcceleratorName(choice->accel) << " (" << choice->reason << ")\n";
  return choice->accel;
}

VmSpec GuestSpec(const std::filesystem::path& root, const std::string& id, const std::string& extra_cmdline) {
  VmSpec s;
  s.name = "kvcri-" + id;
  s.pod_id = "pod-" + id;
  s.container_id = id;
  s.pod_namespace = "default";
  s.pod_name = "runtime-test";
  s.vcpus = 1;
  s.memory_mib = 256;
  s.accel = PickAccelerator();
  s.kernel = kGuestDir / "vmlinuz";
  s.initrd = kGuestDir / "initrd.img";
  s.cmdline = "console=ttyS0 panic=-1 quiet " + extra_cmdline;
  std::filesystem::create_directories(root / "c" / id);
  s.console_log = root / "c" / id / "console.log";
  return s;
}

std::string EmbedUri(const std::filesystem::path& root) { return "qemu:///embed?root=" + (root / "lv").string(); }

// One embedded driver root per process (libvirt's rule), shared by the tests
// of this suite.
class RuntimeLibvirt : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!MissingPrerequisites().empty()) return;
    char tmpl[] = "/tmp/kvrt-XXXXXX";  // short: QEMU's monitor socket lives below it
    root_ = new std::filesystem::path(mkdtemp(tmpl));
    auto h = LibvirtHypervisor::Open(LibvirtHypervisorOptions{EmbedUri(*root_)});
    if (!h.ok()) {
      open_error_ = new std::string(h.status().ToString());
      return;
    }
    hv_ = h->release();
  }
  static void TearDownTestSuite() {
    delete hv_;
    hv_ = nullptr;
    if (root_ != nullptr) std::filesystem::remove_all(*root_);
    delete root_;
    root_ = nullptr;
    delete open_error_;
    open_error_ = nullptr;
  }
  void SetUp() override {
    std::string missing = MissingPrerequisites();
    if (!missing.empty()) FAIL() << "missing: " << missing;
    if (open_error_ != nullptr) FAIL() << "opening the embedded QEMU driver: " << *open_error_;
    ASSERT_NE(hv_, nullptr);
  }

  static LibvirtHypervisor* hv_;
  static std::filesystem::path* root_;
  static std::string* open_error_;
};
LibvirtHypervisor* RuntimeLibvirt::hv_ = nullptr;
std::filesystem::path* RuntimeLibvirt::root_ = nullptr;
std::string* RuntimeLibvirt::open_error_ = nullptr;

TEST_F(RuntimeLibvirt, BootsGuestCopiesConsoleAndShutsDownCleanly) {
  VmSpec spec = GuestSpec(*root_, "boot1", "");
  std::filesystem::path cri_log = *root_ / "c" / "boot1" / "cri.log";
  ConsoleLogCopier copier(ConsoleLogOptions{});

  absl::Time t0 = absl::Now();
  ASSERT_TRUE(hv_->Create(spec).ok());
  absl::Duration create_took = absl::Now() - t0;
  ASSERT_TRUE(copier.Add(spec.container_id, spec.console_log, cri_log).ok());
  ASSERT_TRUE(WaitForText(spec.console_log, kReady, absl::Seconds(120)))
      << "guest not ready; console:\n" << ReadAll(spec.console_log);
  std::cerr << "create took " << absl::FormatDuration(create_took) << ", create to READY took "
            << absl::FormatDuration(absl::Now() - t0) << "\n";

  auto st = hv_->Status(spec.name);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->phase, VmPhase::kRunning);

  auto list = hv_->List();
  ASSERT_TRUE(list.ok()) << list.status();
  bool listed = false;
  for (const VmListing& v : *list) {
    listed |= v.name == spec.name && v.container_id == "boot1" && v.pod_id == "pod-boot1" && v.phase == VmPhase::kRunning;
  }
  EXPECT_TRUE(listed);

  auto stats = hv_->Stats(spec.name);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GT(stats->cpu_ns, 0u);
  EXPECT_GT(stats->memory_rss_bytes, 0u);

  EXPECT_TRUE(WaitForText(cri_log, std::string(" stdout F ") + kReady, absl::Seconds(5))) << ReadAll(cri_log);

  t0 = absl::Now();
  ASSERT_TRUE(PowerOff(*hv_, spec.name, absl::Seconds(60)).ok());
  std::cerr << "ACPI shutdown took " << absl::FormatDuration(absl::Now() - t0) << "\n";
  st = hv_->Status(spec.name);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->phase, VmPhase::kShutoff);
  EXPECT_EQ(st->exit_code, 0);
  EXPECT_EQ(st->reason, "Completed");
  EXPECT_THAT(ReadAll(spec.console_log), HasSubstr("KUBEVIRT-CRI-GUEST-POWEROFF"));
  ASSERT_TRUE(copier.Remove(spec.container_id).ok());
  EXPECT_THAT(ReadAll(cri_log), HasSubstr(" stdout F KUBEVIRT-CRI-GUEST-POWEROFF"));

  ASSERT_TRUE(hv_->Remove(spec.name).ok());
  st = hv_->Status(spec.name);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->phase, VmPhase::kMissing);
  EXPECT_FALSE(std::filesystem::exists(*root_ / "lv/etc/qemu" / (spec.name + ".xml")));
}

TEST_F(RuntimeLibvirt, DestroyIsKilled137) {
  VmSpec spec = GuestSpec(*root_, "kill1", "");
  ASSERT_TRUE(hv_->Create(spec).ok());
  ASSERT_TRUE(hv_->Destroy(spec.name).ok());
  auto st = hv_->Status(spec.name);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->phase, VmPhase::kShutoff);
  EXPECT_EQ(st->exit_code, 137);
  EXPECT_EQ(st->reason, "Killed");
  EXPECT_FALSE(QemuRunningFor(spec.name));
  EXPECT_TRUE(hv_->Remove(spec.name).ok());
}

TEST_F(RuntimeLibvirt, GuestPanicIsCrashed139) {
  VmSpec spec = GuestSpec(*root_, "panic1", "kvcri.panic=1");
  ASSERT_TRUE(hv_->Create(spec).ok());
  absl::Time deadline = absl::Now() + absl::Seconds(120);
  absl::StatusOr<VmStatus> st;
  do {
    absl::SleepFor(absl::Milliseconds(200));
    st = hv_->Status(spec.name);
    ASSERT_TRUE(st.ok());
  } while (st->phase == VmPhase::kRunning && absl::Now() < deadline);
  EXPECT_EQ(st->exit_code, 139) << "console:\n" << ReadAll(spec.console_log);
  EXPECT_EQ(st->reason, "Crashed");
  EXPECT_TRUE(hv_->Remove(spec.name).ok());
}

TEST_F(RuntimeLibvirt, StartsPausedResumesAndAPressDuringBootIsLost) {
  VmSpec spec = GuestSpec(*root_, "grace1", "");
  spec.start_paused = true;
  ASSERT_TRUE(hv_->Create(spec).ok());
  EXPECT_EQ(hv_->Status(spec.name)->phase, VmPhase::kPaused);
  ASSERT_TRUE(hv_->Resume(spec.name).ok());
  EXPECT_EQ(hv_->Status(spec.name)->phase, VmPhase::kRunning);
  // Still booting, the guest has no ACPI listener yet: the press is lost and
  // the VM is still up a second later; the caller's grace ends in Destroy.
  ASSERT_TRUE(hv_->PowerButton(spec.name).ok());
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(hv_->Status(spec.name)->phase, VmPhase::kRunning);
  ASSERT_TRUE(hv_->Destroy(spec.name).ok());
  auto st = hv_->Status(spec.name);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->exit_code, 137);
  EXPECT_TRUE(hv_->Remove(spec.name).ok());
}

TEST_F(RuntimeLibvirt, FailedStartLeavesNoDomain) {
  VmSpec spec = GuestSpec(*root_, "fail1", "");
  spec.kernel = *root_ / "no-such-kernel";
  absl::Status s = hv_->Create(spec);
  EXPECT_FALSE(s.ok());
  std::cerr << "expected start failure: " << s << "\n";
  auto st = hv_->Status(spec.name);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->phase, VmPhase::kMissing);
}

// Runs this binary again with one disabled test (a fresh process: a new
// embedded driver) and returns its wait status.
int RunChild(const std::string& test, const std::filesystem::path& root) {
  std::string filter = "--gtest_filter=RuntimeLibvirtChild." + test;
  std::string env_root = std::string(kRootEnv) + "=" + root.string();
  std::vector<char*> argv = {const_cast<char*>("/proc/self/exe"), filter.data(),
                             const_cast<char*>("--gtest_also_run_disabled_tests"), nullptr};
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  envp.push_back(env_root.data());
  envp.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data()) != 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(RuntimeLibvirtRestart, VmSurvivesKilledDaemonAndIsFoundByNextOne) {
  std::string missing = MissingPrerequisites();
  if (!missing.empty()) FAIL() << "missing: " << missing;
  char tmpl[] = "/tmp/kvrs-XXXXXX";
  std::filesystem::path root = mkdtemp(tmpl);
  // 1st "daemon": creates the VM, waits for the guest, then dies by SIGKILL.
  int status = RunChild("DISABLED_CreateThenGetKilled", root);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
  EXPECT_TRUE(QemuRunningFor("kvcri-survivor"));
  // 2nd "daemon": finds it running, sees the guest still alive, stops and removes it.
  status = RunChild("DISABLED_FindRunningThenRemove", root);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_FALSE(QemuRunningFor("kvcri-survivor"));
  std::filesystem::remove_all(root);
}

std::filesystem::path ChildRoot() {
  const char* r = getenv(kRootEnv);
  return r != nullptr ? std::filesystem::path(r) : std::filesystem::path();
}

TEST(RuntimeLibvirtChild, DISABLED_CreateThenGetKilled) {
  std::filesystem::path root = ChildRoot();
  ASSERT_FALSE(root.empty()) << kRootEnv << " is not set";
  auto h = LibvirtHypervisor::Open(LibvirtHypervisorOptions{EmbedUri(root)});
  ASSERT_TRUE(h.ok()) << h.status();
  VmSpec spec = GuestSpec(root, "survivor", "kvcri.heartbeat=1");
  ASSERT_TRUE((*h)->Create(spec).ok());
  ASSERT_TRUE(WaitForText(spec.console_log, kReady, absl::Seconds(120))) << ReadAll(spec.console_log);
  kill(getpid(), SIGKILL);  // like kill -9 of the daemon: no destructor runs
}

TEST(RuntimeLibvirtChild, DISABLED_FindRunningThenRemove) {
  std::filesystem::path root = ChildRoot();
  ASSERT_FALSE(root.empty()) << kRootEnv << " is not set";
  auto h = LibvirtHypervisor::Open(LibvirtHypervisorOptions{EmbedUri(root)});
  ASSERT_TRUE(h.ok()) << h.status();
  const std::string name = "kvcri-survivor";
  auto st = (*h)->Status(name);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->phase, VmPhase::kRunning);
  auto list = (*h)->List();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].container_id, "survivor");
  EXPECT_EQ((*list)[0].phase, VmPhase::kRunning);
  // The guest keeps executing: more heartbeats arrive after the reconnect.
  std::filesystem::path console = root / "c" / "survivor" / "console.log";
  size_t beats = CountOf(console, "KUBEVIRT-CRI-GUEST-HEARTBEAT");
  EXPECT_TRUE(WaitForText(console, "KUBEVIRT-CRI-GUEST-HEARTBEAT", absl::Seconds(20), beats + 2));
  // The reconnected monitor works: ACPI shutdown completes.
  ASSERT_TRUE(PowerOff(**h, name, absl::Seconds(60)).ok());
  st = (*h)->Status(name);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->reason, "Completed");
  EXPECT_TRUE((*h)->Remove(name).ok());
}

}  // namespace
}  // namespace kvcri::runtime
