// qemu-guest-agent exec and the serial console socket against real QEMU booting the test guest.
//
// Drives LibvirtHypervisor on this test's own embedded-driver root (the
// daemon's root admits one process), as runtime_libvirt_test does. Needs
// root, qemu-system-x86_64, libvirt's QEMU driver and the test guest
// (test/guest/build-guest.sh, which adds qemu-ga); fails naming what is missing.
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "absl/time/clock.h"
#include "config/base/unique_fd.h"
#include "runtime/accelerator.h"
#include "runtime/domain_xml.h"
#include "runtime/libvirt_hypervisor.h"
#include "runtime/qemu_guest_agent.h"
#include "test/client/pod_helpers.h"

namespace kvcri::runtime {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kGuestDir = KVCRI_GUEST_DIR;
constexpr char kReady[] = "KUBEVIRT-CRI-GUEST-READY";

std::string MissingPrerequisites() {
  std::string missing;
  if (geteuid() != 0) missing += "root (the embedded QEMU driver runs privileged); ";
  if (!fs::exists("/usr/bin/qemu-system-x86_64")) missing += "/usr/bin/qemu-system-x86_64 (qemu-system-x86); ";
  if (!fs::exists("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so")) {
    missing += "libvirt's QEMU driver (libvirt-daemon-driver-qemu); ";
  }
  for (const char* f : {"vmlinuz", "initrd.img"}) {
    if (!fs::exists(kGuestDir / f)) {
      missing +=
          "test guest " + (kGuestDir / f).string() + " (run test/guest/build-guest.sh " + kGuestDir.string() + "); ";
    }
  }
  return missing;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t CountOf(std::string_view text, std::string_view needle) {
  size_t count = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++count;
  return count;
}

bool WaitForCount(const fs::path& path, std::string_view needle, size_t count, absl::Duration timeout) {
  for (absl::Time deadline = absl::Now() + timeout; absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(100))) {
    if (CountOf(ReadAll(path), needle) >= count) return true;
  }
  return false;
}

config::Accelerator PickAccelerator() {
  auto choice = ChooseAccelerator(config::Accelerator::kAuto, HostProbe());
  return choice.ok() ? choice->accel : config::Accelerator::kTcg;
}

base::UniqueFd ConnectUnix(const fs::path& path) {
  base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return base::UniqueFd();
  return fd;
}

// Whether uid/gid `id` (no supplementary groups, as a confined QEMU runs)
// can connect to the unix socket `path`: a forked child drops to it and tries.
bool CanConnectAs(uint32_t id, const fs::path& path) {
  pid_t child = ::fork();
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(id, id, id) != 0 || ::setresuid(id, id, id) != 0) ::_exit(2);
    ::_exit(ConnectUnix(path).valid() ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 2) << "could not drop to uid " << id;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Reads from `fd` until `needle` arrived or `timeout`; what was read.
std::string ReadUntil(int fd, std::string_view needle, absl::Duration timeout) {
  std::string got;
  for (absl::Time deadline = absl::Now() + timeout; absl::Now() < deadline && got.find(needle) == std::string::npos;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

class GuestAgent : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!MissingPrerequisites().empty()) return;
    char tmpl[] = "/tmp/kvga-XXXXXX";  // short: sockets live below it
    root_ = new fs::path(mkdtemp(tmpl));
    auto h = LibvirtHypervisor::Open(LibvirtHypervisorOptions{"qemu:///embed?root=" + (*root_ / "lv").string()});
    if (!h.ok()) {
      error_ = new std::string("opening the embedded QEMU driver: " + h.status().ToString());
      return;
    }
    hv_ = h->release();
    // One guest for the whole suite: a heartbeat every second shows it keeps
    // writing its console whether or not anyone is attached.
    fs::create_directories(*root_ / "vm");
    fs::permissions(*root_ / "vm", fs::perms::owner_all);
    spec_ = new VmSpec();
    spec_->name = "kvcri-qga1";
    spec_->pod_id = "pod-qga1";
    spec_->container_id = "qga1";
    spec_->pod_namespace = "default";
    spec_->pod_name = "guest-agent-test";
    spec_->memory_mib = 256;
    spec_->accel = PickAccelerator();
    spec_->kernel = kGuestDir / "vmlinuz";
    spec_->initrd = kGuestDir / "initrd.img";
    // kvcri.agent=0: this guest runs qemu-guest-agent only, so the kvcri
    // agent's port stays closed until a test opens it.
    spec_->cmdline = "console=ttyS0 panic=-1 quiet kvcri.heartbeat=1 kvcri.agent=0";
    spec_->console_log = *root_ / "console.log";
    spec_->console_socket = *root_ / "vm" / "console.sock";
    spec_->agent_socket = *root_ / "vm" / "agent.sock";
    if (absl::Status s = hv_->Create(*spec_); !s.ok()) {
      error_ = new std::string("Create: " + s.ToString());
      return;
    }
    if (!WaitForCount(spec_->console_log, kReady, 1, absl::Seconds(120))) {
      error_ = new std::string("guest not ready; console:\n" + ReadAll(spec_->console_log));
    }
  }
  static void TearDownTestSuite() {
    if (hv_ != nullptr && spec_ != nullptr) hv_->Remove(spec_->name).IgnoreError();  // best effort: the dir goes too
    delete hv_;
    hv_ = nullptr;
    if (root_ != nullptr) fs::remove_all(*root_);
    delete root_;
    root_ = nullptr;
    delete spec_;
    spec_ = nullptr;
    delete error_;
    error_ = nullptr;
  }
  void SetUp() override {
    std::string missing = MissingPrerequisites();
    if (!missing.empty()) FAIL() << "missing: " << missing;
    if (error_ != nullptr) FAIL() << *error_;
  }
  // qemu-ga starts after the guest's READY line: ping until it answers.
  void WaitForAgent() {
    absl::Status s;
    for (absl::Time deadline = absl::Now() + absl::Seconds(60); absl::Now() < deadline;
         absl::SleepFor(absl::Milliseconds(500))) {
      s = agent_.Ping(spec_->name, absl::Seconds(2));
      if (s.ok()) return;
    }
    FAIL() << "qemu-guest-agent never answered: " << s << "\nconsole:\n" << ReadAll(spec_->console_log);
  }
  absl::StatusOr<GuestExecResult> Exec(std::vector<std::string> argv, std::string_view input = "",
                                       absl::Duration within = absl::Seconds(30)) {
    return agent_.Exec(spec_->name, argv, input, absl::Now() + within);
  }

  static LibvirtHypervisor* hv_;
  static fs::path* root_;
  static VmSpec* spec_;
  static std::string* error_;
  QemuGuestAgent agent_{hv_};
};
LibvirtHypervisor* GuestAgent::hv_ = nullptr;
fs::path* GuestAgent::root_ = nullptr;
VmSpec* GuestAgent::spec_ = nullptr;
std::string* GuestAgent::error_ = nullptr;

TEST_F(GuestAgent, LibvirtReportsTheAgentChannelConnected) {
  WaitForAgent();
  absl::StatusOr<bool> connected = hv_->GuestChannelConnected(spec_->name, kQemuGuestAgentChannelName);
  ASSERT_TRUE(connected.ok()) << connected.status();
  EXPECT_TRUE(*connected);
  EXPECT_EQ(hv_->GuestChannelConnected(spec_->name, "no.such.channel").status().code(), absl::StatusCode::kNotFound);
}

// libvirt 9.0 tracks open/close of every virtio port, not only its agent's:
// our channel reads connected while a guest process holds it open.
TEST_F(GuestAgent, LibvirtReportsOurChannelOpenAndClosedByTheGuest) {
  WaitForAgent();
  const std::string channel = "io.kubevirt-cri.agent.0";
  absl::StatusOr<bool> connected = hv_->GuestChannelConnected(spec_->name, channel);
  ASSERT_TRUE(connected.ok()) << connected.status();
  EXPECT_FALSE(*connected) << "nothing in the guest opened it yet";
  absl::StatusOr<GuestExecResult> r =
      Exec({"/bin/sh", "-c", "(exec 3<>/dev/virtio-ports/" + channel + "; sleep 4) </dev/null >/dev/null 2>&1 &"});
  ASSERT_TRUE(r.ok()) << r.status();
  bool seen = false;
  for (absl::Time deadline = absl::Now() + absl::Seconds(3); !seen && absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(100))) {
    seen = hv_->GuestChannelConnected(spec_->name, channel).value_or(false);
  }
  EXPECT_TRUE(seen) << "libvirt never reported " << channel << " connected";
  bool closed = false;
  for (absl::Time deadline = absl::Now() + absl::Seconds(10); !closed && absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(200))) {
    closed = !hv_->GuestChannelConnected(spec_->name, channel).value_or(true);
  }
  EXPECT_TRUE(closed) << "still connected after the guest closed it";
}

TEST_F(GuestAgent, ExecEchoesAndReportsExitCodes) {
  WaitForAgent();
  absl::StatusOr<GuestExecResult> r = Exec({"/bin/echo", "hello", "guest"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_data, "hello guest\n");
  EXPECT_EQ(r->stderr_data, "");

  r = Exec({"echo", "found", "in", "PATH"});  // qemu-ga spawns with a PATH search
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "found in PATH\n");

  r = Exec({"/bin/sh", "-c", "echo out; echo err >&2; exit 1"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_EQ(r->stdout_data, "out\n");
  EXPECT_EQ(r->stderr_data, "err\n");

  r = Exec({"/bin/sh", "-c", "kill -TERM $$"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 128 + 15);
}

TEST_F(GuestAgent, ExecFeedsStdin) {
  WaitForAgent();
  absl::StatusOr<GuestExecResult> r = Exec({"/bin/cat"}, std::string("line one\nbin\0ary\n", 17));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_data, std::string("line one\nbin\0ary\n", 17));
}

TEST_F(GuestAgent, ExecOfAMissingBinaryIsAnError) {
  WaitForAgent();
  absl::StatusOr<GuestExecResult> r = Exec({"/no/such/binary"});
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("guest-exec"));
}

TEST_F(GuestAgent, DeadlineKillsTheGuestProcess) {
  WaitForAgent();
  absl::Time t0 = absl::Now();
  absl::StatusOr<GuestExecResult> r = Exec({"/bin/sleep", "10"}, "", absl::Seconds(2));
  const absl::Duration took = absl::Now() - t0;
  ASSERT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_LT(took, absl::Seconds(8));
  std::smatch m;
  const std::string msg(r.status().message());
  ASSERT_TRUE(std::regex_search(msg, m, std::regex("guest pid ([0-9]+) was killed"))) << msg;
  // Gone: no such process in the guest, and no sleep left running.
  absl::StatusOr<GuestExecResult> check = Exec({"/bin/sh", "-c", "test -e /proc/" + m[1].str()});
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->exit_code, 1) << "guest pid " << m[1] << " still exists";
  check = Exec({"/bin/sh", "-c", "ps | grep -v grep | grep -c 'sleep 10'"});
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->stdout_data, "0\n");
}

// A shell that forked its sleep: killing only the shell would leave the
// sleep holding the captured pipes, and qemu-ga would never say "exited".
TEST_F(GuestAgent, DeadlineKillsTheWholeProcessTree) {
  WaitForAgent();
  absl::StatusOr<GuestExecResult> r = Exec({"/bin/sh", "-c", "sleep 11; echo never"}, "", absl::Seconds(2));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("was killed"));
  absl::StatusOr<GuestExecResult> check = Exec({"/bin/sh", "-c", "ps | grep -v grep | grep -c 'sleep 11'"});
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->stdout_data, "0\n");
}

// Why the tree kill: with only the shell killed, qemu-ga keeps saying "not
// exited" while its child holds the captured pipes.
TEST_F(GuestAgent, QemuGaReportsExitedOnlyOnceThePipesClosed) {
  WaitForAgent();
  auto command = [&](const std::string& json) {
    absl::StatusOr<std::string> reply = hv_->GuestAgentCommand(spec_->name, json, absl::Seconds(5));
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.value_or("");
  };
  std::smatch m;
  std::string reply = command(
      R"({"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","sleep 6; echo x"],"capture-output":true}})");
  ASSERT_TRUE(std::regex_search(reply, m, std::regex(R"("pid":\s*([0-9]+))"))) << reply;
  const std::string pid = m[1];
  absl::SleepFor(absl::Milliseconds(300));
  command(R"({"execute":"guest-exec","arguments":{"path":"/bin/kill","arg":["-KILL",")" + pid + R"("]}})");
  absl::SleepFor(absl::Seconds(1));
  const std::string status = R"({"execute":"guest-exec-status","arguments":{"pid":)" + pid + "}}";
  EXPECT_THAT(command(status), HasSubstr(R"("exited":false)")) << "the shell is dead, its sleep is not";
  absl::SleepFor(absl::Seconds(6));
  EXPECT_THAT(command(status), HasSubstr(R"("exited":true)"));
}

TEST_F(GuestAgent, ConsoleSocketIsRootsAlone) {
  struct stat st {};
  ASSERT_EQ(::stat(spec_->console_socket.c_str(), &st), 0) << spec_->console_socket;
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  // libvirt binds it and passes QEMU the fd: owned by root, not QEMU's user.
  EXPECT_EQ(st.st_uid, 0u);
}

TEST_F(GuestAgent, ConsoleSocketCarriesBothWaysWhileTheLogKeepsGrowing) {
  const fs::path& log = spec_->console_log;
  // No client: the guest keeps running and the log keeps growing.
  size_t beats = CountOf(ReadAll(log), "KUBEVIRT-CRI-GUEST-HEARTBEAT");
  ASSERT_TRUE(WaitForCount(log, "KUBEVIRT-CRI-GUEST-HEARTBEAT", beats + 2, absl::Seconds(20))) << ReadAll(log);

  base::UniqueFd conn = ConnectUnix(spec_->console_socket);
  ASSERT_TRUE(conn.valid()) << "connect " << spec_->console_socket << ": " << std::strerror(errno);
  // Output reaches the client...
  EXPECT_THAT(ReadUntil(conn.get(), "KUBEVIRT-CRI-GUEST-HEARTBEAT", absl::Seconds(10)),
              HasSubstr("KUBEVIRT-CRI-GUEST-HEARTBEAT"));
  // ...and what the client types reaches ttyS0.
  constexpr char kTyped[] = "attach-says-hi\n";
  ASSERT_EQ(::write(conn.get(), kTyped, sizeof(kTyped) - 1), static_cast<ssize_t>(sizeof(kTyped) - 1));
  EXPECT_THAT(ReadUntil(conn.get(), "KUBEVIRT-CRI-GUEST-TYPED attach-says-hi", absl::Seconds(10)),
              HasSubstr("KUBEVIRT-CRI-GUEST-TYPED attach-says-hi"));
  // The log saw it all while the client was connected.
  EXPECT_TRUE(WaitForCount(log, "KUBEVIRT-CRI-GUEST-TYPED attach-says-hi", 1, absl::Seconds(5))) << ReadAll(log);
  beats = CountOf(ReadAll(log), "KUBEVIRT-CRI-GUEST-HEARTBEAT");
  EXPECT_TRUE(WaitForCount(log, "KUBEVIRT-CRI-GUEST-HEARTBEAT", beats + 2, absl::Seconds(20)));

  // The client leaves: still logging, and a second client can attach.
  conn = base::UniqueFd();
  beats = CountOf(ReadAll(log), "KUBEVIRT-CRI-GUEST-HEARTBEAT");
  EXPECT_TRUE(WaitForCount(log, "KUBEVIRT-CRI-GUEST-HEARTBEAT", beats + 2, absl::Seconds(20)));
  base::UniqueFd again = ConnectUnix(spec_->console_socket);
  ASSERT_TRUE(again.valid());
  EXPECT_THAT(ReadUntil(again.get(), "KUBEVIRT-CRI-GUEST-HEARTBEAT", absl::Seconds(10)),
              HasSubstr("KUBEVIRT-CRI-GUEST-HEARTBEAT"));
}

// Last of the suite: it breaks the agent connection. libvirt buffers at most
// 10 MiB of one reply (QEMU_AGENT_MAX_RESPONSE); output whose base64 is
// bigger fails the exec, and libvirt refuses every later command for the
// domain (docs/exec.md "qemu-guest-agent").
TEST_F(GuestAgent, ZzOutputBeyondLibvirtsReplyLimitFailsAndBreaksTheAgent) {
  WaitForAgent();
  absl::StatusOr<GuestExecResult> r = Exec({"/bin/sh", "-c", "head -c 9000000 /dev/zero"});
  ASSERT_FALSE(r.ok()) << "9 MB of stdout came back through libvirt";
  std::cerr << "exec of 9 MB: " << r.status() << "\n";
  absl::Status ping = agent_.Ping(spec_->name, absl::Seconds(2));
  std::cerr << "ping after: " << ping << "\n";
  EXPECT_FALSE(ping.ok());
}

// Through the real daemon, whose VMs run confined under their own uids: the
// sockets CreateContainer placed are bound (by libvirt, as root) though
// QEMU's uid cannot enter their directory, attach works both ways, and
// RemovePod leaves nothing behind.
TEST(GuestAgentDaemon, ConfinedVmGetsConsoleAndAgentSocketsOnlyRootReaches) {
  testing::RequireIntegrationEnvironment(/*need_guest_images=*/true);
  testing::TestDaemon d;
  d.Start();
  testing::ImportGuestImages(d);
  testing::pb::PodSandboxConfig sandbox;
  std::string pod, ctr;
  ASSERT_TRUE(testing::StartPod(d, "attach-sock", testing::kKernelImage, &pod, &ctr, nullptr, &sandbox))
      << d.DaemonLog();
  const fs::path cri_log = fs::path(sandbox.log_directory()) / "vm/0.log";
  ASSERT_TRUE(testing::WaitForFileContains(cri_log, kReady, std::chrono::seconds(240))) << d.DaemonLog();

  const fs::path vm_dir = d.state_dir() / "vm" / ctr.substr(0, 16);
  struct stat st {};
  ASSERT_EQ(::stat(vm_dir.c_str(), &st), 0) << vm_dir;
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  for (const char* name : {"console.sock", "agent.sock"}) {
    ASSERT_EQ(::stat((vm_dir / name).c_str(), &st), 0) << (vm_dir / name);
    EXPECT_TRUE(S_ISSOCK(st.st_mode)) << name;
  }
  // The VM's own uid and any other VM's uid cannot connect; root can.
  uint32_t qemu_uid = 0;
  for (int pid : testing::ProcessesMatching("guest=kvcri-" + ctr)) {
    struct stat ps {};
    if (::stat(("/proc/" + std::to_string(pid)).c_str(), &ps) == 0 && ps.st_uid != 0) qemu_uid = ps.st_uid;
  }
  ASSERT_NE(qemu_uid, 0u) << "QEMU of " << ctr << " is not confined";
  EXPECT_FALSE(CanConnectAs(qemu_uid, vm_dir / "console.sock"));
  EXPECT_FALSE(CanConnectAs(qemu_uid + 1, vm_dir / "agent.sock"));

  base::UniqueFd conn = ConnectUnix(vm_dir / "console.sock");
  ASSERT_TRUE(conn.valid()) << std::strerror(errno);
  // The guest's console reader may start a moment after READY: type until echoed.
  std::string got;
  for (int i = 0; i < 15 && got.find("KUBEVIRT-CRI-GUEST-TYPED via-daemon") == std::string::npos; ++i) {
    ASSERT_GT(::write(conn.get(), "via-daemon\n", 11), 0);
    got += ReadUntil(conn.get(), "KUBEVIRT-CRI-GUEST-TYPED via-daemon", absl::Seconds(2));
  }
  EXPECT_THAT(got, HasSubstr("KUBEVIRT-CRI-GUEST-TYPED via-daemon"));
  // The CRI log (copied from console.log) has it too.
  EXPECT_TRUE(testing::WaitForFileContains(cri_log, "KUBEVIRT-CRI-GUEST-TYPED via-daemon", std::chrono::seconds(10)))
      << testing::ReadFileOrEmpty(cri_log);
  conn = base::UniqueFd();

  testing::RemovePod(d, pod);
  EXPECT_FALSE(fs::exists(vm_dir));
  testing::ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::runtime
