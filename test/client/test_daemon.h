// TestDaemon and TempDir: the real daemon under test, and what integration tests require.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "cri/proto/api.grpc.pb.h"

namespace kvcri::testing {

namespace pb = ::runtime::v1;

// Fails the test (never skips) when the integration environment is missing
// something it needs: root, /dev/net/tun, QEMU, the built guest images.
void RequireIntegrationEnvironment(bool need_guest_images);

// A scratch directory under /tmp with a short path (libvirt's embed root puts
// unix sockets below it); removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The real kubevirt-cri binary, started on private paths under a TempDir.
class TestDaemon {
 public:
  struct Options {
    // Extra TOML appended to the generated config file.
    std::string extra_config;
    // Written as <dir>/cni/10-test.conflist when non-empty.
    std::string cni_conflist;
    // With no cni_conflist: true writes a private Pod network (TestNetwork)
    // so Pods can be run; false leaves the CNI dir empty (NetworkReady=false).
    bool pod_network = true;
    // Extra CNI plugin directories searched before the system ones.
    std::vector<std::string> cni_bin_dirs;
    std::string log_level = "debug";
    // The daemon binary; benchmarks point it at another build to compare.
    std::string daemon_path = KVCRI_DAEMON_PATH;
  };

  TestDaemon() : TestDaemon(Options{}) {}
  explicit TestDaemon(Options options);
  ~TestDaemon();  // SIGTERM; tests remove their own Pods first.

  // Starts the daemon and waits until Version answers. Fails the test on timeout.
  void Start();
  // SIGKILL, like a crash; the socket file stays behind.
  void Kill9();
  // SIGTERM and wait for a clean exit; returns the exit status.
  int Terminate();
  bool Running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  // Runs the daemon binary's subcommand with this daemon's flags; returns exit code, output in *out.
  int RunSubcommand(const std::vector<std::string>& args, std::string* out) const;

  const std::filesystem::path& dir() const { return dir_.path(); }
  std::filesystem::path socket() const { return dir() / "kvcri.sock"; }
  std::filesystem::path root() const { return dir() / "root"; }
  std::filesystem::path state_dir() const { return dir() / "run"; }
  std::filesystem::path config_path() const { return dir() / "config.toml"; }
  std::filesystem::path cni_dir() const { return dir() / "cni"; }
  std::filesystem::path log_dir() const { return dir() / "pods"; }
  std::filesystem::path stderr_path() const { return dir() / "daemon.log"; }
  // host-local's store of the generated Pod network.
  std::filesystem::path ipam_dir() const { return dir() / "ipam"; }
  // The generated Pod network's bridge and subnet ("" when none).
  const std::string& bridge() const { return bridge_; }
  const std::string& subnet() const { return subnet_; }
  // The cgroup Pods without a linux.cgroup_parent get their VMs' cgroups
  // in: one per test daemon ("/kvcri-test-<dir name>"), so concurrent tests
  // and ExpectNoLeftovers see only their own. Empty when the test's
  // extra_config has its own [runtime] table.
  const std::string& cgroup_parent() const { return cgroup_parent_; }
  std::string DaemonLog() const;

  pb::RuntimeService::Stub& runtime();
  pb::ImageService::Stub& images();
  std::vector<std::string> DaemonArgs() const;

 private:
  void Connect();

  Options options_;
  TempDir dir_;
  std::string bridge_;
  std::string subnet_;
  std::string cgroup_parent_;
  pid_t pid_ = -1;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::RuntimeService::Stub> runtime_;
  std::unique_ptr<pb::ImageService::Stub> images_;
};

// The Pod network a TestDaemon writes by default: bridge (a private name,
// gateway .1) + host-local (a random 10.x.y.0/24, store under `ipam_dir`) +
// portmap, as a 1.0.0 conflist. Names and ranges differ per call so tests can
// run side by side.
struct TestNetwork {
  std::string bridge;
  std::string subnet;  // "10.x.y.0/24"
  std::string conflist;
};
TestNetwork MakeTestNetwork(const std::filesystem::path& ipam_dir);

// A client context with a deadline, as kubelet uses.
std::unique_ptr<grpc::ClientContext> Ctx(std::chrono::seconds timeout = std::chrono::seconds(30));

}  // namespace kvcri::testing
