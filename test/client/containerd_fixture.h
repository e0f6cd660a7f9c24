// ContainerdFixture: a private containerd plus registry for the routing integration tests.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "cri/proto/api.grpc.pb.h"
#include "test/client/test_daemon.h"

namespace kvcri::testing {

// A private container runtime for routing tests: Debian's `containerd` (CRI
// plugin, runc, overlayfs snapshotter) on its own socket, root and state dirs,
// plus a `docker-registry` on 127.0.0.1 holding two images built here from
// busybox-static with umoci and pushed with skopeo (no internet):
//   BusyboxImage(): every busybox applet in /bin, cmd /bin/sh;
//   the sandbox ("pause") image containerd's sandbox_image points at:
//   /bin/sleep forever.
// containerd reaches the registry over plain HTTP (a registry mirror entry),
// and has its own CNI network (bridge + host-local, see MakeTestNetwork).
//
// The destructor kills containerd, its shims and the registry, unmounts what
// containerd left under its root, and removes everything.
class ContainerdFixture {
 public:
  // `snapshotter`: "overlayfs" (default) or "native" where overlayfs fails.
  explicit ContainerdFixture(std::string snapshotter = "overlayfs");
  ~ContainerdFixture();
  ContainerdFixture(const ContainerdFixture&) = delete;
  ContainerdFixture& operator=(const ContainerdFixture&) = delete;

  // Before Start: one more CRI runtime handler, e.g. ("kubevirt",
  // "io.containerd.kubevirt.v1"); containerd finds its shim on $PATH.
  void AddRuntime(const std::string& handler, const std::string& runtime_type);

  // Builds and pushes the images (first call only), starts the registry
  // (first call only) and containerd, and waits until its CRI answers.
  // Fails the test (never skips) when a tool is missing or does not start.
  void Start();
  // SIGKILL containerd only: shims and containers keep running, as on a node.
  void Kill9();
  bool Running() const { return containerd_pid_ > 0; }

  // gRPC target for kubevirt-cri's upstream.endpoint.
  std::string Endpoint() const { return "unix://" + socket().string(); }
  std::filesystem::path socket() const { return dir_.path() / "containerd.sock"; }
  std::string BusyboxImage() const;
  // After Start: pushes the OCI layout `layout_dir` (skopeo's "dir:ref"
  // form allowed) to the registry as kvcri-test/<repo_tag>; the reference
  // containerd pulls it by. Fails the test when skopeo fails.
  std::string PushImage(const std::string& layout_dir, const std::string& repo_tag);
  std::string PauseImage() const;
  std::filesystem::path LogPath() const { return dir_.path() / "containerd.log"; }
  std::string Log() const;

  // CRI straight to containerd, for comparison with answers through us.
  pb::RuntimeService::Stub& runtime() { return *runtime_; }
  pb::ImageService::Stub& images() { return *images_; }

 private:
  void BuildAndPushImages();
  void StartRegistry();
  void WriteConfig();

  std::string snapshotter_;
  std::string extra_runtimes_;  // TOML tables from AddRuntime
  TempDir dir_;
  int registry_port_ = 0;
  std::string bridge_;
  pid_t registry_pid_ = -1;
  pid_t containerd_pid_ = -1;
  bool images_pushed_ = false;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::RuntimeService::Stub> runtime_;
  std::unique_ptr<pb::ImageService::Stub> images_;
};

}  // namespace kvcri::testing
