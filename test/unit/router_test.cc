// The router in front of our runtime and an upstream one: which side gets each
// call, merged answers, and what a client sees while the upstream is down.
// Both sides are fakes here (an in-process gRPC server on a unix socket plays
// containerd); node_routing_test runs the real thing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "config/config.h"
#include "cri/router_image_service.h"
#include "cri/router_runtime_service.h"
#include "cri/upstream_client.h"
#include "sandbox/file_sandbox_store.h"

namespace kvcri::cri {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

const std::string kOurSandbox(64, 'a');

// One side: answers with IDs that say which side it is and logs every call.
class FakeRuntime : public pb::RuntimeService::Service {
 public:
  explicit FakeRuntime(std::string side) : side_(std::move(side)) {}
  std::vector<std::string> calls() {
    absl::MutexLock l(&mu_);
    return calls_;
  }
  bool network_ready = true;

  grpc::Status RunPodSandbox(grpc::ServerContext*, const pb::RunPodSandboxRequest*,
                             pb::RunPodSandboxResponse* r) override {
    Log("RunPodSandbox");
    r->set_pod_sandbox_id(side_ + "-pod");
    return grpc::Status::OK;
  }
  grpc::Status StopPodSandbox(grpc::ServerContext*, const pb::StopPodSandboxRequest* q,
                              pb::StopPodSandboxResponse*) override {
    Log("StopPodSandbox " + q->pod_sandbox_id().substr(0, 8));
    return grpc::Status::OK;
  }
  grpc::Status ListPodSandbox(grpc::ServerContext*, const pb::ListPodSandboxRequest* q,
                              pb::ListPodSandboxResponse* r) override {
    Log("ListPodSandbox");
    const std::string id = side_ == "local" ? kOurSandbox : "up-pod";
    if (q->filter().label_selector().count("app") && q->filter().label_selector().at("app") != side_) {
      return grpc::Status::OK;
    }
    r->add_items()->set_id(id);
    return grpc::Status::OK;
  }
  grpc::Status ContainerStatus(grpc::ServerContext*, const pb::ContainerStatusRequest* q,
                               pb::ContainerStatusResponse* r) override {
    Log("ContainerStatus");
    r->mutable_status()->set_id(q->container_id());
    return grpc::Status::OK;
  }
  grpc::Status Status(grpc::ServerContext*, const pb::StatusRequest*, pb::StatusResponse* r) override {
    auto* c = r->mutable_status()->add_conditions();
    c->set_type("RuntimeReady");
    c->set_status(true);
    c = r->mutable_status()->add_conditions();
    c->set_type("NetworkReady");
    c->set_status(network_ready);
    if (!network_ready) c->set_reason("NetworkPluginNotReady");
    return grpc::Status::OK;
  }

 private:
  void Log(const std::string& c) {
    absl::MutexLock l(&mu_);
    calls_.push_back(c);
  }
  std::string side_;
  absl::Mutex mu_;
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mu_);
};

class FakeImages : public pb::ImageService::Service {
 public:
  FakeImages(std::vector<std::pair<std::string, std::string>> images, std::string fs_path)
      : images_(std::move(images)), fs_path_(std::move(fs_path)) {}
  std::vector<std::string> removed() {
    absl::MutexLock l(&mu_);
    return removed_;
  }
  grpc::Status ListImages(grpc::ServerContext*, const pb::ListImagesRequest*, pb::ListImagesResponse* r) override {
    for (const auto& [id, tag] : images_) {
      pb::Image* i = r->add_images();
      i->set_id(id);
      i->add_repo_tags(tag);
      i->set_size(100);
    }
    return grpc::Status::OK;
  }
  grpc::Status ImageStatus(grpc::ServerContext*, const pb::ImageStatusRequest* q,
                           pb::ImageStatusResponse* r) override {
    for (const auto& [id, tag] : images_) {
      if (q->image().image() == id || q->image().image() == tag) r->mutable_image()->set_id(id);
    }
    return grpc::Status::OK;
  }
  grpc::Status PullImage(grpc::ServerContext*, const pb::PullImageRequest* q, pb::PullImageResponse* r) override {
    r->set_image_ref(fs_path_ + ":" + q->image().image());
    return grpc::Status::OK;
  }
  grpc::Status RemoveImage(grpc::ServerContext*, const pb::RemoveImageRequest* q, pb::RemoveImageResponse*) override {
    absl::MutexLock l(&mu_);
    removed_.push_back(q->image().image());
    return grpc::Status::OK;
  }
  grpc::Status ImageFsInfo(grpc::ServerContext*, const pb::ImageFsInfoRequest*, pb::ImageFsInfoResponse* r) override {
    auto* fs = r->add_image_filesystems();
    fs->mutable_fs_id()->set_mountpoint(fs_path_);
    fs->mutable_used_bytes()->set_value(1000);
    fs->mutable_inodes_used()->set_value(10);
    return grpc::Status::OK;
  }

 private:
  std::vector<std::pair<std::string, std::string>> images_;
  std::string fs_path_;
  absl::Mutex mu_;
  std::vector<std::string> removed_ ABSL_GUARDED_BY(mu_);
};

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/kvcri-router-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "ours");
    fs::create_directories(dir_ / "theirs");
    store_ = std::make_unique<sandbox::FileSandboxStore>(dir_ / "root");
    ASSERT_TRUE(store_->Load().ok());
    sandbox::SandboxRecord r;
    r.id = kOurSandbox;
    r.metadata = {"vm", "default", "uid-vm", 0};
    r.runtime_handler = "kubevirt";
    r.phase = sandbox::Phase::kReady;
    ASSERT_TRUE(store_->PutSandbox(r).ok());
    local_images_ = std::make_unique<FakeImages>(
        std::vector<std::pair<std::string, std::string>>{{"sha256:shared", "vm/shared"}, {"sha256:vm", "vm/disk"}},
        (dir_ / "ours").string());
    endpoint_ = "unix://" + (dir_ / "up.sock").string();
    StartUpstream();
    upstream_client_ = std::make_unique<UpstreamClient>(endpoint_, absl::Seconds(5));
    SideResolver sides(&config_, store_.get());
    runtime_ = std::make_unique<RouterRuntimeService>(&local_, sides, upstream_client_.get());
    images_ = std::make_unique<RouterImageService>(local_images_.get(), sides, upstream_client_.get());
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    fs::remove_all(dir_);
  }
  void StartUpstream() {
    grpc::ServerBuilder b;
    b.AddListeningPort(endpoint_, grpc::InsecureServerCredentials());
    b.RegisterService(&upstream_);
    b.RegisterService(&upstream_images_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void StopUpstream() {
    server_->Shutdown();
    server_.reset();
    fs::remove(dir_ / "up.sock");
  }

  fs::path dir_;
  config::Config config_;
  std::string endpoint_;
  FakeRuntime local_{"local"};
  FakeRuntime upstream_{"up"};
  FakeImages upstream_images_{{{"sha256:shared", "docker.io/shared"}, {"sha256:busybox", "docker.io/busybox"}},
                              "/tmp"};
  std::unique_ptr<FakeImages> local_images_;
  std::unique_ptr<sandbox::FileSandboxStore> store_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<UpstreamClient> upstream_client_;
  std::unique_ptr<RouterRuntimeService> runtime_;
  std::unique_ptr<RouterImageService> images_;
  grpc::ServerContext ctx_;
};

TEST_F(RouterTest, RunPodSandboxGoesToVmForVmHandlersAndUpstreamForEveryOtherIncludingEmpty) {
  for (const char* handler : {"kubevirt", "", "runc"}) {
    pb::RunPodSandboxRequest req;
    req.set_runtime_handler(handler);
    pb::RunPodSandboxResponse resp;
    ASSERT_TRUE(runtime_->RunPodSandbox(&ctx_, &req, &resp).ok());
    EXPECT_EQ(resp.pod_sandbox_id(), std::string(handler) == "kubevirt" ? "local-pod" : "up-pod") << handler;
  }
}

TEST_F(RouterTest, CallsAboutAnIdGoToTheSideWhoseStoreHasIt) {
  pb::StopPodSandboxRequest ours, theirs;
  ours.set_pod_sandbox_id(kOurSandbox);
  theirs.set_pod_sandbox_id(std::string(64, 'b'));
  pb::StopPodSandboxResponse resp;
  ASSERT_TRUE(runtime_->StopPodSandbox(&ctx_, &ours, &resp).ok());
  ASSERT_TRUE(runtime_->StopPodSandbox(&ctx_, &theirs, &resp).ok());
  EXPECT_THAT(local_.calls(), ElementsAre("StopPodSandbox aaaaaaaa"));
  EXPECT_THAT(upstream_.calls(), ElementsAre("StopPodSandbox bbbbbbbb"));
}

TEST_F(RouterTest, ListPodSandboxMergesBothSidesWithFiltersAndAnIdFilterAsksOnlyItsOwner) {
  pb::ListPodSandboxRequest all;
  pb::ListPodSandboxResponse resp;
  ASSERT_TRUE(runtime_->ListPodSandbox(&ctx_, &all, &resp).ok());
  std::vector<std::string> ids;
  for (const auto& i : resp.items()) ids.push_back(i.id());
  EXPECT_THAT(ids, UnorderedElementsAre(kOurSandbox, "up-pod"));

  pb::ListPodSandboxRequest by_label;
  (*by_label.mutable_filter()->mutable_label_selector())["app"] = "up";
  resp.Clear();
  ASSERT_TRUE(runtime_->ListPodSandbox(&ctx_, &by_label, &resp).ok());
  ASSERT_EQ(resp.items_size(), 1);
  EXPECT_EQ(resp.items(0).id(), "up-pod");

  pb::ListPodSandboxRequest by_id;
  by_id.mutable_filter()->set_id(kOurSandbox);
  resp.Clear();
  const size_t upstream_calls = upstream_.calls().size();
  ASSERT_TRUE(runtime_->ListPodSandbox(&ctx_, &by_id, &resp).ok());
  EXPECT_EQ(upstream_.calls().size(), upstream_calls);
}

TEST_F(RouterTest, DownUpstreamLeavesVmSideServedAndFailsUpstreamCallsUnavailableNamingEndpoint) {
  StopUpstream();
  pb::ListPodSandboxRequest all;
  pb::ListPodSandboxResponse resp;
  ASSERT_TRUE(runtime_->ListPodSandbox(&ctx_, &all, &resp).ok());
  ASSERT_EQ(resp.items_size(), 1);
  EXPECT_EQ(resp.items(0).id(), kOurSandbox);

  pb::ContainerStatusRequest csr;
  csr.set_container_id(std::string(64, 'c'));
  pb::ContainerStatusResponse cs;
  grpc::Status s = runtime_->ContainerStatus(&ctx_, &csr, &cs);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr(endpoint_));

  pb::StatusRequest sreq;
  pb::StatusResponse st;
  ASSERT_TRUE(runtime_->Status(&ctx_, &sreq, &st).ok());
  std::map<std::string, pb::RuntimeCondition> by_type;
  for (const auto& c : st.status().conditions()) by_type[c.type()] = c;
  EXPECT_TRUE(by_type["RuntimeReady"].status());
  EXPECT_TRUE(by_type["NetworkReady"].status());
  EXPECT_FALSE(by_type["UpstreamReady"].status());
  EXPECT_EQ(by_type["UpstreamReady"].reason(), "UpstreamUnavailable");
  EXPECT_THAT(by_type["UpstreamReady"].message(), HasSubstr(endpoint_));

  // Back without a new client: the channel reconnects by itself.
  StartUpstream();
  bool back = false;
  for (int i = 0; i < 50 && !back; ++i) {
    resp.Clear();
    back = runtime_->ListPodSandbox(&ctx_, &all, &resp).ok() && resp.items_size() == 2;
    if (!back) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(back);
}

TEST_F(RouterTest, StatusIsNotReadyWhenTheUpstreamSaysSoAndNamesIt) {
  upstream_.network_ready = false;
  pb::StatusRequest sreq;
  pb::StatusResponse st;
  ASSERT_TRUE(runtime_->Status(&ctx_, &sreq, &st).ok());
  std::map<std::string, pb::RuntimeCondition> by_type;
  for (const auto& c : st.status().conditions()) by_type[c.type()] = c;
  EXPECT_FALSE(by_type["NetworkReady"].status());
  EXPECT_EQ(by_type["NetworkReady"].reason(), "UpstreamNetworkPluginNotReady");
  EXPECT_THAT(by_type["NetworkReady"].message(), HasSubstr(endpoint_));
  EXPECT_TRUE(by_type["UpstreamReady"].status());
}

TEST_F(RouterTest, ListImagesIsTheUnionWithSharedIdsOnce) {
  pb::ListImagesRequest req;
  pb::ListImagesResponse resp;
  ASSERT_TRUE(images_->ListImages(&ctx_, &req, &resp).ok());
  std::vector<std::string> ids;
  for (const auto& i : resp.images()) ids.push_back(i.id());
  EXPECT_THAT(ids, UnorderedElementsAre("sha256:shared", "sha256:vm", "sha256:busybox"));
  for (const auto& i : resp.images()) {
    if (i.id() == "sha256:shared") EXPECT_THAT(i.repo_tags(), ElementsAre("vm/shared", "docker.io/shared"));
  }
}

TEST_F(RouterTest, RemoveImageRemovesFromEveryStoreHoldingIt) {
  pb::RemoveImageRequest req;
  req.mutable_image()->set_image("sha256:shared");
  pb::RemoveImageResponse resp;
  ASSERT_TRUE(images_->RemoveImage(&ctx_, &req, &resp).ok());
  EXPECT_THAT(local_images_->removed(), ElementsAre("sha256:shared"));
  EXPECT_THAT(upstream_images_.removed(), ElementsAre("sha256:shared"));
}

TEST_F(RouterTest, PullImageGoesToTheSideRunningThePod) {
  pb::PullImageRequest req;
  req.mutable_image()->set_image("img");
  req.mutable_sandbox_config()->mutable_metadata()->set_name("vm");
  req.mutable_sandbox_config()->mutable_metadata()->set_namespace_("default");
  req.mutable_sandbox_config()->mutable_metadata()->set_uid("uid-vm");
  pb::PullImageResponse resp;
  ASSERT_TRUE(images_->PullImage(&ctx_, &req, &resp).ok());
  EXPECT_EQ(resp.image_ref(), (dir_ / "ours").string() + ":img");
  req.mutable_sandbox_config()->mutable_metadata()->set_uid("uid-other");
  ASSERT_TRUE(images_->PullImage(&ctx_, &req, &resp).ok());
  EXPECT_EQ(resp.image_ref(), "/tmp:img");
  req.mutable_image()->set_runtime_handler("kubevirt");
  ASSERT_TRUE(images_->PullImage(&ctx_, &req, &resp).ok());
  EXPECT_EQ(resp.image_ref(), (dir_ / "ours").string() + ":img");
}

TEST_F(RouterTest, ImageFsInfoAddsOurUsageToTheUpstreamsFilesystemOnTheSameDevice) {
  pb::ImageFsInfoRequest req;
  pb::ImageFsInfoResponse resp;
  ASSERT_TRUE(images_->ImageFsInfo(&ctx_, &req, &resp).ok());
  // Both fakes report a directory under /tmp: one device.
  ASSERT_EQ(resp.image_filesystems_size(), 1);
  EXPECT_EQ(resp.image_filesystems(0).fs_id().mountpoint(), "/tmp");
  EXPECT_EQ(resp.image_filesystems(0).used_bytes().value(), 2000u);
  EXPECT_EQ(resp.image_filesystems(0).inodes_used().value(), 20u);
}

}  // namespace
}  // namespace kvcri::cri
