// A VM Pod's whole lifecycle through the router while the upstream containerd is down (its socket does not
// exist), as on a node where a new user left the default [upstream] in place: nothing may answer UNAVAILABLE.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> SandboxIds(pb::RuntimeService::Stub& rt, const pb::PodSandboxFilter& filter) {
  pb::ListPodSandboxRequest req;
  *req.mutable_filter() = filter;
  pb::ListPodSandboxResponse resp;
  grpc::Status s = rt.ListPodSandbox(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << "ListPodSandbox: " << s.error_message();
  std::vector<std::string> ids;
  for (const auto& sb : resp.items()) ids.push_back(sb.id());
  return ids;
}

std::vector<std::string> ContainerIds(pb::RuntimeService::Stub& rt, const pb::ContainerFilter& filter) {
  pb::ListContainersRequest req;
  *req.mutable_filter() = filter;
  pb::ListContainersResponse resp;
  grpc::Status s = rt.ListContainers(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << "ListContainers: " << s.error_message();
  std::vector<std::string> ids;
  for (const auto& c : resp.containers()) ids.push_back(c.id());
  return ids;
}

grpc::Status PodStatus(pb::RuntimeService::Stub& rt, const std::string& id, pb::PodSandboxStatusResponse* resp) {
  pb::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(id);
  return rt.PodSandboxStatus(Ctx().get(), req, resp);
}

grpc::Status StopPod(pb::RuntimeService::Stub& rt, const std::string& id) {
  pb::StopPodSandboxRequest req;
  req.set_pod_sandbox_id(id);
  pb::StopPodSandboxResponse resp;
  return rt.StopPodSandbox(Ctx(std::chrono::seconds(120)).get(), req, &resp);
}

grpc::Status RemovePodSandbox(pb::RuntimeService::Stub& rt, const std::string& id) {
  pb::RemovePodSandboxRequest req;
  req.set_pod_sandbox_id(id);
  pb::RemovePodSandboxResponse resp;
  return rt.RemovePodSandbox(Ctx(std::chrono::seconds(120)).get(), req, &resp);
}

TEST(UpstreamDown, VmPodPassesItsWholeLifecycleWithoutUnavailable) {
  RequireIntegrationEnvironment(/*need_guest_images=*/true);
  TestDaemon::Options opts;
  TempDir nowhere;
  const std::string endpoint = "unix://" + (nowhere.path() / "containerd.sock").string();
  opts.extra_config = "[upstream]\nendpoint = \"" + endpoint + "\"\nlist_timeout_seconds = 5\n";
  TestDaemon d(opts);
  d.Start();
  ImportGuestImages(d);
  pb::RuntimeService::Stub& rt = d.runtime();

  // The daemon does route: Status says the upstream is down, naming it.
  pb::StatusResponse st;
  ASSERT_TRUE(rt.Status(Ctx().get(), pb::StatusRequest(), &st).ok());
  bool upstream_down_reported = false;
  for (const auto& c : st.status().conditions()) {
    if (c.type() != "UpstreamReady") continue;
    upstream_down_reported = !c.status();
    EXPECT_THAT(c.message(), HasSubstr(endpoint));
  }
  EXPECT_TRUE(upstream_down_reported) << st.DebugString();

  // Run.
  pb::PodSandboxConfig config = SandboxConfig("vm-down", d.log_dir());
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = config;
  run.set_runtime_handler("kubevirt");
  pb::RunPodSandboxResponse run_resp;
  grpc::Status s = rt.RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &run_resp);
  ASSERT_TRUE(s.ok()) << "RunPodSandbox: " << s.error_message() << "\ndaemon:\n" << d.DaemonLog();
  const std::string pod = run_resp.pod_sandbox_id();

  // Status and every kind of filtered list.
  pb::PodSandboxStatusResponse pod_st;
  s = PodStatus(rt, pod, &pod_st);
  ASSERT_TRUE(s.ok()) << "PodSandboxStatus: " << s.error_message();
  EXPECT_EQ(pod_st.status().state(), pb::SANDBOX_READY);
  pb::PodSandboxFilter by_id;
  by_id.set_id(pod);
  EXPECT_THAT(SandboxIds(rt, by_id), ElementsAre(pod));
  pb::PodSandboxFilter by_label;
  (*by_label.mutable_label_selector())["app"] = "vm-down";
  EXPECT_THAT(SandboxIds(rt, by_label), ElementsAre(pod));
  pb::PodSandboxFilter by_state;
  by_state.mutable_state()->set_state(pb::SANDBOX_READY);
  EXPECT_THAT(SandboxIds(rt, by_state), ElementsAre(pod));
  pb::ContainerFilter by_pod;
  by_pod.set_pod_sandbox_id(pod);
  EXPECT_THAT(ContainerIds(rt, by_pod), ElementsAre());

  // Create and start the VM container.
  pb::CreateContainerRequest create;
  create.set_pod_sandbox_id(pod);
  *create.mutable_config() = VmContainerConfig("vm", kKernelImage);
  *create.mutable_sandbox_config() = config;
  pb::CreateContainerResponse create_resp;
  s = rt.CreateContainer(Ctx(std::chrono::seconds(60)).get(), create, &create_resp);
  ASSERT_TRUE(s.ok()) << "CreateContainer: " << s.error_message();
  const std::string ctr = create_resp.container_id();
  pb::StartContainerRequest start;
  start.set_container_id(ctr);
  pb::StartContainerResponse start_resp;
  s = rt.StartContainer(Ctx(std::chrono::seconds(120)).get(), start, &start_resp);
  ASSERT_TRUE(s.ok()) << "StartContainer: " << s.error_message() << "\ndaemon:\n" << d.DaemonLog();
  EXPECT_THAT(ContainerIds(rt, by_pod), ElementsAre(ctr));
  pb::ContainerFilter ctr_by_id;
  ctr_by_id.set_id(ctr);
  EXPECT_THAT(ContainerIds(rt, ctr_by_id), ElementsAre(ctr));
  pb::ContainerFilter running;
  running.mutable_state()->set_state(pb::CONTAINER_RUNNING);
  EXPECT_THAT(ContainerIds(rt, running), ElementsAre(ctr));
  const std::string vm_log = GetContainerStatus(d, ctr).status().log_path();
  ASSERT_TRUE(WaitForFileContains(vm_log, "KUBEVIRT-CRI-GUEST-READY", std::chrono::seconds(300)))
      << ReadFileOrEmpty(vm_log) << "\ndaemon:\n" << d.DaemonLog();

  // Stop, as kubelet does: the container, then the sandbox.
  pb::StopContainerRequest stop;
  stop.set_container_id(ctr);
  stop.set_timeout(10);
  pb::StopContainerResponse stop_resp;
  s = rt.StopContainer(Ctx(std::chrono::seconds(120)).get(), stop, &stop_resp);
  EXPECT_TRUE(s.ok()) << "StopContainer: " << s.error_message();
  s = StopPod(rt, pod);
  EXPECT_TRUE(s.ok()) << "StopPodSandbox: " << s.error_message();
  pb::PodSandboxFilter not_ready;
  not_ready.mutable_state()->set_state(pb::SANDBOX_NOTREADY);
  EXPECT_THAT(SandboxIds(rt, not_ready), ElementsAre(pod));

  // Remove, then kubelet's follow-up calls: remove again, stop again, status,
  // lists by ID. All answered by us, as CRI says for unknown IDs.
  s = RemovePodSandbox(rt, pod);
  EXPECT_TRUE(s.ok()) << "RemovePodSandbox: " << s.error_message();
  s = RemovePodSandbox(rt, pod);
  EXPECT_TRUE(s.ok()) << "RemovePodSandbox again: " << s.error_message();
  s = StopPod(rt, pod);
  EXPECT_TRUE(s.ok()) << "StopPodSandbox after remove: " << s.error_message();
  pod_st.Clear();
  s = PodStatus(rt, pod, &pod_st);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_THAT(SandboxIds(rt, by_id), ElementsAre());
  EXPECT_THAT(SandboxIds(rt, by_label), ElementsAre());
  EXPECT_THAT(ContainerIds(rt, by_pod), ElementsAre());
  EXPECT_THAT(ContainerIds(rt, ctr_by_id), ElementsAre());
  pb::ContainerStatusRequest cs_req;
  cs_req.set_container_id(ctr);
  pb::ContainerStatusResponse cs;
  s = rt.ContainerStatus(Ctx().get(), cs_req, &cs);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  pb::RemoveContainerRequest rm_ctr;
  rm_ctr.set_container_id(ctr);
  pb::RemoveContainerResponse rm_ctr_resp;
  s = rt.RemoveContainer(Ctx().get(), rm_ctr, &rm_ctr_resp);
  EXPECT_TRUE(s.ok()) << "RemoveContainer after remove: " << s.error_message();

  // An ID neither side ever had is the upstream's, which is down: that
  // UNAVAILABLE is the truth and names the endpoint.
  pb::PodSandboxFilter unknown;
  unknown.set_id(std::string(64, '0'));
  pb::ListPodSandboxRequest unknown_req;
  *unknown_req.mutable_filter() = unknown;
  pb::ListPodSandboxResponse unknown_resp;
  s = rt.ListPodSandbox(Ctx().get(), unknown_req, &unknown_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr(endpoint));

  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
