// GetContainerEvents: the events of a Pod's life in order with the statuses of the moment, several subscribers,
// a subscriber that stops reading never stalling Publish or other RPCs, shutdown, and the router's merge.
#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "config/base/metrics.h"
#include "cri/container_events.h"
#include "cri/router_runtime_service.h"
#include "cri/tombstones.h"
#include "cri/upstream_client.h"
#include "test/fakes/cri_harness.h"

namespace kvcri::cri {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Next = ContainerEventHub::Subscription::Next;

constexpr absl::Duration kWait = absl::Seconds(5);

// "CREATED pod", "STARTED ctr", ...: the sequence a subscriber saw, with
// `pod`/`ctr` standing for the two IDs of the test.
std::string Describe(const pb::ContainerEventResponse& ev, const std::string& pod, const std::string& ctr) {
  std::string type = pb::ContainerEventType_Name(ev.container_event_type());
  type = type.substr(std::string("CONTAINER_").size());
  type = type.substr(0, type.size() - std::string("_EVENT").size());
  const std::string who = ev.container_id() == pod ? "pod" : ev.container_id() == ctr ? "ctr" : ev.container_id();
  return type + " " + who;
}

// Takes what the subscriber has, waiting up to kWait for each of `n` events.
std::vector<pb::ContainerEventResponse> Take(ContainerEventHub::Subscription& sub, size_t n) {
  std::vector<pb::ContainerEventResponse> out;
  while (out.size() < n) {
    pb::ContainerEventResponse ev;
    Next r = sub.Wait(kWait, &ev);
    if (r != Next::kEvent) {
      ADD_FAILURE() << "expected an event, got " << static_cast<int>(r) << " after " << out.size();
      break;
    }
    out.push_back(ev);
  }
  return out;
}

// A server on a unix socket in `dir` for `services`, and a client stub.
struct UnixServer {
  UnixServer(const fs::path& socket, std::vector<grpc::Service*> services) {
    endpoint = "unix://" + socket.string();
    grpc::ServerBuilder b;
    b.AddListeningPort(endpoint, grpc::InsecureServerCredentials());
    for (grpc::Service* s : services) b.RegisterService(s);
    server = b.BuildAndStart();
    channel = grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
    stub = pb::RuntimeService::NewStub(channel);
  }
  ~UnixServer() {
    if (server) server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }
  std::string endpoint;
  std::unique_ptr<grpc::Server> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::RuntimeService::Stub> stub;
};

class ContainerEventsTest : public CriHarness {
 protected:
  void SetUp() override {
    add_deps_ = [this](RuntimeDeps& deps) {
      hub_ = std::make_unique<ContainerEventHub>(deps.store, deps.clock, dropped_, hub_options_);
      event_hub_ = hub_.get();
      deps.events = hub_.get();
    };
    CriHarness::SetUp();
  }
  void TearDown() override {
    hub_->Close();
    CriHarness::TearDown();
  }
  pb::PodSandboxStatus PodStatus(const std::string& id) {
    pb::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(id);
    pb::PodSandboxStatusResponse resp;
    EXPECT_TRUE(service_->PodSandboxStatus(nullptr, &req, &resp).ok());
    return resp.status();
  }

  base::MetricsRegistry metrics_;
  base::MetricFamily* dropped_ = *metrics_.Counter("kvcri_container_events_dropped_total", "test");
  ContainerEventHubOptions hub_options_;
  std::unique_ptr<ContainerEventHub> hub_;
};

TEST_F(ContainerEventsTest, APodsLifeIsCreatedStartedStoppedDeletedInOrderWithTheStatusesOfEachMoment) {
  std::unique_ptr<ContainerEventHub::Subscription> sub = hub_->Subscribe("test");
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  ASSERT_TRUE(Start(ctr).ok());
  std::vector<pb::ContainerEventResponse> evs = Take(*sub, 4);
  ASSERT_EQ(evs.size(), 4u);
  // At STARTED, the event says exactly what PodSandboxStatus and
  // ContainerStatus answer (the same conversion).
  EXPECT_TRUE(MessageDifferencer::Equals(evs[3].pod_sandbox_status(), PodStatus(pod)))
      << evs[3].pod_sandbox_status().DebugString();
  ASSERT_EQ(evs[3].containers_statuses_size(), 1);
  EXPECT_TRUE(MessageDifferencer::Equals(evs[3].containers_statuses(0), Status(ctr)))
      << evs[3].containers_statuses(0).DebugString();

  // The guest powers off: the monitor settles it from the libvirt event.
  hv_.SetStatus("kvcri-" + ctr, {runtime::VmPhase::kShutoff, 3, "Completed"});
  for (const pb::ContainerEventResponse& ev : Take(*sub, 1)) evs.push_back(ev);
  ASSERT_TRUE(RemoveCtr(ctr).ok());
  ASSERT_TRUE(StopPod(pod).ok());
  ASSERT_TRUE(RemovePod(pod).ok());
  for (const pb::ContainerEventResponse& ev : Take(*sub, 3)) evs.push_back(ev);
  std::vector<std::string> seen;
  for (const pb::ContainerEventResponse& ev : evs) seen.push_back(Describe(ev, pod, ctr));
  EXPECT_THAT(seen, ElementsAre("CREATED pod", "STARTED pod", "CREATED ctr", "STARTED ctr", "STOPPED ctr",
                                "DELETED ctr", "STOPPED pod", "DELETED pod"));
  ASSERT_EQ(evs.size(), 8u);

  // Each event's statuses are the Pod's at that moment.
  EXPECT_EQ(evs[0].pod_sandbox_status().state(), pb::SANDBOX_READY);
  EXPECT_EQ(evs[0].pod_sandbox_status().metadata().uid(), "uid-web");
  EXPECT_EQ(evs[0].containers_statuses_size(), 0);
  ASSERT_EQ(evs[2].containers_statuses_size(), 1);
  EXPECT_EQ(evs[2].containers_statuses(0).state(), pb::CONTAINER_CREATED);
  EXPECT_EQ(evs[3].containers_statuses(0).state(), pb::CONTAINER_RUNNING);
  ASSERT_EQ(evs[4].containers_statuses_size(), 1);
  EXPECT_EQ(evs[4].containers_statuses(0).state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(evs[4].containers_statuses(0).exit_code(), 3);
  EXPECT_EQ(evs[4].containers_statuses(0).reason(), "Completed");
  // DELETED as containerd sends it: the sandbox still there, the container
  // gone from the list; the sandbox's own DELETED has no status left.
  EXPECT_EQ(evs[5].pod_sandbox_status().id(), pod);
  EXPECT_EQ(evs[5].containers_statuses_size(), 0);
  EXPECT_EQ(evs[6].pod_sandbox_status().state(), pb::SANDBOX_NOTREADY);
  EXPECT_FALSE(evs[7].has_pod_sandbox_status());
  // created_at: nanoseconds, strictly increasing in stream order.
  EXPECT_GE(evs[0].created_at(), absl::ToUnixNanos(absl::FromUnixSeconds(1700000000)));  // the fake clock's start
  for (size_t i = 1; i < evs.size(); ++i) EXPECT_GT(evs[i].created_at(), evs[i - 1].created_at()) << i;
}

TEST_F(ContainerEventsTest, AFailedStartIsStoppedAndRemovingTheSandboxDeletesItsContainerFirst) {
  std::unique_ptr<ContainerEventHub::Subscription> sub = hub_->Subscribe("test");
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  {
    absl::MutexLock l(&hv_.mu);
    hv_.create_error = absl::InternalError("qemu refused");
  }
  EXPECT_FALSE(Start(ctr).ok());
  ASSERT_TRUE(RemovePod(pod).ok());  // no StopPodSandbox: RemovePodSandbox does it all
  std::vector<std::string> seen;
  std::vector<pb::ContainerEventResponse> evs = Take(*sub, 6);
  for (const pb::ContainerEventResponse& ev : evs) seen.push_back(Describe(ev, pod, ctr));
  EXPECT_THAT(seen,
              ElementsAre("CREATED pod", "STARTED pod", "CREATED ctr", "STOPPED ctr", "DELETED ctr", "DELETED pod"));
  ASSERT_GE(evs.size(), 4u);
  ASSERT_EQ(evs[3].containers_statuses_size(), 1);
  EXPECT_EQ(evs[3].containers_statuses(0).state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(evs[3].containers_statuses(0).reason(), "StartError");
}

TEST_F(ContainerEventsTest, EverySubscriberSeesEveryEventInTheSameOrder) {
  std::unique_ptr<ContainerEventHub::Subscription> a = hub_->Subscribe("a");
  std::unique_ptr<ContainerEventHub::Subscription> b = hub_->Subscribe("b");
  EXPECT_EQ(hub_->subscribers(), 2u);
  std::string pod;
  std::string ctr = RunningPodVm("web", &pod);
  std::vector<pb::ContainerEventResponse> from_a = Take(*a, 4), from_b = Take(*b, 4);
  ASSERT_EQ(from_a.size(), from_b.size());
  for (size_t i = 0; i < from_a.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(from_a[i], from_b[i])) << i;
  }
  b.reset();
  EXPECT_EQ(hub_->subscribers(), 1u);
  ASSERT_TRUE(RemoveCtr(ctr).ok());
  EXPECT_EQ(Take(*a, 1).size(), 1u);
}

class SmallBufferTest : public ContainerEventsTest {
 protected:
  void SetUp() override {
    hub_options_.buffer = 8;
    ContainerEventsTest::SetUp();
  }
};

TEST_F(SmallBufferTest, ASubscriberThatNeverReadsIsCutOffWithoutSlowingPublishOrTheOthers) {
  std::unique_ptr<ContainerEventHub::Subscription> idle = hub_->Subscribe("idle");
  std::unique_ptr<ContainerEventHub::Subscription> reader = hub_->Subscribe("reader");
  std::string pod;
  ASSERT_TRUE(RunPod("web", &pod).ok());  // 2 events
  EXPECT_EQ(Take(*reader, 2).size(), 2u);
  int read = 2;
  absl::Duration took;
  for (int i = 0; i < 1998; ++i) {
    const absl::Time t0 = absl::Now();
    hub_->Publish(ContainerEventType::kStarted, pod, pod);
    took += absl::Now() - t0;
    pb::ContainerEventResponse ev;
    if (reader->Wait(kWait, &ev) == Next::kEvent) ++read;
  }
  EXPECT_EQ(read, 2000);
  EXPECT_LT(took, absl::Seconds(2)) << "2000 snapshots took " << absl::FormatDuration(took);
  pb::ContainerEventResponse ev;
  EXPECT_EQ(idle->Wait(absl::ZeroDuration(), &ev), Next::kOverflow);
  EXPECT_EQ(idle->dropped(), 2000u - 8u);
  EXPECT_EQ(hub_->dropped(), 2000u - 8u);
  EXPECT_THAT(metrics_.Expose(), HasSubstr("kvcri_container_events_dropped_total 1992"));
}

TEST_F(SmallBufferTest, AStreamThatIsNotReadDoesNotStallOtherRpcsAndEndsResourceExhausted) {
  UnixServer srv(dir_ / "cri.sock", {service_.get()});
  ASSERT_NE(srv.server, nullptr);
  grpc::ClientContext idle_ctx;
  std::unique_ptr<grpc::ClientReader<pb::ContainerEventResponse>> idle =
      srv.stub->GetContainerEvents(&idle_ctx, pb::GetEventsRequest());
  // The stream is open once the hub counts it.
  for (absl::Time d = absl::Now() + kWait; hub_->subscribers() == 0 && absl::Now() < d;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(hub_->subscribers(), 1u);
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  // Far more than the buffer and HTTP/2's window: the server's Write blocks.
  for (int i = 0; i < 3000; ++i) hub_->Publish(ContainerEventType::kStarted, pod, pod);
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());  // publishes too
  for (int i = 0; i < 20; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    pb::ListContainersResponse resp;
    grpc::Status s = srv.stub->ListContainers(&ctx, pb::ListContainersRequest(), &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.containers_size(), 1);
  }
  EXPECT_GT(hub_->dropped(), 0u);
  // Reading at last: what was buffered, then the end that makes kubelet relist.
  pb::ContainerEventResponse ev;
  int got = 0;
  while (idle->Read(&ev)) ++got;
  grpc::Status end = idle->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << end.error_message();
  EXPECT_THAT(end.error_message(), HasSubstr("relist"));
  EXPECT_LT(got, 3000);
}

TEST_F(ContainerEventsTest, StreamsSeeEventsOverGrpcAndEndUnavailableWhenTheHubClosesForShutdown) {
  UnixServer srv(dir_ / "cri.sock", {service_.get()});
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<pb::ContainerEventResponse>> stream =
      srv.stub->GetContainerEvents(&ctx, pb::GetEventsRequest());
  for (absl::Time d = absl::Now() + kWait; hub_->subscribers() == 0 && absl::Now() < d;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  std::string pod;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  pb::ContainerEventResponse ev;
  ASSERT_TRUE(stream->Read(&ev));
  EXPECT_EQ(ev.container_event_type(), pb::CONTAINER_CREATED_EVENT);
  EXPECT_EQ(ev.container_id(), pod);
  const absl::Time t0 = absl::Now();
  hub_->Close();
  while (stream->Read(&ev)) {
  }
  grpc::Status end = stream->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::UNAVAILABLE) << end.error_message();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(1));
  EXPECT_EQ(hub_->Subscribe("late"), nullptr);
}

TEST_F(ContainerEventsTest, WithoutAHubGetContainerEventsIsUnimplemented) {
  RuntimeService bare(RuntimeDeps{}, pods_.get());
  UnixServer srv(dir_ / "bare.sock", {&bare});
  grpc::ClientContext ctx;
  auto stream = srv.stub->GetContainerEvents(&ctx, pb::GetEventsRequest());
  pb::ContainerEventResponse ev;
  EXPECT_FALSE(stream->Read(&ev));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

// --- The router: our events and the upstream's on one stream. ---

// Plays containerd's GetContainerEvents: sends `ids` as STARTED events, then
// holds the stream open until the caller cancels (or answers `fail`).
class FakeUpstreamEvents : public pb::RuntimeService::Service {
 public:
  grpc::Status GetContainerEvents(grpc::ServerContext* ctx, const pb::GetEventsRequest*,
                                  grpc::ServerWriter<pb::ContainerEventResponse>* w) override {
    opened++;
    if (!fail.ok()) return fail;
    for (const std::string& id : ids) {
      pb::ContainerEventResponse ev;
      ev.set_container_id(id);
      ev.set_container_event_type(pb::CONTAINER_STARTED_EVENT);
      if (!w->Write(ev)) return grpc::Status::CANCELLED;
    }
    while (!ctx->IsCancelled()) absl::SleepFor(absl::Milliseconds(10));
    cancelled++;
    return grpc::Status::CANCELLED;
  }
  std::vector<std::string> ids = {"up-ctr-1", "up-ctr-2"};
  grpc::Status fail = grpc::Status::OK;
  std::atomic<int> opened{0}, cancelled{0};
};

class RouterEventsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/kvcri-events-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    store_ = std::make_unique<sandbox::FileSandboxStore>(dir_ / "root");
    ASSERT_TRUE(store_->Load().ok());
    sandbox::SandboxRecord r;
    r.id = std::string(64, 'a');
    r.metadata = {"vm", "default", "uid-vm", 0};
    r.state = sandbox::SandboxState::kReady;
    r.phase = sandbox::Phase::kReady;
    ASSERT_TRUE(store_->PutSandbox(r).ok());
    hub_ = std::make_unique<ContainerEventHub>(store_.get(), &clock_);
    removed_ = std::make_unique<Tombstones>(&clock_, absl::Minutes(10));
  }
  void TearDown() override {
    router_server_.reset();
    upstream_server_.reset();
    router_.reset();
    fs::remove_all(dir_);
  }
  void Start() {
    upstream_server_ = std::make_unique<UnixServer>(dir_ / "up.sock", std::vector<grpc::Service*>{&upstream_});
    client_ = std::make_unique<UpstreamClient>(upstream_server_->endpoint, absl::Seconds(5));
    router_ = std::make_unique<RouterRuntimeService>(&local_, SideResolver(&config_, store_.get(), removed_.get()),
                                                     client_.get(), removed_.get(), hub_.get());
    router_server_ = std::make_unique<UnixServer>(dir_ / "router.sock", std::vector<grpc::Service*>{router_.get()});
  }
  // Reads `n` container IDs from the stream.
  std::vector<std::string> ReadIds(grpc::ClientReader<pb::ContainerEventResponse>* s, size_t n) {
    std::vector<std::string> ids;
    pb::ContainerEventResponse ev;
    while (ids.size() < n && s->Read(&ev)) ids.push_back(ev.container_id());
    return ids;
  }
  void WaitForSubscriber() {
    for (absl::Time d = absl::Now() + kWait; hub_->subscribers() == 0 && absl::Now() < d;) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_EQ(hub_->subscribers(), 1u);
  }

  fs::path dir_;
  config::Config config_;
  base::ManualClock clock_;
  std::unique_ptr<sandbox::FileSandboxStore> store_;
  std::unique_ptr<ContainerEventHub> hub_;
  std::unique_ptr<Tombstones> removed_;
  pb::RuntimeService::Service local_;  // the router takes our events from the hub
  FakeUpstreamEvents upstream_;
  std::unique_ptr<UnixServer> upstream_server_;
  std::unique_ptr<UpstreamClient> client_;
  std::unique_ptr<RouterRuntimeService> router_;
  std::unique_ptr<UnixServer> router_server_;
};

TEST_F(RouterEventsTest, OneStreamCarriesOurEventsAndTheUpstreamsAndTheClientsCancelEndsBoth) {
  Start();
  grpc::ClientContext ctx;
  auto stream = router_server_->stub->GetContainerEvents(&ctx, pb::GetEventsRequest());
  std::vector<std::string> ids = ReadIds(stream.get(), 2);  // the upstream's first: ours come after a subscriber exists
  EXPECT_THAT(ids, ElementsAre("up-ctr-1", "up-ctr-2"));
  WaitForSubscriber();
  hub_->Publish(ContainerEventType::kStarted, std::string(64, 'a'), std::string(64, 'a'));
  pb::ContainerEventResponse ev;
  ASSERT_TRUE(stream->Read(&ev));
  EXPECT_EQ(ev.container_id(), std::string(64, 'a'));
  EXPECT_EQ(ev.pod_sandbox_status().metadata().uid(), "uid-vm");
  ctx.TryCancel();
  while (stream->Read(&ev)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // Our side unsubscribed, the upstream call was cancelled.
  for (absl::Time d = absl::Now() + kWait; (hub_->subscribers() != 0 || upstream_.cancelled == 0) && absl::Now() < d;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(hub_->subscribers(), 0u);
  EXPECT_EQ(upstream_.cancelled, 1);
}

TEST_F(RouterEventsTest, AnUpstreamWithoutGetContainerEventsLeavesOurEventsAlone) {
  upstream_.fail = grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "unknown method GetContainerEvents");
  Start();
  grpc::ClientContext ctx;
  auto stream = router_server_->stub->GetContainerEvents(&ctx, pb::GetEventsRequest());
  WaitForSubscriber();
  hub_->Publish(ContainerEventType::kCreated, "c1", std::string(64, 'a'));
  hub_->Publish(ContainerEventType::kStarted, "c1", std::string(64, 'a'));
  EXPECT_THAT(ReadIds(stream.get(), 2), ElementsAre("c1", "c1"));
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_EQ(upstream_.opened, 1) << "UNIMPLEMENTED is final: no resubscription";
  ctx.TryCancel();
}

TEST_F(RouterEventsTest, AnUpstreamThatGoesAwayDoesNotEndOurEventsAndIsSubscribedAgainWhenBack) {
  Start();
  grpc::ClientContext ctx;
  auto stream = router_server_->stub->GetContainerEvents(&ctx, pb::GetEventsRequest());
  EXPECT_THAT(ReadIds(stream.get(), 2), ElementsAre("up-ctr-1", "up-ctr-2"));
  WaitForSubscriber();
  // containerd stops.
  upstream_server_->server->Shutdown(std::chrono::system_clock::now());
  upstream_server_->server.reset();
  hub_->Publish(ContainerEventType::kStopped, "c1", std::string(64, 'a'));
  EXPECT_THAT(ReadIds(stream.get(), 1), ElementsAre("c1"));
  // containerd is back on the same socket: its events flow again.
  fs::remove(dir_ / "up.sock");
  upstream_.ids = {"up-ctr-3"};
  upstream_server_ = std::make_unique<UnixServer>(dir_ / "up.sock", std::vector<grpc::Service*>{&upstream_});
  EXPECT_THAT(ReadIds(stream.get(), 1), ElementsAre("up-ctr-3"));
  ctx.TryCancel();
}

}  // namespace
}  // namespace kvcri::cri
