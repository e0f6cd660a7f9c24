// TestDaemon: the real daemon started on temp dirs, its CRI stubs, and the environment checks.
#include "test/client/test_daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "test/client/host_util.h"

namespace kvcri::testing {
namespace fs = std::filesystem;

namespace {

bool OnPath(const char* tool) {
  for (const char* dir : {"/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"}) {
    if (::access((fs::path(dir) / tool).c_str(), X_OK) == 0) return true;
  }
  return false;
}

}  // namespace

void RequireIntegrationEnvironment(bool need_guest_images) {
  ASSERT_EQ(::geteuid(), 0u) << "integration tests need root (network namespaces, QEMU, mounts)";
  ASSERT_TRUE(OnPath("qemu-system-x86_64")) << "qemu-system-x86_64 is missing: run scripts/install-deps.sh";
  ASSERT_EQ(::access("/dev/net/tun", R_OK | W_OK), 0) << "/dev/net/tun is missing or not usable";
  if (need_guest_images) {
    fs::path guest = KVCRI_GUEST_DIR;
    ASSERT_TRUE(fs::exists(guest / "oci-kernel" / "index.json") && fs::exists(guest / "oci-disk" / "index.json"))
        << "test guest images are missing under " << guest
        << ": the guest_images ctest fixture (test/guest/build-guest.sh) builds them";
  }
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/kvcri-XXXXXX";
  char* made = ::mkdtemp(tmpl);
  if (made == nullptr) std::abort();
  path_ = made;
}

TempDir::~TempDir() {
  if (std::getenv("KVCRI_KEEP_TMP") != nullptr) return;
  KillProcessesUnder(path_);
  UnmountUnder(path_);
  std::error_code ec;
  fs::remove_all(path_, ec);
}

TestNetwork MakeTestNetwork(const fs::path& ipam_dir) {
  std::random_device rd;
  std::mt19937 gen(rd());
  char bridge[16];
  std::snprintf(bridge, sizeof bridge, "kvb%06x", static_cast<unsigned>(gen() & 0xffffff));
  TestNetwork n;
  n.bridge = bridge;
  n.subnet = "10." + std::to_string(200 + gen() % 50) + "." + std::to_string(gen() % 256) + ".0/24";
  n.conflist = R"({
  "cniVersion": "1.0.0",
  "name": "kvcri-test",
  "plugins": [
    {"type": "bridge", "bridge": ")" + n.bridge + R"(", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": ")" + n.subnet + R"("}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ")" + ipam_dir.string() + R"("}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
})";
  return n;
}

TestDaemon::TestDaemon(Options options) : options_(std::move(options)) {
  fs::create_directories(cni_dir());
  fs::create_directories(log_dir());
  if (options_.cni_conflist.empty() && options_.pod_network) {
    TestNetwork net = MakeTestNetwork(ipam_dir());
    bridge_ = net.bridge;
    subnet_ = net.subnet;
    options_.cni_conflist = net.conflist;
  }
  if (!options_.cni_conflist.empty()) {
    std::ofstream(cni_dir() / "10-test.conflist") << options_.cni_conflist;
  }
  std::ofstream cfg(config_path());
  cfg << "log_level = \"" << options_.log_level << "\"\n"
      << options_.extra_config << "\n"
      << "[cni]\nconf_dir = \"" << cni_dir().string() << "\"\n";
  if (!options_.cni_bin_dirs.empty()) {
    cfg << "bin_dirs = [";
    for (const std::string& d : options_.cni_bin_dirs) cfg << "\"" << d << "\", ";
    cfg << "\"/opt/cni/bin\", \"/usr/lib/cni\"]\n";
  }
  if (options_.extra_config.find("[runtime]") == std::string::npos) {
    cgroup_parent_ = "/kvcri-test-" + dir().filename().string();
    cfg << "[runtime]\ndefault_cgroup_parent = \"" << cgroup_parent_ << "\"\n";
  }
  // VM-only unless the test names an upstream: the node's containerd is none of our business.
  if (options_.extra_config.find("[upstream]") == std::string::npos) cfg << "[upstream]\nendpoint = \"\"\n";
}

TestDaemon::~TestDaemon() {
  if (pid_ > 0) Terminate();
  // The daemon makes the default parent and leaves it (shared by Pods);
  // rmdir works only once it is empty, so a leak stays visible.
  if (!cgroup_parent_.empty()) {
    std::error_code ec;
    for (const auto& h : fs::directory_iterator("/sys/fs/cgroup", ec)) {
      ::rmdir((h.path() / cgroup_parent_.substr(1)).c_str());
    }
    ::rmdir((fs::path("/sys/fs/cgroup") / cgroup_parent_.substr(1)).c_str());
  }
  // The bridge plugin leaves its bridge behind by design (shared by Pods).
  if (!bridge_.empty()) std::system(("ip link del " + bridge_ + " >/dev/null 2>&1").c_str());
}

std::vector<std::string> TestDaemon::DaemonArgs() const {
  return {"--config", config_path().string(), "--listen", socket().string(),
          "--root", root().string(), "--state-dir", state_dir().string()};
}

void TestDaemon::Start() {
  ASSERT_LT(pid_, 0) << "daemon already running";
  std::vector<std::string> args = {options_.daemon_path};
  for (const std::string& a : DaemonArgs()) args.push_back(a);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << "fork failed";
  if (pid == 0) {
    int fd = ::open(stderr_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool connected = false;
  while (std::chrono::steady_clock::now() < deadline) {
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      FAIL() << "daemon exited during start-up with status " << status << "; log:\n" << DaemonLog();
    }
    // A channel made before the socket exists backs off for seconds; make it
    // once the (new) socket is there. A stale socket from a killed daemon is
    // replaced by the new one, so keep probing.
    struct stat st;
    if (::stat(socket().c_str(), &st) == 0) {
      if (!connected) {
        Connect();
        connected = true;
      }
      pb::VersionResponse resp;
      auto ctx = Ctx(std::chrono::seconds(1));
      if (runtime().Version(ctx.get(), pb::VersionRequest(), &resp).ok()) return;
      connected = false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL() << "daemon did not answer Version within 60 s; log:\n" << DaemonLog();
}

void TestDaemon::Connect() {
  channel_ = grpc::CreateChannel("unix:" + socket().string(), grpc::InsecureChannelCredentials());
  runtime_ = pb::RuntimeService::NewStub(channel_);
  images_ = pb::ImageService::NewStub(channel_);
}

void TestDaemon::Kill9() {
  ASSERT_GT(pid_, 0);
  ::kill(pid_, SIGKILL);
  int status;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

int TestDaemon::Terminate() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 300; ++i) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "daemon did not exit within 30 s of SIGTERM";
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

int TestDaemon::RunSubcommand(const std::vector<std::string>& sub, std::string* out) const {
  std::string cmd = options_.daemon_path;
  auto quote = [](const std::string& s) { return "'" + s + "'"; };
  for (const std::string& a : sub) cmd += " " + quote(a);
  for (const std::string& a : DaemonArgs()) cmd += " " + quote(a);
  cmd += " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string TestDaemon::DaemonLog() const { return ReadFileOrEmpty(stderr_path()); }

pb::RuntimeService::Stub& TestDaemon::runtime() { return *runtime_; }
pb::ImageService::Stub& TestDaemon::images() { return *images_; }

std::unique_ptr<grpc::ClientContext> Ctx(std::chrono::seconds timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

}  // namespace kvcri::testing
