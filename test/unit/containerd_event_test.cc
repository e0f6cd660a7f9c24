// Unit tests of the shim's EventPublisher against a ttrpc server playing containerd's Events service.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "config/base/unique_fd.h"
#include "shim/containerd/event_publisher.h"
#include "shim/containerd/names.h"
#include "shim/containerd/proto/events.pb.h"
#include "shim/ttrpc/server.h"
#include "shim/ttrpc/unix_socket.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::shim::containerd {
namespace {

// containerd's side: records every envelope; refuses one without a
// timestamp as containerd does, and topics the test marks as bad.
class FakeContainerdEvents {
 public:
  void Register(ttrpc::Server* server) {
    server->Register(std::string(kEventsService), std::string(kEventsForwardMethod),
                     [this](const ttrpc::CallContext&, std::string_view payload) -> absl::StatusOr<std::string> {
                       pb::ForwardRequest req;
                       if (!req.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
                         return absl::InvalidArgumentError("bad ForwardRequest");
                       }
                       if (!req.envelope().has_timestamp()) {
                         return absl::InvalidArgumentError("timestamp must be set on forwarded event");
                       }
                       if (req.envelope().topic() == "/bad") return absl::InvalidArgumentError("bad topic");
                       absl::MutexLock lock(&mu_);
                       envelopes_.push_back(req.envelope());
                       return std::string();
                     });
  }
  std::vector<pb::Envelope> envelopes() const {
    absl::MutexLock lock(&mu_);
    return envelopes_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<pb::Envelope> envelopes_ ABSL_GUARDED_BY(mu_);
};

class ContainerdEventTest : public testing::ScratchDirTest {
 protected:
  void StartContainerd() {
    server_ = std::make_unique<ttrpc::Server>();
    events_.Register(server_.get());
    absl::StatusOr<base::UniqueFd> listener = ttrpc::ListenUnix(Socket(), 0600);
    ASSERT_TRUE(listener.ok()) << listener.status();
    serve_ = std::thread([this, fd = std::move(*listener)]() mutable { server_->Serve(std::move(fd)).IgnoreError(); });
  }
  void StopContainerd() {
    if (!server_) return;
    server_->Shutdown();
    serve_.join();
    server_.reset();
    std::filesystem::remove(Socket());
  }
  void TearDown() override {
    StopContainerd();
    ScratchDirTest::TearDown();
  }
  std::string Socket() const { return (dir_ / "containerd.sock.ttrpc").string(); }

  static std::string Exit(const std::string& id, uint32_t status) {
    pb::TaskExit e;
    e.set_container_id(id);
    e.set_id(id);
    e.set_exit_status(status);
    return e.SerializeAsString();
  }

  FakeContainerdEvents events_;
  std::unique_ptr<ttrpc::Server> server_;
  std::thread serve_;
};

TEST_F(ContainerdEventTest, EventsReachContainerdInOrderStampedWithNamespaceAndBareTypeUrl) {
  StartContainerd();
  EventPublisher publisher(Socket(), "k8s.io");
  absl::Time before = absl::Now();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(publisher.Publish(kTopicTaskExit, kTypeUrlTaskExit, Exit("c" + std::to_string(i), i)).ok());
  }
  ASSERT_TRUE(publisher.Flush(absl::Seconds(10)));
  std::vector<pb::Envelope> got = events_.envelopes();
  ASSERT_EQ(got.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(got[i].namespace_(), "k8s.io");
    EXPECT_EQ(got[i].topic(), "/tasks/exit");
    EXPECT_EQ(got[i].event().type_url(), "containerd.events.TaskExit");
    pb::TaskExit e;
    ASSERT_TRUE(e.ParseFromString(got[i].event().value()));
    EXPECT_EQ(e.container_id(), "c" + std::to_string(i));
    EXPECT_EQ(e.exit_status(), static_cast<uint32_t>(i));
    absl::Time stamped = absl::FromUnixSeconds(got[i].timestamp().seconds()) + absl::Nanoseconds(got[i].timestamp().nanos());
    EXPECT_GE(stamped, before - absl::Seconds(1));
    EXPECT_LE(stamped, absl::Now());
  }
  EXPECT_EQ(publisher.forwarded(), 20u);
  EXPECT_EQ(publisher.dropped(), 0u);
}

TEST_F(ContainerdEventTest, AnEventWaitsForContainerdToComeBackAndKeepsItsPlace) {
  EventPublisherOptions options;
  options.first_retry_delay = absl::Milliseconds(50);
  options.attempts = 8;  // 50 ms .. 3.2 s
  EventPublisher publisher(Socket(), "k8s.io", options);
  ASSERT_TRUE(publisher.Publish(kTopicTaskExit, kTypeUrlTaskExit, Exit("first", 0)).ok());
  ASSERT_TRUE(publisher.Publish(kTopicTaskExit, kTypeUrlTaskExit, Exit("second", 1)).ok());
  absl::SleepFor(absl::Milliseconds(200));  // containerd is down: a few attempts fail
  StartContainerd();
  ASSERT_TRUE(publisher.Flush(absl::Seconds(10)));
  std::vector<pb::Envelope> got = events_.envelopes();
  ASSERT_EQ(got.size(), 2u);
  pb::TaskExit a, b;
  ASSERT_TRUE(a.ParseFromString(got[0].event().value()));
  ASSERT_TRUE(b.ParseFromString(got[1].event().value()));
  EXPECT_EQ(a.container_id(), "first");
  EXPECT_EQ(b.container_id(), "second");
  // containerd restarts: the publisher reconnects.
  StopContainerd();
  StartContainerd();
  ASSERT_TRUE(publisher.Publish(kTopicTaskExit, kTypeUrlTaskExit, Exit("third", 2)).ok());
  ASSERT_TRUE(publisher.Flush(absl::Seconds(10)));
  EXPECT_EQ(events_.envelopes().size(), 3u);
  EXPECT_EQ(publisher.dropped(), 0u);
}

TEST_F(ContainerdEventTest, ARefusedEventIsDroppedAtOnceAndTheNextGoesThrough) {
  StartContainerd();
  EventPublisher publisher(Socket(), "k8s.io");
  ASSERT_TRUE(publisher.Publish("/bad", kTypeUrlTaskExit, Exit("x", 0)).ok());
  ASSERT_TRUE(publisher.Publish(kTopicTaskExit, kTypeUrlTaskExit, Exit("y", 0)).ok());
  ASSERT_TRUE(publisher.Flush(absl::Seconds(5)));
  EXPECT_EQ(publisher.dropped(), 1u);
  EXPECT_EQ(publisher.forwarded(), 1u);
  ASSERT_EQ(events_.envelopes().size(), 1u);
}

TEST_F(ContainerdEventTest, GivesUpAfterItsAttemptsAndBoundsTheQueue) {
  EventPublisherOptions options;
  options.first_retry_delay = absl::Milliseconds(1);
  options.attempts = 3;
  options.max_queued = 4;
  EventPublisher publisher(Socket(), "k8s.io", options);  // nobody listens
  int refused = 0;
  for (int i = 0; i < 50; ++i) {
    if (absl::IsResourceExhausted(publisher.Publish(kTopicTaskExit, kTypeUrlTaskExit, Exit("z", 0)))) ++refused;
  }
  EXPECT_GT(refused, 0);
  ASSERT_TRUE(publisher.Flush(absl::Seconds(10)));
  EXPECT_EQ(publisher.forwarded(), 0u);
  EXPECT_EQ(publisher.dropped(), 50u);
}

}  // namespace
}  // namespace kvcri::shim::containerd
