// One CRI socket for VM Pods and container Pods: kubevirt-cri serves the
// `kubevirt` RuntimeClass and forwards every other one to a real containerd
// (Debian's containerd + runc, started by the test on private paths, images
// from a local registry). Also what happens when containerd dies and comes
// back, and when kubevirt-cri is killed with SIGKILL.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "test/client/containerd_fixture.h"
#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> SandboxIds(pb::RuntimeService::Stub& rt, const pb::PodSandboxFilter& filter = {}) {
  pb::ListPodSandboxRequest req;
  *req.mutable_filter() = filter;
  pb::ListPodSandboxResponse resp;
  grpc::Status s = rt.ListPodSandbox(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  std::vector<std::string> ids;
  for (const auto& sb : resp.items()) ids.push_back(sb.id());
  return ids;
}

std::vector<std::string> ContainerIds(pb::RuntimeService::Stub& rt, const pb::ContainerFilter& filter = {}) {
  pb::ListContainersRequest req;
  *req.mutable_filter() = filter;
  pb::ListContainersResponse resp;
  grpc::Status s = rt.ListContainers(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  std::vector<std::string> ids;
  for (const auto& c : resp.containers()) ids.push_back(c.id());
  return ids;
}

bool Contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

const pb::RuntimeCondition* Condition(const pb::StatusResponse& st, const std::string& type) {
  for (const auto& c : st.status().conditions()) {
    if (c.type() == type) return &c;
  }
  return nullptr;
}

// A runc Pod as kubelet makes it: sandbox (empty handler), pull with the
// sandbox config, one busybox container that logs and then sleeps.
struct RuncPod {
  std::string pod_id;
  std::string ctr_id;
  std::string log_path;
};

bool StartRuncPod(TestDaemon& d, const std::string& image, RuncPod* out) {
  pb::PodSandboxConfig sandbox = SandboxConfig("runc", d.log_dir());
  std::filesystem::create_directories(sandbox.log_directory());
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = sandbox;
  pb::RunPodSandboxResponse run_resp;
  grpc::Status s = d.runtime().RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &run_resp);
  EXPECT_TRUE(s.ok()) << "RunPodSandbox: " << s.error_message();
  if (!s.ok()) return false;
  out->pod_id = run_resp.pod_sandbox_id();

  pb::PullImageRequest pull;
  pull.mutable_image()->set_image(image);
  *pull.mutable_sandbox_config() = sandbox;
  pb::PullImageResponse pull_resp;
  s = d.images().PullImage(Ctx(std::chrono::seconds(120)).get(), pull, &pull_resp);
  EXPECT_TRUE(s.ok()) << "PullImage: " << s.error_message();
  if (!s.ok()) return false;

  pb::CreateContainerRequest create;
  create.set_pod_sandbox_id(out->pod_id);
  *create.mutable_sandbox_config() = sandbox;
  pb::ContainerConfig& c = *create.mutable_config();
  c.mutable_metadata()->set_name("busybox");
  c.mutable_image()->set_image(image);
  c.add_command("/bin/sh");
  c.add_args("-c");
  c.add_args("echo hello-from-runc; exec sleep 3600");
  c.set_log_path("busybox/0.log");
  (*c.mutable_labels())["container"] = "busybox";
  pb::CreateContainerResponse create_resp;
  s = d.runtime().CreateContainer(Ctx(std::chrono::seconds(60)).get(), create, &create_resp);
  EXPECT_TRUE(s.ok()) << "CreateContainer: " << s.error_message();
  if (!s.ok()) return false;
  out->ctr_id = create_resp.container_id();
  out->log_path = sandbox.log_directory() + "/busybox/0.log";

  pb::StartContainerRequest start;
  start.set_container_id(out->ctr_id);
  pb::StartContainerResponse start_resp;
  s = d.runtime().StartContainer(Ctx(std::chrono::seconds(60)).get(), start, &start_resp);
  EXPECT_TRUE(s.ok()) << "StartContainer: " << s.error_message();
  return s.ok();
}

std::string ExecEcho(pb::RuntimeService::Stub& rt, const std::string& ctr_id, grpc::Status* status) {
  pb::ExecSyncRequest req;
  req.set_container_id(ctr_id);
  req.add_cmd("/bin/echo");
  req.add_cmd("exec-ok");
  req.set_timeout(10);
  pb::ExecSyncResponse resp;
  *status = rt.ExecSync(Ctx().get(), req, &resp);
  return resp.stdout();
}

pb::ContainerState StateOf(pb::RuntimeService::Stub& rt, const std::string& ctr_id, grpc::Status* status) {
  pb::ContainerStatusRequest req;
  req.set_container_id(ctr_id);
  pb::ContainerStatusResponse resp;
  *status = rt.ContainerStatus(Ctx().get(), req, &resp);
  return resp.status().state();
}

TEST(NodeRouting, VmAndRuncPodsShareOneSocketAndSurviveEitherRuntimeDying) {
  RequireIntegrationEnvironment(/*need_guest_images=*/true);
  ContainerdFixture ctrd;
  ctrd.Start();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());

  TestDaemon::Options opts;
  opts.extra_config = "[upstream]\nendpoint = \"" + ctrd.Endpoint() + "\"\nlist_timeout_seconds = 5\n";
  TestDaemon d(opts);
  d.Start();
  ImportGuestImages(d);

  // The VM Pod (kubevirt handler) and the runc Pod (empty handler).
  std::string vm_pod, vm_ctr;
  ASSERT_TRUE(StartPod(d, "vm", kKernelImage, &vm_pod, &vm_ctr));
  RuncPod runc;
  ASSERT_TRUE(StartRuncPod(d, ctrd.BusyboxImage(), &runc)) << ctrd.Log();

  // The runc Pod runs, logs and execs as under containerd alone.
  ASSERT_TRUE(WaitForFileContains(runc.log_path, "hello-from-runc", std::chrono::seconds(60)))
      << ReadFileOrEmpty(runc.log_path);
  EXPECT_EQ(CountCriLogLines(runc.log_path, "hello-from-runc"), 1);
  grpc::Status s;
  EXPECT_EQ(ExecEcho(d.runtime(), runc.ctr_id, &s), "exec-ok\n");
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(StateOf(d.runtime(), runc.ctr_id, &s), pb::CONTAINER_RUNNING);
  // containerd holds the runc Pod and only it.
  EXPECT_TRUE(Contains(SandboxIds(ctrd.runtime()), runc.pod_id));
  EXPECT_FALSE(Contains(SandboxIds(ctrd.runtime()), vm_pod));

  // The VM boots.
  const std::string vm_log = GetContainerStatus(d, vm_ctr).status().log_path();
  ASSERT_TRUE(WaitForFileContains(vm_log, "KUBEVIRT-CRI-GUEST-READY", std::chrono::seconds(300)))
      << ReadFileOrEmpty(vm_log) << "\ndaemon:\n" << d.DaemonLog();

  // Merged lists, with filters applied on both sides.
  EXPECT_TRUE(Contains(SandboxIds(d.runtime()), vm_pod));
  EXPECT_TRUE(Contains(SandboxIds(d.runtime()), runc.pod_id));
  EXPECT_TRUE(Contains(ContainerIds(d.runtime()), vm_ctr));
  EXPECT_TRUE(Contains(ContainerIds(d.runtime()), runc.ctr_id));
  pb::PodSandboxFilter by_label;
  (*by_label.mutable_label_selector())["app"] = "runc";
  EXPECT_EQ(SandboxIds(d.runtime(), by_label), std::vector<std::string>{runc.pod_id});
  pb::ContainerFilter by_pod;
  by_pod.set_pod_sandbox_id(vm_pod);
  EXPECT_EQ(ContainerIds(d.runtime(), by_pod), std::vector<std::string>{vm_ctr});
  pb::ContainerFilter by_id;
  by_id.set_id(runc.ctr_id);
  EXPECT_EQ(ContainerIds(d.runtime(), by_id), std::vector<std::string>{runc.ctr_id});
  {
    pb::ListContainerStatsResponse stats;
    ASSERT_TRUE(d.runtime().ListContainerStats(Ctx().get(), pb::ListContainerStatsRequest(), &stats).ok());
    bool runc_seen = false;
    for (const auto& st : stats.stats()) runc_seen |= st.attributes().id() == runc.ctr_id;
    EXPECT_TRUE(runc_seen);
  }
  // Images of both stores, each listed once.
  {
    pb::ListImagesResponse imgs;
    ASSERT_TRUE(d.images().ListImages(Ctx().get(), pb::ListImagesRequest(), &imgs).ok());
    int busybox = 0, guest = 0;
    std::vector<std::string> ids;
    for (const auto& img : imgs.images()) {
      ids.push_back(img.id());
      for (const auto& t : img.repo_tags()) {
        busybox += t == ctrd.BusyboxImage();
        guest += t == kKernelImage;
      }
    }
    EXPECT_EQ(busybox, 1);
    EXPECT_EQ(guest, 1);
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end()) << "duplicate image IDs";
    pb::ImageStatusRequest isr;
    isr.mutable_image()->set_image(ctrd.BusyboxImage());
    pb::ImageStatusResponse is;
    ASSERT_TRUE(d.images().ImageStatus(Ctx().get(), isr, &is).ok());
    EXPECT_TRUE(is.has_image());
    pb::ImageFsInfoResponse fsi;
    ASSERT_TRUE(d.images().ImageFsInfo(Ctx().get(), pb::ImageFsInfoRequest(), &fsi).ok());
    EXPECT_GE(fsi.image_filesystems_size(), 1);
  }
  pb::StatusResponse st;
  ASSERT_TRUE(d.runtime().Status(Ctx().get(), pb::StatusRequest(), &st).ok());
  ASSERT_NE(Condition(st, "UpstreamReady"), nullptr);
  EXPECT_TRUE(Condition(st, "UpstreamReady")->status());

  // containerd dies: the VM Pod keeps running and listed; upstream calls fail
  // with UNAVAILABLE naming the endpoint.
  ctrd.Kill9();
  EXPECT_TRUE(Contains(SandboxIds(d.runtime()), vm_pod));
  EXPECT_FALSE(Contains(SandboxIds(d.runtime()), runc.pod_id));
  EXPECT_EQ(StateOf(d.runtime(), vm_ctr, &s), pb::CONTAINER_RUNNING);
  EXPECT_TRUE(s.ok()) << s.error_message();
  StateOf(d.runtime(), runc.ctr_id, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr(ctrd.Endpoint()));
  st.Clear();
  ASSERT_TRUE(d.runtime().Status(Ctx().get(), pb::StatusRequest(), &st).ok());
  ASSERT_NE(Condition(st, "RuntimeReady"), nullptr);
  EXPECT_TRUE(Condition(st, "RuntimeReady")->status()) << Condition(st, "RuntimeReady")->message();
  ASSERT_NE(Condition(st, "UpstreamReady"), nullptr);
  EXPECT_FALSE(Condition(st, "UpstreamReady")->status());
  EXPECT_EQ(Condition(st, "UpstreamReady")->reason(), "UpstreamUnavailable");
  EXPECT_THAT(Condition(st, "UpstreamReady")->message(), HasSubstr(ctrd.Endpoint()));

  // containerd comes back: the runc Pod is in our lists again, no restart of ours.
  ctrd.Start();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    back = Contains(SandboxIds(d.runtime()), runc.pod_id);
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(back) << "runc Pod not listed after containerd restart";
  EXPECT_TRUE(Contains(ContainerIds(d.runtime()), runc.ctr_id));
  EXPECT_EQ(StateOf(d.runtime(), runc.ctr_id, &s), pb::CONTAINER_RUNNING);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ExecEcho(d.runtime(), runc.ctr_id, &s), "exec-ok\n");

  // kubevirt-cri is killed: after its restart both Pods are there, each still
  // routed to its own runtime.
  d.Kill9();
  d.Start();
  EXPECT_TRUE(Contains(SandboxIds(d.runtime()), vm_pod));
  EXPECT_TRUE(Contains(SandboxIds(d.runtime()), runc.pod_id));
  EXPECT_EQ(StateOf(d.runtime(), vm_ctr, &s), pb::CONTAINER_RUNNING);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(StateOf(d.runtime(), runc.ctr_id, &s), pb::CONTAINER_RUNNING);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ExecEcho(d.runtime(), runc.ctr_id, &s), "exec-ok\n");

  // Each is stopped and removed through us.
  pb::StopContainerRequest stop;
  stop.set_container_id(runc.ctr_id);
  stop.set_timeout(2);
  pb::StopContainerResponse stop_resp;
  s = d.runtime().StopContainer(Ctx(std::chrono::seconds(60)).get(), stop, &stop_resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(StateOf(d.runtime(), runc.ctr_id, &s), pb::CONTAINER_EXITED);
  pb::StopPodSandboxRequest stop_pod;
  stop_pod.set_pod_sandbox_id(runc.pod_id);
  pb::StopPodSandboxResponse stop_pod_resp;
  s = d.runtime().StopPodSandbox(Ctx(std::chrono::seconds(60)).get(), stop_pod, &stop_pod_resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  pb::RemovePodSandboxRequest rm_pod;
  rm_pod.set_pod_sandbox_id(runc.pod_id);
  pb::RemovePodSandboxResponse rm_pod_resp;
  s = d.runtime().RemovePodSandbox(Ctx(std::chrono::seconds(60)).get(), rm_pod, &rm_pod_resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  RemovePod(d, vm_pod);

  EXPECT_TRUE(SandboxIds(d.runtime()).empty());
  EXPECT_TRUE(ContainerIds(d.runtime()).empty());
  EXPECT_TRUE(SandboxIds(ctrd.runtime()).empty());
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
