// The router in front of our runtime and an upstream one: which side gets each
// call, merged answers, and what a client sees while the upstream is down.
// Both sides are fakes here (an in-process gRPC server on a unix socket plays
// containerd); node_routing_test runs the real thing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "config/base/clock.h"
#include "config/config.h"
#include "cri/filters.h"
#include "cri/router_image_service.h"
#include "cri/router_runtime_service.h"
#include "cri/tombstones.h"
#include "cri/upstream_client.h"
#include "sandbox/file_sandbox_store.h"

namespace kvcri::cri {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

const std::string kOurSandbox(64, 'a');
const std::string kOurContainer(64, 'e');

// One side: answers with IDs that say which side it is and logs every call.
// The local one (with a store) answers from the store as our RuntimeService
// does, also for IDs it does not know (Stop/Remove OK, Status NOT_FOUND, List
// empty); the upstream one holds one Pod, "up-pod" with container "up-ctr".
class FakeRuntime : public pb::RuntimeService::Service {
 public:
  explicit FakeRuntime(std::string side) : side_(std::move(side)) {}
  std::vector<std::string> calls() {
    absl::MutexLock l(&mu_);
    return calls_;
  }
  bool network_ready = true;
  // Set: the stats and metrics lists fail with it.
  grpc::Status stats_error;
  sandbox::SandboxStore* store = nullptr;
  // Upstream only: more Pod and container IDs it holds besides up-pod/up-ctr.
  std::vector<std::string> extra_ids;

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
  grpc::Status RemovePodSandbox(grpc::ServerContext*, const pb::RemovePodSandboxRequest* q,
                                pb::RemovePodSandboxResponse*) override {
    Log("RemovePodSandbox " + q->pod_sandbox_id().substr(0, 8));
    if (store == nullptr) return grpc::Status::OK;
    absl::StatusOr<std::string> id = store->ResolveSandboxId(q->pod_sandbox_id());
    if (absl::IsNotFound(id.status())) return grpc::Status::OK;
    if (!id.ok()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(id.status().message()));
    absl::Status s = store->RemoveSandbox(*id);
    return s.ok() ? grpc::Status::OK : grpc::Status(grpc::StatusCode::INTERNAL, std::string(s.message()));
  }
  grpc::Status PodSandboxStatus(grpc::ServerContext*, const pb::PodSandboxStatusRequest* q,
                                pb::PodSandboxStatusResponse* r) override {
    Log("PodSandboxStatus " + q->pod_sandbox_id().substr(0, 8));
    std::vector<std::string> ids;
    for (const Pod& p : Pods()) ids.push_back(p.id);
    absl::StatusOr<std::string> id = ResolveLikeContainerd(ids, q->pod_sandbox_id());
    if (!id.ok()) return ToStatus(id.status());
    r->mutable_status()->set_id(*id);
    return grpc::Status::OK;
  }
  grpc::Status ListPodSandbox(grpc::ServerContext*, const pb::ListPodSandboxRequest* q,
                              pb::ListPodSandboxResponse* r) override {
    Log("ListPodSandbox");
    const pb::PodSandboxFilter& f = q->filter();
    for (const Pod& p : Pods()) {
      if (!MatchesIdFilter(p.id, f.id()) || !MatchesSelector(p.labels, f.label_selector())) continue;
      if (f.has_state() && f.state().state() != pb::SANDBOX_READY) continue;
      pb::PodSandbox* sb = r->add_items();
      sb->set_id(p.id);
      sb->set_state(pb::SANDBOX_READY);
    }
    return grpc::Status::OK;
  }
  grpc::Status StopContainer(grpc::ServerContext*, const pb::StopContainerRequest* q,
                             pb::StopContainerResponse*) override {
    Log("StopContainer " + q->container_id().substr(0, 8));
    return grpc::Status::OK;
  }
  grpc::Status RemoveContainer(grpc::ServerContext*, const pb::RemoveContainerRequest* q,
                               pb::RemoveContainerResponse*) override {
    Log("RemoveContainer " + q->container_id().substr(0, 8));
    if (store == nullptr) return grpc::Status::OK;
    absl::StatusOr<std::string> id = store->ResolveContainerId(q->container_id());
    if (absl::IsNotFound(id.status())) return grpc::Status::OK;
    if (!id.ok()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(id.status().message()));
    absl::Status s = store->RemoveContainer(*id);
    return s.ok() ? grpc::Status::OK : grpc::Status(grpc::StatusCode::INTERNAL, std::string(s.message()));
  }
  grpc::Status ContainerStatus(grpc::ServerContext*, const pb::ContainerStatusRequest* q,
                               pb::ContainerStatusResponse* r) override {
    Log("ContainerStatus");
    std::vector<std::string> ids;
    for (const Ctr& c : Containers()) ids.push_back(c.id);
    absl::StatusOr<std::string> id = ResolveLikeContainerd(ids, q->container_id());
    if (!id.ok()) return ToStatus(id.status());
    r->mutable_status()->set_id(*id);
    return grpc::Status::OK;
  }
  grpc::Status ListContainers(grpc::ServerContext*, const pb::ListContainersRequest* q,
                              pb::ListContainersResponse* r) override {
    Log("ListContainers");
    const pb::ContainerFilter& f = q->filter();
    for (const Ctr& c : Containers()) {
      if (!MatchesIdFilter(c.id, f.id()) || !MatchesIdFilter(c.sandbox_id, f.pod_sandbox_id()) ||
          !MatchesSelector(c.labels, f.label_selector())) {
        continue;
      }
      if (f.has_state() && f.state().state() != pb::CONTAINER_RUNNING) continue;
      pb::Container* out = r->add_containers();
      out->set_id(c.id);
      out->set_pod_sandbox_id(c.sandbox_id);
      out->set_state(pb::CONTAINER_RUNNING);
    }
    return grpc::Status::OK;
  }
  grpc::Status ListContainerStats(grpc::ServerContext*, const pb::ListContainerStatsRequest* q,
                                  pb::ListContainerStatsResponse* r) override {
    Log("ListContainerStats");
    if (!stats_error.ok()) return stats_error;
    const pb::ContainerStatsFilter& f = q->filter();
    for (const Ctr& c : Containers()) {
      if (!MatchesIdFilter(c.id, f.id()) || !MatchesIdFilter(c.sandbox_id, f.pod_sandbox_id()) ||
          !MatchesSelector(c.labels, f.label_selector())) {
        continue;
      }
      r->add_stats()->mutable_attributes()->set_id(c.id);
    }
    return grpc::Status::OK;
  }
  grpc::Status ListPodSandboxStats(grpc::ServerContext*, const pb::ListPodSandboxStatsRequest* q,
                                   pb::ListPodSandboxStatsResponse* r) override {
    Log("ListPodSandboxStats");
    if (!stats_error.ok()) return stats_error;
    const pb::PodSandboxStatsFilter& f = q->filter();
    for (const Pod& p : Pods()) {
      if (!MatchesIdFilter(p.id, f.id()) || !MatchesSelector(p.labels, f.label_selector())) continue;
      r->add_stats()->mutable_attributes()->set_id(p.id);
    }
    return grpc::Status::OK;
  }
  // Both sides describe container_cpu_usage_seconds_total; each adds one of its own.
  grpc::Status ListMetricDescriptors(grpc::ServerContext*, const pb::ListMetricDescriptorsRequest*,
                                     pb::ListMetricDescriptorsResponse* r) override {
    Log("ListMetricDescriptors");
    if (!stats_error.ok()) return stats_error;
    r->add_descriptors()->set_name("container_cpu_usage_seconds_total");
    r->mutable_descriptors(0)->set_help(side_);
    r->add_descriptors()->set_name(side_ + "_only");
    return grpc::Status::OK;
  }
  // Streaming calls answer a URL naming the side, as each runtime's own
  // streaming server would.
  grpc::Status ExecSync(grpc::ServerContext*, const pb::ExecSyncRequest* q, pb::ExecSyncResponse* r) override {
    Log("ExecSync " + q->container_id().substr(0, 8));
    r->set_stdout(side_ + ":" + q->cmd(0));
    r->set_exit_code(7);
    return grpc::Status::OK;
  }
  grpc::Status Exec(grpc::ServerContext*, const pb::ExecRequest* q, pb::ExecResponse* r) override {
    Log("Exec " + q->container_id().substr(0, 8));
    r->set_url("http://" + side_ + ":10010/exec/tok-" + q->container_id().substr(0, 8));
    return grpc::Status::OK;
  }
  grpc::Status Attach(grpc::ServerContext*, const pb::AttachRequest* q, pb::AttachResponse* r) override {
    Log("Attach " + q->container_id().substr(0, 8));
    r->set_url("http://" + side_ + ":10010/attach/tok-" + q->container_id().substr(0, 8));
    return grpc::Status::OK;
  }
  grpc::Status PortForward(grpc::ServerContext*, const pb::PortForwardRequest* q,
                           pb::PortForwardResponse* r) override {
    Log("PortForward " + q->pod_sandbox_id().substr(0, 8));
    r->set_url("http://" + side_ + ":10010/portforward/tok-" + q->pod_sandbox_id().substr(0, 8));
    return grpc::Status::OK;
  }
  // Unset: UNIMPLEMENTED, as containerd 1.6 answers.
  std::optional<pb::CgroupDriver> cgroup_driver;
  grpc::Status RuntimeConfig(grpc::ServerContext*, const pb::RuntimeConfigRequest*,
                             pb::RuntimeConfigResponse* r) override {
    Log("RuntimeConfig");
    if (!cgroup_driver) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "unknown method RuntimeConfig");
    r->mutable_linux()->set_cgroup_driver(*cgroup_driver);
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
  struct Pod {
    std::string id;
    std::map<std::string, std::string> labels;
  };
  struct Ctr {
    std::string id;
    std::string sandbox_id;
    std::map<std::string, std::string> labels;
  };
  // containerd's truncindex: an exact ID or a unique prefix; a prefix of
  // several IDs is an error that is not NOT_FOUND (containerd answers UNKNOWN,
  // "multiple IDs found with provided prefix").
  static absl::StatusOr<std::string> ResolveLikeContainerd(const std::vector<std::string>& ids,
                                                           const std::string& prefix) {
    std::vector<std::string> hits;
    for (const std::string& id : ids) {
      if (id == prefix) return id;
      if (!prefix.empty() && id.rfind(prefix, 0) == 0) hits.push_back(id);
    }
    if (hits.empty()) return absl::NotFoundError("not found");
    if (hits.size() > 1) return absl::UnknownError("multiple IDs found with provided prefix: " + prefix);
    return hits[0];
  }
  static grpc::Status ToStatus(const absl::Status& s) {
    return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
  }
  std::vector<Pod> Pods() const {
    if (store == nullptr) {
      std::vector<Pod> pods = {{"up-pod", {{"app", side_}}}};
      for (const std::string& id : extra_ids) pods.push_back({id, {{"app", side_}}});
      return pods;
    }
    std::vector<Pod> pods;
    for (const sandbox::SandboxRecord& r : store->ListSandboxes()) pods.push_back({r.id, r.labels});
    return pods;
  }
  std::vector<Ctr> Containers() const {
    if (store == nullptr) {
      std::vector<Ctr> ctrs = {{"up-ctr", "up-pod", {{"app", side_}}}};
      for (const std::string& id : extra_ids) ctrs.push_back({id, "up-pod", {{"app", side_}}});
      return ctrs;
    }
    std::vector<Ctr> ctrs;
    for (const sandbox::ContainerRecord& r : store->ListContainers()) ctrs.push_back({r.id, r.sandbox_id, r.labels});
    return ctrs;
  }
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
    r.labels = {{"app", "local"}};
    ASSERT_TRUE(store_->PutSandbox(r).ok());
    sandbox::ContainerRecord c;
    c.id = kOurContainer;
    c.sandbox_id = kOurSandbox;
    c.metadata = {"vm", 0};
    c.labels = {{"app", "local"}};
    c.phase = sandbox::Phase::kReady;
    ASSERT_TRUE(store_->PutContainer(c).ok());
    local_.store = store_.get();
    local_images_ = std::make_unique<FakeImages>(
        std::vector<std::pair<std::string, std::string>>{{"sha256:shared", "vm/shared"}, {"sha256:vm", "vm/disk"}},
        (dir_ / "ours").string());
    endpoint_ = "unix://" + (dir_ / "up.sock").string();
    StartUpstream();
    upstream_client_ = std::make_unique<UpstreamClient>(endpoint_, absl::Seconds(5));
    removed_ = std::make_unique<Tombstones>(&clock_, kTtl);
    SideResolver sides(&config_, store_.get(), removed_.get());
    runtime_ = std::make_unique<RouterRuntimeService>(&local_, sides, upstream_client_.get(), removed_.get());
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

  static constexpr absl::Duration kTtl = absl::Minutes(10);

  // The ID lists a client gets; a failed call fails the test and lists nothing.
  std::vector<std::string> SandboxIds(const pb::PodSandboxFilter& filter) {
    pb::ListPodSandboxRequest req;
    *req.mutable_filter() = filter;
    pb::ListPodSandboxResponse resp;
    grpc::Status s = runtime_->ListPodSandbox(&ctx_, &req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> ids;
    for (const auto& i : resp.items()) ids.push_back(i.id());
    return ids;
  }
  std::vector<std::string> ContainerIds(const pb::ContainerFilter& filter) {
    pb::ListContainersRequest req;
    *req.mutable_filter() = filter;
    pb::ListContainersResponse resp;
    grpc::Status s = runtime_->ListContainers(&ctx_, &req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> ids;
    for (const auto& c : resp.containers()) ids.push_back(c.id());
    return ids;
  }
  std::vector<std::string> SandboxStatsIds(const pb::PodSandboxStatsFilter& filter) {
    pb::ListPodSandboxStatsRequest req;
    *req.mutable_filter() = filter;
    pb::ListPodSandboxStatsResponse resp;
    grpc::Status s = runtime_->ListPodSandboxStats(&ctx_, &req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> ids;
    for (const auto& st : resp.stats()) ids.push_back(st.attributes().id());
    return ids;
  }
  std::vector<std::string> ContainerStatsIds(const pb::ContainerStatsFilter& filter) {
    pb::ListContainerStatsRequest req;
    *req.mutable_filter() = filter;
    pb::ListContainerStatsResponse resp;
    grpc::Status s = runtime_->ListContainerStats(&ctx_, &req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> ids;
    for (const auto& st : resp.stats()) ids.push_back(st.attributes().id());
    return ids;
  }
  grpc::StatusCode PodSandboxStatusCode(const std::string& id) {
    pb::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(id);
    pb::PodSandboxStatusResponse resp;
    return runtime_->PodSandboxStatus(&ctx_, &req, &resp).error_code();
  }
  grpc::StatusCode ContainerStatusCode(const std::string& id) {
    pb::ContainerStatusRequest req;
    req.set_container_id(id);
    pb::ContainerStatusResponse resp;
    return runtime_->ContainerStatus(&ctx_, &req, &resp).error_code();
  }
  grpc::Status RemovePodSandbox(const std::string& id) {
    pb::RemovePodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    pb::RemovePodSandboxResponse resp;
    return runtime_->RemovePodSandbox(&ctx_, &req, &resp);
  }
  grpc::Status RemoveContainer(const std::string& id) {
    pb::RemoveContainerRequest req;
    req.set_container_id(id);
    pb::RemoveContainerResponse resp;
    return runtime_->RemoveContainer(&ctx_, &req, &resp);
  }

  // kubelet's follow-up calls about a removed sandbox and its container get
  // the answers CRI gives for unknown IDs: Stop/Remove OK, Status NOT_FOUND,
  // lists filtered by the ID empty.
  void ExpectAnsweredAsRemoved(const std::string& pod, const std::string& ctr) {
    pb::StopPodSandboxRequest stop_pod;
    stop_pod.set_pod_sandbox_id(pod);
    pb::StopPodSandboxResponse stop_pod_resp;
    grpc::Status s = runtime_->StopPodSandbox(&ctx_, &stop_pod, &stop_pod_resp);
    EXPECT_TRUE(s.ok()) << "StopPodSandbox: " << s.error_message();
    s = RemovePodSandbox(pod);
    EXPECT_TRUE(s.ok()) << "RemovePodSandbox: " << s.error_message();
    EXPECT_EQ(PodSandboxStatusCode(pod), grpc::StatusCode::NOT_FOUND);
    pb::PodSandboxFilter by_id;
    by_id.set_id(pod);
    EXPECT_THAT(SandboxIds(by_id), ElementsAre());
    pb::PodSandboxStatsFilter stats_by_id;
    stats_by_id.set_id(pod);
    EXPECT_THAT(SandboxStatsIds(stats_by_id), ElementsAre());
    pb::ContainerFilter by_pod;
    by_pod.set_pod_sandbox_id(pod);
    EXPECT_THAT(ContainerIds(by_pod), ElementsAre());
    pb::ContainerStatsFilter stats_by_pod;
    stats_by_pod.set_pod_sandbox_id(pod);
    EXPECT_THAT(ContainerStatsIds(stats_by_pod), ElementsAre());
    ExpectContainerAnsweredAsRemoved(ctr);
  }
  void ExpectContainerAnsweredAsRemoved(const std::string& ctr) {
    pb::StopContainerRequest stop;
    stop.set_container_id(ctr);
    pb::StopContainerResponse stop_resp;
    grpc::Status s = runtime_->StopContainer(&ctx_, &stop, &stop_resp);
    EXPECT_TRUE(s.ok()) << "StopContainer: " << s.error_message();
    s = RemoveContainer(ctr);
    EXPECT_TRUE(s.ok()) << "RemoveContainer: " << s.error_message();
    EXPECT_EQ(ContainerStatusCode(ctr), grpc::StatusCode::NOT_FOUND);
    pb::ContainerFilter by_id;
    by_id.set_id(ctr);
    EXPECT_THAT(ContainerIds(by_id), ElementsAre());
    pb::ContainerStatsFilter stats_by_id;
    stats_by_id.set_id(ctr);
    EXPECT_THAT(ContainerStatsIds(stats_by_id), ElementsAre());
  }

  fs::path dir_;
  config::Config config_;
  base::ManualClock clock_;
  std::unique_ptr<Tombstones> removed_;
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

TEST_F(RouterTest, RuntimeConfigIsTheUpstreamsWhenItAnswersAndOursWhenItLacksTheRpcOrIsDown) {
  local_.cgroup_driver = pb::CGROUPFS;
  pb::RuntimeConfigRequest req;
  pb::RuntimeConfigResponse resp;
  grpc::Status s = runtime_->RuntimeConfig(&ctx_, &req, &resp);  // containerd 1.6: UNIMPLEMENTED
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.linux().cgroup_driver(), pb::CGROUPFS);
  upstream_.cgroup_driver = pb::SYSTEMD;
  resp.Clear();
  s = runtime_->RuntimeConfig(&ctx_, &req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.linux().cgroup_driver(), pb::SYSTEMD);
  StopUpstream();
  resp.Clear();
  s = runtime_->RuntimeConfig(&ctx_, &req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.linux().cgroup_driver(), pb::CGROUPFS);
}

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

// A prefix of one of our IDs that is also a prefix of an upstream one: the
// call reaches neither side, the caller is told the prefix is ambiguous.
TEST_F(RouterTest, ExecAttachPortForwardOfUpstreamPodsGoToContainerdAndItsUrlsComeBackUnchanged) {
  pb::ExecRequest exec;
  exec.set_container_id("up-ctr");
  exec.add_cmd("sh");
  pb::ExecResponse exec_resp;
  ASSERT_TRUE(runtime_->Exec(&ctx_, &exec, &exec_resp).ok());
  EXPECT_EQ(exec_resp.url(), "http://up:10010/exec/tok-up-ctr");
  pb::AttachRequest attach;
  attach.set_container_id("up-ctr");
  pb::AttachResponse attach_resp;
  ASSERT_TRUE(runtime_->Attach(&ctx_, &attach, &attach_resp).ok());
  EXPECT_EQ(attach_resp.url(), "http://up:10010/attach/tok-up-ctr");
  pb::PortForwardRequest pf;
  pf.set_pod_sandbox_id("up-pod");
  pb::PortForwardResponse pf_resp;
  ASSERT_TRUE(runtime_->PortForward(&ctx_, &pf, &pf_resp).ok());
  EXPECT_EQ(pf_resp.url(), "http://up:10010/portforward/tok-up-pod");
  pb::ExecSyncRequest sync;
  sync.set_container_id("up-ctr");
  sync.add_cmd("true");
  pb::ExecSyncResponse sync_resp;
  ASSERT_TRUE(runtime_->ExecSync(&ctx_, &sync, &sync_resp).ok());
  EXPECT_EQ(sync_resp.stdout(), "up:true");
  EXPECT_EQ(sync_resp.exit_code(), 7);
  EXPECT_THAT(upstream_.calls(),
              ElementsAre("Exec up-ctr", "Attach up-ctr", "PortForward up-pod", "ExecSync up-ctr"));
  EXPECT_THAT(local_.calls(), ElementsAre());
}

TEST_F(RouterTest, ExecAttachPortForwardOfVmPodsStayWithUs) {
  pb::ExecRequest exec;
  exec.set_container_id(kOurContainer);
  exec.add_cmd("sh");
  pb::ExecResponse exec_resp;
  ASSERT_TRUE(runtime_->Exec(&ctx_, &exec, &exec_resp).ok());
  EXPECT_EQ(exec_resp.url(), "http://local:10010/exec/tok-eeeeeeee");
  pb::AttachRequest attach;
  attach.set_container_id(kOurContainer);
  pb::AttachResponse attach_resp;
  ASSERT_TRUE(runtime_->Attach(&ctx_, &attach, &attach_resp).ok());
  pb::PortForwardRequest pf;
  pf.set_pod_sandbox_id(kOurSandbox);
  pb::PortForwardResponse pf_resp;
  ASSERT_TRUE(runtime_->PortForward(&ctx_, &pf, &pf_resp).ok());
  EXPECT_EQ(pf_resp.url(), "http://local:10010/portforward/tok-aaaaaaaa");
  pb::ExecSyncRequest sync;
  sync.set_container_id(kOurContainer);
  sync.add_cmd("true");
  pb::ExecSyncResponse sync_resp;
  ASSERT_TRUE(runtime_->ExecSync(&ctx_, &sync, &sync_resp).ok());
  EXPECT_EQ(sync_resp.stdout(), "local:true");
  EXPECT_THAT(local_.calls(), ElementsAre("Exec eeeeeeee", "Attach eeeeeeee", "PortForward aaaaaaaa",
                                          "ExecSync eeeeeeee"));
  EXPECT_THAT(upstream_.calls(), ElementsAre());
}

TEST_F(RouterTest, APrefixMatchingBothSidesIsAmbiguousAndActsOnNeither) {
  const std::string up_pod = std::string(12, 'a') + std::string(52, 'b');
  const std::string up_ctr = std::string(12, 'e') + std::string(52, 'f');
  upstream_.extra_ids = {up_pod, up_ctr};
  const std::string pod_prefix = kOurSandbox.substr(0, 12), ctr_prefix = kOurContainer.substr(0, 12);

  pb::StopPodSandboxRequest stop_pod;
  stop_pod.set_pod_sandbox_id(pod_prefix);
  pb::StopPodSandboxResponse stop_pod_resp;
  grpc::Status s = runtime_->StopPodSandbox(&ctx_, &stop_pod, &stop_pod_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("\"" + pod_prefix + "\" is ambiguous"));
  EXPECT_THAT(s.error_message(), HasSubstr(kOurSandbox));
  EXPECT_EQ(RemovePodSandbox(pod_prefix).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(PodSandboxStatusCode(pod_prefix), grpc::StatusCode::INVALID_ARGUMENT);

  pb::StopContainerRequest stop;
  stop.set_container_id(ctr_prefix);
  pb::StopContainerResponse stop_resp;
  s = runtime_->StopContainer(&ctx_, &stop, &stop_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("\"" + ctr_prefix + "\" is ambiguous"));
  EXPECT_EQ(RemoveContainer(ctr_prefix).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ContainerStatusCode(ctr_prefix), grpc::StatusCode::INVALID_ARGUMENT);

  // Neither side acted: ours got no call at all, the upstream only the
  // Status lookups that found its match; our records are untouched.
  EXPECT_THAT(local_.calls(), ElementsAre());
  for (const std::string& c : upstream_.calls()) {
    EXPECT_THAT(c,
                ::testing::AnyOf(::testing::StartsWith("PodSandboxStatus"), ::testing::StartsWith("ContainerStatus")));
  }
  EXPECT_TRUE(store_->GetSandbox(kOurSandbox).ok());
  EXPECT_TRUE(store_->GetContainer(kOurContainer).ok());
  EXPECT_EQ(removed_->size(), 0u);

  // One character more is unique again and ours.
  const std::string longer = kOurSandbox.substr(0, 13);
  stop_pod.set_pod_sandbox_id(longer);
  EXPECT_TRUE(runtime_->StopPodSandbox(&ctx_, &stop_pod, &stop_pod_resp).ok());
  EXPECT_THAT(local_.calls(), ElementsAre("StopPodSandbox " + longer.substr(0, 8)));
}

// While the upstream cannot be asked, a prefix of ours is still read from our
// side but never acted on: it may have meant one of the upstream's Pods.
TEST_F(RouterTest, APrefixOfOursIsNotActedOnWhileTheUpstreamCannotBeAsked) {
  StopUpstream();
  const std::string ctr_prefix = kOurContainer.substr(0, 12);
  EXPECT_EQ(ContainerStatusCode(ctr_prefix), grpc::StatusCode::OK);
  pb::StopContainerRequest stop;
  stop.set_container_id(ctr_prefix);
  pb::StopContainerResponse stop_resp;
  grpc::Status s = runtime_->StopContainer(&ctx_, &stop, &stop_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("give the full ID"));
  EXPECT_THAT(local_.calls(), ElementsAre("ContainerStatus"));
  // The full ID needs no upstream.
  stop.set_container_id(kOurContainer);
  EXPECT_TRUE(runtime_->StopContainer(&ctx_, &stop, &stop_resp).ok());
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

TEST_F(RouterTest, RemovedVmPodStaysOursSoFollowUpCallsNeverReachTheUpstream) {
  ASSERT_TRUE(RemovePodSandbox(kOurSandbox).ok());
  ASSERT_TRUE(absl::IsNotFound(store_->ResolveSandboxId(kOurSandbox).status()));
  EXPECT_TRUE(removed_->Contains(kOurSandbox));
  EXPECT_TRUE(removed_->Contains(kOurContainer));

  ExpectAnsweredAsRemoved(kOurSandbox, kOurContainer);
  EXPECT_THAT(upstream_.calls(), ElementsAre());
  // Our side got them all, so it was asked, not merely skipped.
  EXPECT_THAT(local_.calls(), ::testing::Contains("PodSandboxStatus aaaaaaaa"));
  EXPECT_THAT(local_.calls(), ::testing::Contains("RemoveContainer eeeeeeee"));
}

TEST_F(RouterTest, RemovedVmPodIsAnsweredWithoutUnavailableWhileTheUpstreamIsDown) {
  StopUpstream();
  ASSERT_TRUE(RemovePodSandbox(kOurSandbox).ok());
  ExpectAnsweredAsRemoved(kOurSandbox, kOurContainer);
  // And a second time, as kubelet retries.
  ExpectAnsweredAsRemoved(kOurSandbox, kOurContainer);
}

TEST_F(RouterTest, RemovedVmContainerStaysOursWhileItsSandboxLives) {
  StopUpstream();
  ASSERT_TRUE(RemoveContainer(kOurContainer).ok());
  EXPECT_TRUE(removed_->Contains(kOurContainer));
  EXPECT_FALSE(removed_->Contains(kOurSandbox));
  ExpectContainerAnsweredAsRemoved(kOurContainer);
  pb::ContainerFilter by_pod;
  by_pod.set_pod_sandbox_id(kOurSandbox);
  EXPECT_THAT(ContainerIds(by_pod), ElementsAre());
  EXPECT_EQ(PodSandboxStatusCode(kOurSandbox), grpc::StatusCode::OK);
}

TEST_F(RouterTest, UpstreamRemovalsLeaveNoTombstone) {
  ASSERT_TRUE(RemovePodSandbox("up-pod").ok());
  ASSERT_TRUE(RemoveContainer("up-ctr").ok());
  EXPECT_EQ(removed_->size(), 0u);
  EXPECT_THAT(upstream_.calls(), ElementsAre("RemovePodSandbox up-pod", "RemoveContainer up-ctr"));
}

TEST_F(RouterTest, RemovedIdsGoBackToTheUpstreamAfterTheTtl) {
  ASSERT_TRUE(RemovePodSandbox(kOurSandbox).ok());
  StopUpstream();
  clock_.Advance(kTtl - absl::Seconds(1));
  EXPECT_EQ(PodSandboxStatusCode(kOurSandbox), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ContainerStatusCode(kOurContainer), grpc::StatusCode::NOT_FOUND);
  clock_.Advance(absl::Seconds(1));
  // Neither ours nor tombstoned: the upstream's, and it is down.
  EXPECT_EQ(PodSandboxStatusCode(kOurSandbox), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ContainerStatusCode(kOurContainer), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(RouterTest, ATombstoneMatchesItsFullIdOnlyNotAPrefix) {
  ASSERT_TRUE(RemovePodSandbox(kOurSandbox).ok());
  pb::PodSandboxFilter by_prefix;
  by_prefix.set_id(kOurSandbox.substr(0, 12));
  EXPECT_THAT(SandboxIds(by_prefix), ElementsAre());
  EXPECT_THAT(upstream_.calls(), ElementsAre("ListPodSandbox"));
}

TEST_F(RouterTest, AnIdFilterUnknownToUsGoesUpstreamAndIsUnavailableWhileItIsDown) {
  pb::PodSandboxFilter by_id;
  by_id.set_id("up-pod");
  EXPECT_THAT(SandboxIds(by_id), ElementsAre("up-pod"));
  EXPECT_THAT(local_.calls(), ElementsAre());

  StopUpstream();
  pb::ListPodSandboxRequest req;
  *req.mutable_filter() = by_id;
  pb::ListPodSandboxResponse resp;
  grpc::Status s = runtime_->ListPodSandbox(&ctx_, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr(endpoint_));
  pb::ListContainersRequest creq;
  creq.mutable_filter()->set_pod_sandbox_id("up-pod");
  pb::ListContainersResponse cresp;
  EXPECT_EQ(runtime_->ListContainers(&ctx_, &creq, &cresp).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(RouterTest, AnIdFilterOfOursAsksOnlyUsForEveryList) {
  pb::PodSandboxFilter pod;
  pod.set_id(kOurSandbox);
  EXPECT_THAT(SandboxIds(pod), ElementsAre(kOurSandbox));
  pb::PodSandboxStatsFilter pod_stats;
  pod_stats.set_id(kOurSandbox);
  EXPECT_THAT(SandboxStatsIds(pod_stats), ElementsAre(kOurSandbox));
  pb::ContainerFilter by_pod;
  by_pod.set_pod_sandbox_id(kOurSandbox);
  EXPECT_THAT(ContainerIds(by_pod), ElementsAre(kOurContainer));
  pb::ContainerFilter by_ctr;
  by_ctr.set_id(kOurContainer);
  EXPECT_THAT(ContainerIds(by_ctr), ElementsAre(kOurContainer));
  pb::ContainerStatsFilter stats_by_pod;
  stats_by_pod.set_pod_sandbox_id(kOurSandbox);
  EXPECT_THAT(ContainerStatsIds(stats_by_pod), ElementsAre(kOurContainer));
  EXPECT_THAT(upstream_.calls(), ElementsAre());
}

TEST_F(RouterTest, LabelAndStateFilteredListsMergeBothSides) {
  pb::PodSandboxFilter ready;
  ready.mutable_state()->set_state(pb::SANDBOX_READY);
  EXPECT_THAT(SandboxIds(ready), ElementsAre(kOurSandbox, "up-pod"));
  pb::ContainerFilter up_label;
  (*up_label.mutable_label_selector())["app"] = "up";
  EXPECT_THAT(ContainerIds(up_label), ElementsAre("up-ctr"));
  pb::PodSandboxStatsFilter local_label;
  (*local_label.mutable_label_selector())["app"] = "local";
  EXPECT_THAT(SandboxStatsIds(local_label), ElementsAre(kOurSandbox));
  EXPECT_THAT(upstream_.calls(), ElementsAre("ListPodSandbox", "ListContainers", "ListPodSandboxStats"));
}

TEST_F(RouterTest, LabelAndStateFilteredListsFallBackToOurSideWhileTheUpstreamIsDown) {
  StopUpstream();
  pb::PodSandboxFilter pod_label;
  (*pod_label.mutable_label_selector())["app"] = "local";
  EXPECT_THAT(SandboxIds(pod_label), ElementsAre(kOurSandbox));
  pb::PodSandboxFilter pod_other_label;
  (*pod_other_label.mutable_label_selector())["app"] = "up";
  EXPECT_THAT(SandboxIds(pod_other_label), ElementsAre());
  pb::PodSandboxFilter ready;
  ready.mutable_state()->set_state(pb::SANDBOX_READY);
  EXPECT_THAT(SandboxIds(ready), ElementsAre(kOurSandbox));
  pb::PodSandboxFilter not_ready;
  not_ready.mutable_state()->set_state(pb::SANDBOX_NOTREADY);
  EXPECT_THAT(SandboxIds(not_ready), ElementsAre());

  pb::ContainerFilter ctr_label;
  (*ctr_label.mutable_label_selector())["app"] = "local";
  EXPECT_THAT(ContainerIds(ctr_label), ElementsAre(kOurContainer));
  pb::ContainerFilter running;
  running.mutable_state()->set_state(pb::CONTAINER_RUNNING);
  EXPECT_THAT(ContainerIds(running), ElementsAre(kOurContainer));
  pb::ContainerStatsFilter stats_label;
  (*stats_label.mutable_label_selector())["app"] = "local";
  EXPECT_THAT(ContainerStatsIds(stats_label), ElementsAre(kOurContainer));
  pb::PodSandboxStatsFilter pod_stats_label;
  (*pod_stats_label.mutable_label_selector())["app"] = "local";
  EXPECT_THAT(SandboxStatsIds(pod_stats_label), ElementsAre(kOurSandbox));
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
    if (i.id() == "sha256:shared") {
      EXPECT_THAT(i.repo_tags(), ElementsAre("vm/shared", "docker.io/shared"));
    }
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

TEST_F(RouterTest, PullWithoutHandlerOrPodConfigWhileTheUpstreamIsDownSaysHowToGetAVmImage) {
  StopUpstream();
  pb::PullImageRequest req;
  req.mutable_image()->set_image("example.com/vm-disk:1");
  pb::PullImageResponse resp;
  grpc::Status s = images_->PullImage(&ctx_, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr(endpoint_));
  EXPECT_THAT(s.error_message(), HasSubstr("kubevirt-cri images import"));
  EXPECT_THAT(s.error_message(), HasSubstr("--pod-config"));
  // A pull for a Pod the upstream runs is the upstream's business: no VM advice.
  req.mutable_sandbox_config()->mutable_metadata()->set_name("web");
  s = images_->PullImage(&ctx_, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), Not(HasSubstr("images import")));
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

namespace kvcri::cri {
namespace {

TEST_F(RouterTest, StatsListsMergeBothSidesAndAFailingSideLeavesTheOthersAnswer) {
  EXPECT_THAT(ContainerStatsIds({}), UnorderedElementsAre(kOurContainer, "up-ctr"));
  EXPECT_THAT(SandboxStatsIds({}), UnorderedElementsAre(kOurSandbox, "up-pod"));

  // Our side failing does not hide the upstream's Pods from kubelet.
  local_.stats_error = grpc::Status(grpc::StatusCode::INTERNAL, "cgroup tree unreadable");
  EXPECT_THAT(ContainerStatsIds({}), ElementsAre("up-ctr"));
  EXPECT_THAT(SandboxStatsIds({}), ElementsAre("up-pod"));
  local_.stats_error = grpc::Status::OK;

  // Nor the upstream's failing ours (here: down).
  StopUpstream();
  EXPECT_THAT(ContainerStatsIds({}), ElementsAre(kOurContainer));
  EXPECT_THAT(SandboxStatsIds({}), ElementsAre(kOurSandbox));
}

TEST_F(RouterTest, StatsListsFilteredByOurIdAskOnlyUs) {
  pb::ContainerStatsFilter by_id;
  by_id.set_id(kOurContainer.substr(0, 12));
  EXPECT_THAT(ContainerStatsIds(by_id), ElementsAre(kOurContainer));
  pb::ContainerStatsFilter by_pod;
  by_pod.set_pod_sandbox_id(kOurSandbox);
  EXPECT_THAT(ContainerStatsIds(by_pod), ElementsAre(kOurContainer));
  pb::PodSandboxStatsFilter pod_by_id;
  pod_by_id.set_id(kOurSandbox);
  EXPECT_THAT(SandboxStatsIds(pod_by_id), ElementsAre(kOurSandbox));
  // The prefix check asks the upstream's ContainerStatus once; no list goes there.
  for (const std::string& c : upstream_.calls()) EXPECT_THAT(c, Not(HasSubstr("Stats"))) << c;
}

TEST_F(RouterTest, MetricDescriptorsMergeWithEachNameOnceOursFirst) {
  pb::ListMetricDescriptorsRequest req;
  pb::ListMetricDescriptorsResponse resp;
  ASSERT_TRUE(runtime_->ListMetricDescriptors(&ctx_, &req, &resp).ok());
  std::vector<std::string> names;
  for (const auto& d : resp.descriptors()) names.push_back(d.name());
  EXPECT_THAT(names, UnorderedElementsAre("container_cpu_usage_seconds_total", "local_only", "up_only"));
  for (const auto& d : resp.descriptors()) {
    if (d.name() == "container_cpu_usage_seconds_total") {
      EXPECT_EQ(d.help(), "local");
    }
  }
  local_.stats_error = grpc::Status(grpc::StatusCode::INTERNAL, "broken");
  resp.Clear();
  ASSERT_TRUE(runtime_->ListMetricDescriptors(&ctx_, &req, &resp).ok());
  EXPECT_EQ(resp.descriptors_size(), 2);
}

}  // namespace
}  // namespace kvcri::cri
