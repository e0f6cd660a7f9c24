// GetContainerEvents against the real daemon and a QEMU guest: CREATED, STARTED, STOPPED (the guest powers itself
// off) and DELETED reach a subscriber in order, each within a second of the change.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <optional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "test/client/host_util.h"
#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

using ::testing::ElementsAre;

// Reads a GetContainerEvents stream on its own thread, noting when each
// event arrived.
class EventRecorder {
 public:
  explicit EventRecorder(TestDaemon& d) {
    stream_ = d.runtime().GetContainerEvents(&ctx_, pb::GetEventsRequest());
    // The daemon sends the headers once the subscription exists.
    stream_->WaitForInitialMetadata();
    thread_ = std::thread([this] {
      pb::ContainerEventResponse ev;
      while (stream_->Read(&ev)) {
        absl::MutexLock l(&mu_);
        seen_.push_back({ev, absl::Now()});
      }
    });
  }
  ~EventRecorder() {
    ctx_.TryCancel();
    thread_.join();
    stream_->Finish().IgnoreError();
  }
  struct Seen {
    pb::ContainerEventResponse ev;
    absl::Time at;
  };
  // The first event of `type` about `id`, waiting up to `timeout`.
  std::optional<Seen> WaitFor(pb::ContainerEventType type, const std::string& id, absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    auto found = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> const Seen* {
      for (const Seen& s : seen_) {
        if (s.ev.container_event_type() == type && s.ev.container_id() == id) return &s;
      }
      return nullptr;
    };
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return found() != nullptr; };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    const Seen* s = found();
    if (s == nullptr) return std::nullopt;
    return *s;
  }
  std::vector<std::string> TypesFor(const std::string& id) {
    absl::MutexLock l(&mu_);
    std::vector<std::string> out;
    for (const Seen& s : seen_) {
      if (s.ev.container_id() == id) out.push_back(pb::ContainerEventType_Name(s.ev.container_event_type()));
    }
    return out;
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<pb::ContainerEventResponse>> stream_;
  absl::Mutex mu_;
  std::vector<Seen> seen_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

class ContainerEventsTest : public ::testing::Test {
 protected:
  void SetUp() override { RequireIntegrationEnvironment(/*need_guest_images=*/true); }
};

TEST_F(ContainerEventsTest, ASubscriberSeesCreatedStartedStoppedDeletedEachWithinASecond) {
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  EventRecorder events(d);

  pb::PodSandboxConfig config = SandboxConfig("events", d.log_dir());
  // The guest powers itself off once booted.
  (*config.mutable_annotations())["kubevirt-cri.io/kernel-cmdline"] = "console=ttyS0 panic=-1 quiet kvcri.exit=1";
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = config;
  run.set_runtime_handler("kubevirt");
  pb::RunPodSandboxResponse run_resp;
  grpc::Status s = d.runtime().RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &run_resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const std::string pod = run_resp.pod_sandbox_id();
  auto pod_started = events.WaitFor(pb::CONTAINER_STARTED_EVENT, pod, absl::Seconds(1));
  ASSERT_TRUE(pod_started.has_value()) << "no STARTED for the sandbox";
  EXPECT_EQ(pod_started->ev.pod_sandbox_status().state(), pb::SANDBOX_READY);

  pb::CreateContainerRequest create;
  create.set_pod_sandbox_id(pod);
  *create.mutable_config() = VmContainerConfig("vm", kKernelImage);
  *create.mutable_sandbox_config() = config;
  pb::CreateContainerResponse create_resp;
  s = d.runtime().CreateContainer(Ctx(std::chrono::seconds(120)).get(), create, &create_resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const absl::Time created = absl::Now();
  const std::string ctr = create_resp.container_id();
  auto ev_created = events.WaitFor(pb::CONTAINER_CREATED_EVENT, ctr, absl::Seconds(1));
  ASSERT_TRUE(ev_created.has_value()) << "no CREATED within 1 s of CreateContainer";
  ASSERT_EQ(ev_created->ev.containers_statuses_size(), 1);
  EXPECT_EQ(ev_created->ev.containers_statuses(0).state(), pb::CONTAINER_CREATED);
  EXPECT_LE(ev_created->at - created, absl::Seconds(1));

  pb::StartContainerRequest start;
  start.set_container_id(ctr);
  pb::StartContainerResponse start_resp;
  s = d.runtime().StartContainer(Ctx(std::chrono::seconds(120)).get(), start, &start_resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const absl::Time started = absl::Now();
  auto ev_started = events.WaitFor(pb::CONTAINER_STARTED_EVENT, ctr, absl::Seconds(1));
  ASSERT_TRUE(ev_started.has_value()) << "no STARTED within 1 s of StartContainer";
  EXPECT_EQ(ev_started->ev.containers_statuses(0).state(), pb::CONTAINER_RUNNING);
  EXPECT_LE(ev_started->at - started, absl::Seconds(1));

  // The guest boots (TCG: seconds) and powers off: from QEMU's exit to the event.
  const pid_t qemu = QemuPidOf("kvcri-" + ctr);
  ASSERT_GT(qemu, 0);
  absl::Time gone = absl::InfiniteFuture();
  for (absl::Time deadline = absl::Now() + absl::Seconds(240); absl::Now() < deadline;) {
    if (::kill(qemu, 0) != 0) {
      gone = absl::Now();
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_NE(gone, absl::InfiniteFuture()) << "the guest never powered off; daemon:\n" << d.DaemonLog();
  auto ev_stopped = events.WaitFor(pb::CONTAINER_STOPPED_EVENT, ctr, absl::Seconds(1));
  ASSERT_TRUE(ev_stopped.has_value()) << "no STOPPED within 1 s of QEMU's exit; daemon:\n" << d.DaemonLog();
  std::cerr << "STOPPED arrived " << absl::FormatDuration(ev_stopped->at - gone) << " after QEMU exited\n";
  EXPECT_LE(ev_stopped->at - gone, absl::Seconds(1));
  ASSERT_EQ(ev_stopped->ev.containers_statuses_size(), 1);
  EXPECT_EQ(ev_stopped->ev.containers_statuses(0).state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(ev_stopped->ev.containers_statuses(0).reason(), "Completed");

  pb::RemoveContainerRequest rm;
  rm.set_container_id(ctr);
  pb::RemoveContainerResponse rm_resp;
  ASSERT_TRUE(d.runtime().RemoveContainer(Ctx().get(), rm, &rm_resp).ok());
  const absl::Time removed = absl::Now();
  auto ev_deleted = events.WaitFor(pb::CONTAINER_DELETED_EVENT, ctr, absl::Seconds(1));
  ASSERT_TRUE(ev_deleted.has_value()) << "no DELETED within 1 s of RemoveContainer";
  EXPECT_LE(ev_deleted->at - removed, absl::Seconds(1));
  EXPECT_EQ(ev_deleted->ev.pod_sandbox_status().id(), pod);
  EXPECT_EQ(ev_deleted->ev.containers_statuses_size(), 0);

  EXPECT_THAT(events.TypesFor(ctr), ElementsAre("CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT",
                                                "CONTAINER_STOPPED_EVENT", "CONTAINER_DELETED_EVENT"));
  RemovePod(d, pod);
  EXPECT_TRUE(events.WaitFor(pb::CONTAINER_DELETED_EVENT, pod, absl::Seconds(1)).has_value());
  EXPECT_THAT(events.TypesFor(pod), ElementsAre("CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT",
                                                "CONTAINER_STOPPED_EVENT", "CONTAINER_DELETED_EVENT"));
  ExpectNoLeftovers(d);
}

TEST_F(ContainerEventsTest, AnOpenStreamEndsAtOnceWhenTheDaemonShutsDown) {
  TestDaemon d;
  d.Start();
  grpc::ClientContext ctx;
  auto stream = d.runtime().GetContainerEvents(&ctx, pb::GetEventsRequest());
  stream->WaitForInitialMetadata();
  absl::Time ended;
  grpc::Status end;
  std::thread reader([&] {
    pb::ContainerEventResponse ev;
    while (stream->Read(&ev)) {
    }
    end = stream->Finish();
    ended = absl::Now();
  });
  const absl::Time t0 = absl::Now();
  const int status = d.Terminate();
  reader.join();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << "\n" << d.DaemonLog();
  // Ended by the daemon first thing, not by gRPC's 2 s grace running out.
  EXPECT_EQ(end.error_code(), grpc::StatusCode::UNAVAILABLE) << end.error_message();
  EXPECT_THAT(end.error_message(), ::testing::HasSubstr("shutting down"));
  EXPECT_LT(ended - t0, absl::Seconds(1)) << absl::FormatDuration(ended - t0);
}

}  // namespace
}  // namespace kvcri::testing
