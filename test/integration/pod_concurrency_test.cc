// Three VM Pods at once, listed with every CRI filter.
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

TEST(PodConcurrency, ThreePodsRunConcurrentlyAndListWithFilters) {
  RequireIntegrationEnvironment(true);
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  const std::vector<std::string> names = {"alpha", "beta", "gamma"};
  std::vector<std::string> pods(3), ctrs(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] { StartPod(d, names[i], i == 1 ? kDiskImage : kKernelImage, &pods[i], &ctrs[i]); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(ctrs[i].empty()) << names[i] << " did not start";
  for (int i = 0; i < 3; ++i) {
    std::string log = GetContainerStatus(d, ctrs[i]).status().log_path();
    EXPECT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-READY", std::chrono::seconds(240))) << names[i];
  }

  pb::ListPodSandboxRequest all;
  pb::ListPodSandboxResponse lp;
  ASSERT_TRUE(d.runtime().ListPodSandbox(Ctx().get(), all, &lp).ok());
  EXPECT_EQ(lp.items_size(), 3);

  pb::ListPodSandboxRequest by_label;
  (*by_label.mutable_filter()->mutable_label_selector())["app"] = "beta";
  ASSERT_TRUE(d.runtime().ListPodSandbox(Ctx().get(), by_label, &lp).ok());
  ASSERT_EQ(lp.items_size(), 1);
  EXPECT_EQ(lp.items(0).id(), pods[1]);
  EXPECT_EQ(lp.items(0).metadata().name(), "beta");

  pb::ListPodSandboxRequest by_id;
  by_id.mutable_filter()->set_id(pods[2].substr(0, 12));  // crictl sends prefixes
  lp.Clear();
  ASSERT_TRUE(d.runtime().ListPodSandbox(Ctx().get(), by_id, &lp).ok());
  ASSERT_EQ(lp.items_size(), 1);
  EXPECT_EQ(lp.items(0).id(), pods[2]);

  pb::ListPodSandboxRequest by_state;
  by_state.mutable_filter()->mutable_state()->set_state(pb::SANDBOX_NOTREADY);
  lp.Clear();
  ASSERT_TRUE(d.runtime().ListPodSandbox(Ctx().get(), by_state, &lp).ok());
  EXPECT_EQ(lp.items_size(), 0);

  pb::ListContainersRequest lc_all;
  pb::ListContainersResponse lc;
  ASSERT_TRUE(d.runtime().ListContainers(Ctx().get(), lc_all, &lc).ok());
  EXPECT_EQ(lc.containers_size(), 3);

  pb::ListContainersRequest lc_pod;
  lc_pod.mutable_filter()->set_pod_sandbox_id(pods[0]);
  lc.Clear();
  ASSERT_TRUE(d.runtime().ListContainers(Ctx().get(), lc_pod, &lc).ok());
  ASSERT_EQ(lc.containers_size(), 1);
  EXPECT_EQ(lc.containers(0).id(), ctrs[0]);
  EXPECT_EQ(lc.containers(0).pod_sandbox_id(), pods[0]);

  pb::ListContainersRequest lc_running;
  lc_running.mutable_filter()->mutable_state()->set_state(pb::CONTAINER_RUNNING);
  lc.Clear();
  ASSERT_TRUE(d.runtime().ListContainers(Ctx().get(), lc_running, &lc).ok());
  EXPECT_EQ(lc.containers_size(), 3);

  pb::ListContainersRequest lc_label;
  (*lc_label.mutable_filter()->mutable_label_selector())["container"] = "vm";
  (*lc_label.mutable_filter()->mutable_label_selector())["nope"] = "x";
  lc.Clear();
  ASSERT_TRUE(d.runtime().ListContainers(Ctx().get(), lc_label, &lc).ok());
  EXPECT_EQ(lc.containers_size(), 0);

  pb::ListContainersRequest lc_id;
  lc_id.mutable_filter()->set_id(ctrs[1]);
  lc.Clear();
  ASSERT_TRUE(d.runtime().ListContainers(Ctx().get(), lc_id, &lc).ok());
  ASSERT_EQ(lc.containers_size(), 1);
  EXPECT_EQ(lc.containers(0).image().image(), kDiskImage);

  // Stop one Pod: lists follow.
  RemovePod(d, pods[0]);
  lc.Clear();
  ASSERT_TRUE(d.runtime().ListContainers(Ctx().get(), lc_all, &lc).ok());
  EXPECT_EQ(lc.containers_size(), 2);
  RemovePod(d, pods[1]);
  RemovePod(d, pods[2]);
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
