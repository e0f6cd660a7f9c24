// kvcri-agent in the booted test guest over a real virtio-serial port: exec, pty, port connections, host reconnects.
//
// QEMU is started directly (no daemon, no libvirt): the dispatch engineer
// wires the channel into the domain; this test pins the agent and its host
// client to the virtio-serial semantics they rely on (hang-up while no host
// is attached, a new host after the old one left).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/accelerator.h"
#include "runtime/agent/agent_client.h"

namespace kvcri::runtime::agent {
namespace {

namespace fs = std::filesystem;

std::string ReadAllOf(Process& p, Output which = Output::kStdout) {
  std::string out;
  char buf[4096];
  for (;;) {
    absl::StatusOr<size_t> n = p.Read(which, buf, sizeof(buf));
    EXPECT_TRUE(n.ok()) << n.status();
    if (!n.ok() || *n == 0) return out;
    out.append(buf, *n);
  }
}

class AgentGuestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path guest = KVCRI_GUEST_DIR;
    ASSERT_TRUE(fs::exists(guest / "vmlinuz") && fs::exists(guest / "initrd.img"))
        << "test guest missing in " << guest << ": run test/guest/build-guest.sh (ctest fixture guest_images)";
    ASSERT_EQ(access("/usr/bin/qemu-system-x86_64", X_OK), 0) << "qemu-system-x86_64 missing (package qemu-system-x86)";
    char tmpl[] = "/tmp/kvcri-agent-vm-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = new fs::path(tmpl);
    socket_ = new fs::path(*dir_ / "agent.sock");
    // KVM only where it runs ordinary guests (not kvm_pvm): the daemon's own choice.
    absl::StatusOr<runtime::AccelChoice> accel = runtime::ChooseAccelerator(config::Accelerator::kAuto, runtime::HostProbe());
    ASSERT_TRUE(accel.ok()) << accel.status();
    bool use_kvm = accel->accel == config::Accelerator::kKvm;
    std::string chardev = "socket,id=agent,path=" + socket_->string() + ",server=on,wait=off";
    std::string console = "file:" + (*dir_ / "console.log").string();
    std::string kernel = (guest / "vmlinuz").string(), initrd = (guest / "initrd.img").string();
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      execl("/usr/bin/qemu-system-x86_64", "qemu-system-x86_64", "-machine", "q35", "-accel", use_kvm ? "kvm" : "tcg",
            "-m", "256", "-smp", "1", "-display", "none", "-no-reboot", "-kernel", kernel.c_str(), "-initrd",
            initrd.c_str(), "-append", "console=ttyS0 panic=-1 quiet", "-serial", console.c_str(), "-device",
            "virtio-serial-pci", "-chardev", chardev.c_str(), "-device",
            "virtserialport,chardev=agent,name=io.kubevirt-cri.agent.0", "-nic", "none", nullptr);
      _exit(127);
    }
  }
  static void TearDownTestSuite() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (dir_ != nullptr) fs::remove_all(*dir_);
  }

  // Connects once the guest booted and its agent answers (TCG boots slowly).
  static std::unique_ptr<AgentClient> Connect() {
    absl::Status last;
    for (absl::Time end = absl::Now() + absl::Seconds(180); absl::Now() < end;) {
      if (fs::exists(*socket_)) {
        absl::StatusOr<std::unique_ptr<AgentClient>> c = ConnectAgent(*socket_, AgentLimits{});
        if (c.ok()) return std::move(*c);
        last = c.status();
      }
      absl::SleepFor(absl::Milliseconds(500));
    }
    std::ifstream log(*dir_ / "console.log");
    std::string console((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    ADD_FAILURE() << "no kvcri-agent in the guest: " << last << "\nconsole:\n" << console;
    return nullptr;
  }

  static inline pid_t pid_ = -1;
  static inline fs::path* dir_ = nullptr;
  static inline fs::path* socket_ = nullptr;
};

TEST_F(AgentGuestTest, ExecPtyAndPortForwardInTheGuestThenANewHost) {
  std::unique_ptr<AgentClient> c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->AgentVersion(), "kvcri-agent 2");

  absl::StatusOr<std::unique_ptr<Process>> p = c->Exec({{"sh", "-c", "cat /proc/cmdline; echo err >&2; exit 3"}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NE(ReadAllOf(**p).find("console=ttyS0"), std::string::npos);  // the guest's, not the host's
  EXPECT_EQ(ReadAllOf(**p, Output::kStderr), "err\n");
  EXPECT_EQ((*p)->Wait(absl::Now() + absl::Seconds(30)).value_or(-1), 3);

  ExecOptions tty;
  tty.argv = {"stty", "size"};
  tty.tty = true;
  tty.width = 123;
  tty.height = 45;
  absl::StatusOr<std::unique_ptr<Process>> t = c->Exec(tty);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_NE(ReadAllOf(**t).find("45 123"), std::string::npos);
  EXPECT_EQ((*t)->Wait(absl::Now() + absl::Seconds(30)).value_or(-1), 0);

  // The guest's echo service (nc -e cat on port 7): 256 KiB there and back.
  absl::StatusOr<std::unique_ptr<PortConnection>> echo = c->ConnectPort(7);
  ASSERT_TRUE(echo.ok()) << echo.status();
  std::string data(256 << 10, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + 7);
  std::thread writer([&] { EXPECT_TRUE((*echo)->Write(data).ok()); });
  std::string back;
  char buf[16384];
  while (back.size() < data.size()) {
    absl::StatusOr<size_t> n = (*echo)->Read(buf, sizeof(buf));
    ASSERT_TRUE(n.ok() && *n > 0) << "after " << back.size() << " bytes";
    back.append(buf, *n);
  }
  writer.join();
  EXPECT_TRUE(back == data);
  echo->reset();

  absl::StatusOr<std::unique_ptr<PortConnection>> refused = c->ConnectPort(9);
  EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();

  // A running process dies with its host; the next host gets a fresh agent.
  absl::StatusOr<std::unique_ptr<Process>> sleeper = c->Exec({{"sh", "-c", "echo $$; exec sleep 1000"}});
  ASSERT_TRUE(sleeper.ok()) << sleeper.status();
  absl::StatusOr<size_t> n = (*sleeper)->Read(Output::kStdout, buf, sizeof(buf));
  ASSERT_TRUE(n.ok() && *n > 0);
  std::string pid(buf, *n - 1);
  // Every session and the client let go of the connection: QEMU takes the
  // next host only then.
  sleeper->reset();
  p->reset();
  t->reset();
  c.reset();
  c = Connect();
  ASSERT_NE(c, nullptr);
  bool gone = false;
  for (int i = 0; i < 50 && !gone; ++i) {
    absl::StatusOr<std::unique_ptr<Process>> probe = c->Exec({{"sh", "-c", "kill -0 " + pid}});
    ASSERT_TRUE(probe.ok()) << probe.status();
    gone = (*probe)->Wait(absl::Now() + absl::Seconds(30)).value_or(0) != 0;
    if (!gone) absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_TRUE(gone) << "guest pid " << pid << " outlived its host";
}

}  // namespace
}  // namespace kvcri::runtime::agent
