// ContainerdFixture: starts a private containerd and registry and builds their busybox images.
#include "test/client/containerd_fixture.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test/client/host_util.h"

namespace kvcri::testing {
namespace fs = std::filesystem;

namespace {

bool CanConnect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}

// Starts `argv` in its own session with stdout and stderr appended to `log`.
pid_t Spawn(const std::vector<std::string>& argv, const fs::path& log) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::setsid();
  FILE* f = std::fopen(log.c_str(), "a");
  if (f != nullptr) {
    ::dup2(fileno(f), 1);
    ::dup2(fileno(f), 2);
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  ::_exit(127);
}

void KillAndReap(pid_t* pid) {
  if (*pid <= 0) return;
  ::kill(*pid, SIGKILL);
  ::waitpid(*pid, nullptr, 0);
  *pid = -1;
}

bool Tool(const char* name) {
  return std::system((std::string("command -v ") + name + " >/dev/null 2>&1").c_str()) == 0;
}

}  // namespace

ContainerdFixture::ContainerdFixture(std::string snapshotter) : snapshotter_(std::move(snapshotter)) {}

ContainerdFixture::~ContainerdFixture() {
  KillAndReap(&containerd_pid_);
  KillAndReap(&registry_pid_);
  KillProcessesUnder(dir_.path());
  // Pods whose sandbox was not removed leave their netns mounts under state/.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  UnmountUnder(dir_.path());
  if (!bridge_.empty()) std::system(("ip link del " + bridge_ + " >/dev/null 2>&1").c_str());
}

std::string ContainerdFixture::BusyboxImage() const {
  return "127.0.0.1:" + std::to_string(registry_port_) + "/kvcri-test/busybox:latest";
}

std::string ContainerdFixture::PauseImage() const {
  return "127.0.0.1:" + std::to_string(registry_port_) + "/kvcri-test/pause:1";
}

std::string ContainerdFixture::Log() const { return ReadFileOrEmpty(LogPath()); }

void ContainerdFixture::BuildAndPushImages() {
  for (const char* tool : {"containerd", "runc", "containerd-shim-runc-v2", "docker-registry", "umoci", "skopeo"}) {
    ASSERT_TRUE(Tool(tool)) << tool << " is missing: run scripts/install-deps.sh --test";
  }
  ASSERT_TRUE(fs::exists("/bin/busybox")) << "/bin/busybox is missing (busybox-static)";
  const fs::path d = dir_.path() / "images";
  // Two images from one static busybox: the workload and the sandbox image.
  std::ostringstream sh;
  sh << "set -e\ncd '" << d.string() << "'\n"
     << "build() {  # name tag entrypoint...\n"
     << "  n=$1; t=$2; shift 2\n"
     << "  umoci init --layout $n\n"
     << "  umoci new --image $n:$t\n"
     << "  umoci unpack --image $n:$t b-$n >/dev/null\n"
     << "  mkdir -p b-$n/rootfs/bin b-$n/rootfs/tmp b-$n/rootfs/etc\n"
     << "  cp /bin/busybox b-$n/rootfs/bin/busybox\n"
     << "  for a in $(/bin/busybox --list); do [ $a = busybox ] || ln -sf busybox b-$n/rootfs/bin/$a; done\n"
     << "  umoci repack --image $n:$t b-$n\n"
     << "  umoci config --image $n:$t --config.env PATH=/bin \"$@\"\n"
     << "  skopeo copy --quiet --dest-tls-verify=false oci:$n:$t docker://127.0.0.1:" << registry_port_
     << "/kvcri-test/$n:$t\n"
     << "}\n"
     << "build busybox latest --config.cmd /bin/sh\n"
     << "build pause 1 --config.entrypoint /bin/sleep --config.entrypoint 2147483647\n";
  fs::create_directories(d);
  std::ofstream(d / "build.sh") << sh.str();
  const fs::path log = dir_.path() / "images.log";
  int rc = std::system(("bash '" + (d / "build.sh").string() + "' >'" + log.string() + "' 2>&1").c_str());
  ASSERT_EQ(rc, 0) << "building the test images failed:\n" << ReadFileOrEmpty(log);
  images_pushed_ = true;
}

std::string ContainerdFixture::PushImage(const std::string& layout_dir, const std::string& repo_tag) {
  const std::string ref = "127.0.0.1:" + std::to_string(registry_port_) + "/kvcri-test/" + repo_tag;
  const fs::path log = dir_.path() / "push.log";
  const std::string cmd = "skopeo copy --quiet --dest-tls-verify=false 'oci:" + layout_dir + "' 'docker://" + ref +
                          "' >'" + log.string() + "' 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << "pushing " << layout_dir << " failed:\n" << ReadFileOrEmpty(log);
  return ref;
}

void ContainerdFixture::StartRegistry() {
  registry_port_ = FreeLoopbackPort();
  ASSERT_GT(registry_port_, 0) << "no free TCP port on 127.0.0.1";
  const fs::path cfg = dir_.path() / "registry.yml";
  std::ofstream(cfg) << "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: "
                     << (dir_.path() / "registry").string() << "\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:"
                     << registry_port_ << "\n";
  registry_pid_ = Spawn({"docker-registry", "serve", cfg.string()}, dir_.path() / "registry.log");
  for (int i = 0; i < 100; ++i) {
    if (CanConnect(registry_port_)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  FAIL() << "docker-registry did not answer on 127.0.0.1:" << registry_port_ << ":\n"
         << ReadFileOrEmpty(dir_.path() / "registry.log");
}

void ContainerdFixture::AddRuntime(const std::string& handler, const std::string& runtime_type) {
  extra_runtimes_ += "  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes." + handler + "]\n" +
                     "    runtime_type = \"" + runtime_type + "\"\n";
}

void ContainerdFixture::WriteConfig() {
  const fs::path cni = dir_.path() / "cni";
  fs::create_directories(cni);
  TestNetwork net = MakeTestNetwork(dir_.path() / "ipam");
  bridge_ = net.bridge;
  std::ofstream(cni / "10-containerd.conflist") << net.conflist;
  const std::string reg = "127.0.0.1:" + std::to_string(registry_port_);
  std::ofstream(dir_.path() / "config.toml")
      << "version = 2\n"
      << "root = \"" << (dir_.path() / "root").string() << "\"\n"
      << "state = \"" << (dir_.path() / "state").string() << "\"\n"
      << "[grpc]\n  address = \"" << socket().string() << "\"\n"
      << "[plugins.\"io.containerd.grpc.v1.cri\"]\n"
      << "  sandbox_image = \"" << PauseImage() << "\"\n"
      // The sandbox asks for oom_score_adj -998; where we lack CAP_SYS_RESOURCE
      // (a test container) that fails, so keep it >= containerd's own.
      << "  restrict_oom_score_adj = true\n"
      << "  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
      << "    snapshotter = \"" << snapshotter_ << "\"\n"
      // runc's state beside containerd's, not in the node's /run/containerd.
      << "  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n"
      << "    runtime_type = \"io.containerd.runc.v2\"\n"
      << "  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n"
      << "    Root = \"" << (dir_.path() / "runc").string() << "\"\n"
      << extra_runtimes_
      << "  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n"
      << "    bin_dir = \"/usr/lib/cni\"\n"
      << "    conf_dir = \"" << cni.string() << "\"\n"
      // Plain HTTP to the test registry.
      << "  [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"" << reg << "\"]\n"
      << "    endpoint = [\"http://" << reg << "\"]\n";
}

void ContainerdFixture::Start() {
  if (registry_pid_ <= 0) {
    StartRegistry();
    if (::testing::Test::HasFatalFailure()) return;
  }
  if (!images_pushed_) {
    BuildAndPushImages();
    if (::testing::Test::HasFatalFailure()) return;
    WriteConfig();
  }
  containerd_pid_ = Spawn({"containerd", "--config", (dir_.path() / "config.toml").string()}, LogPath());
  channel_ = grpc::CreateChannel("unix://" + socket().string(), grpc::InsecureChannelCredentials());
  runtime_ = pb::RuntimeService::NewStub(channel_);
  images_ = pb::ImageService::NewStub(channel_);
  for (int i = 0; i < 300; ++i) {
    pb::VersionResponse v;
    if (runtime_->Version(Ctx(std::chrono::seconds(1)).get(), pb::VersionRequest(), &v).ok()) return;
    int status = 0;
    if (::waitpid(containerd_pid_, &status, WNOHANG) == containerd_pid_) {
      containerd_pid_ = -1;
      FAIL() << "containerd exited:\n" << Log();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  FAIL() << "containerd's CRI did not answer on " << socket() << ":\n" << Log();
}

void ContainerdFixture::Kill9() { KillAndReap(&containerd_pid_); }

}  // namespace kvcri::testing
