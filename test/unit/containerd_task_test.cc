// Unit tests of the shim's TaskService refusals and of PauseProcess (signals, exit status, Wait with cancellation).
#include <signal.h>

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "shim/containerd/names.h"
#include "shim/containerd/pause_process.h"
#include "shim/containerd/proto/events.pb.h"
#include "shim/containerd/task_service.h"
#include "shim/ttrpc/server.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::shim::containerd {
namespace {

TEST(ContainerdPauseProcess, ASignalEndsItWith128PlusTheSignalAndWaitReturnsThat) {
  std::vector<ProcessExit> exits;
  absl::Mutex mu;
  auto p = PauseProcess::Start("", [&](const ProcessExit& e) {
    absl::MutexLock lock(&mu);
    exits.push_back(e);
  });
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_GT((*p)->pid(), 0);
  EXPECT_FALSE((*p)->exit().has_value());
  // A deadline passes while it runs.
  EXPECT_EQ((*p)->Wait(nullptr, absl::Now() + absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE((*p)->Signal(SIGTERM).ok());
  absl::StatusOr<ProcessExit> e = (*p)->Wait(nullptr, absl::InfiniteFuture());
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->status, 128u + SIGTERM) << "SIGTERM's default action: the shim's blocked signals are not inherited";
  EXPECT_EQ(e->pid, (*p)->pid());
  EXPECT_TRUE((*p)->Signal(SIGKILL).ok()) << "an exited process is no error to signal";
  p->reset();
  absl::MutexLock lock(&mu);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].status, 128u + SIGTERM);
}

TEST(ContainerdPauseProcess, AWaitEndsWhenItsCallIsCancelledAndTheDestructorKills) {
  auto p = PauseProcess::Start("", nullptr);
  ASSERT_TRUE(p.ok()) << p.status();
  auto cancel = std::make_shared<ttrpc::Cancellation>();
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(50));
    cancel->Cancel();
  });
  EXPECT_EQ((*p)->Wait(cancel, absl::InfiniteFuture()).status().code(), absl::StatusCode::kCancelled);
  canceller.join();
  // Already cancelled: at once.
  EXPECT_EQ((*p)->Wait(cancel, absl::InfiniteFuture()).status().code(), absl::StatusCode::kCancelled);
  const pid_t pid = (*p)->pid();
  p->reset();  // SIGKILL and reap: nothing left
  EXPECT_NE(::kill(pid, 0), 0);
}

TEST(ContainerdPauseProcess, ANetnsThatCannotBeOpenedIsAnError) {
  auto p = PauseProcess::Start("/nonexistent/netns", nullptr);
  EXPECT_TRUE(absl::IsNotFound(p.status())) << p.status();
}

class ContainerdTaskTest : public testing::ScratchDirTest {
 protected:
  // A bundle whose config.json carries `annotations` and `namespaces` JSON.
  std::string Bundle(const std::string& name, const std::string& annotations, const std::string& namespaces) {
    std::filesystem::path b = dir_ / name;
    std::filesystem::create_directories(b);
    std::ofstream(b / "config.json") << "{\"ociVersion\":\"1.0.2\",\"annotations\":" << annotations
                                     << ",\"linux\":{\"namespaces\":" << namespaces << "}}";
    return b.string();
  }
  pb::CreateTaskRequest CreateReq(const std::string& id, const std::string& bundle) {
    pb::CreateTaskRequest req;
    req.set_id(id);
    req.set_bundle(bundle);
    return req;
  }

  std::vector<std::string> topics_;
  TaskService tasks_{[this](std::string_view topic, std::string_view, std::string) { topics_.emplace_back(topic); },
                     TaskServiceOptions{"test", nullptr}};
  ttrpc::CallContext ctx_;
};

TEST_F(ContainerdTaskTest, AContainerTaskWithoutItsPodsOrchestratorIsRefused) {
  std::string b = Bundle("c1", R"({"io.kubernetes.cri.container-type":"container"})", "[]");
  absl::StatusOr<pb::CreateTaskResponse> r = tasks_.Create(ctx_, CreateReq("c1", b));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("without the VM orchestrator"), std::string::npos)
      << r.status();
  EXPECT_EQ(tasks_.tasks(), 0u);
  EXPECT_TRUE(topics_.empty()) << "no TaskCreate for a refused task";
}

TEST_F(ContainerdTaskTest, ATaskWithoutCriAnnotationsOrWithHostNetworkingIsRefused) {
  std::string plain = Bundle("p", "{}", "[]");
  EXPECT_EQ(tasks_.Create(ctx_, CreateReq("p", plain)).status().code(), absl::StatusCode::kInvalidArgument);
  std::string hostnet = Bundle("h", R"({"io.kubernetes.cri.container-type":"sandbox"})", R"([{"type":"pid"}])");
  absl::StatusOr<pb::CreateTaskResponse> r = tasks_.Create(ctx_, CreateReq("h", hostnet));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("host networking"), std::string::npos) << r.status();
  std::filesystem::create_directories(dir_ / "bad");
  std::ofstream(dir_ / "bad" / "config.json") << "{not json";
  EXPECT_EQ(tasks_.Create(ctx_, CreateReq("b", (dir_ / "bad").string())).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tasks_.Create(ctx_, CreateReq("", plain)).status().code(), absl::StatusCode::kInvalidArgument);
  pb::CreateTaskRequest checkpoint = CreateReq("k", plain);
  checkpoint.set_checkpoint("/tmp/cp");
  EXPECT_EQ(tasks_.Create(ctx_, checkpoint).status().code(), absl::StatusCode::kUnimplemented);
}

TEST_F(ContainerdTaskTest, UnknownTasksAreNotFoundAndSoAreTheirExecs) {
  pb::StateRequest state;
  state.set_id("nope");
  EXPECT_TRUE(absl::IsNotFound(tasks_.State(ctx_, state).status()));
  pb::KillRequest kill;
  kill.set_id("nope");
  kill.set_signal(SIGKILL);
  EXPECT_TRUE(absl::IsNotFound(tasks_.Kill(ctx_, kill).status()));
  kill.set_signal(0);
  EXPECT_EQ(tasks_.Kill(ctx_, kill).status().code(), absl::StatusCode::kInvalidArgument);
  pb::DeleteRequest del;
  del.set_id("nope");
  EXPECT_TRUE(absl::IsNotFound(tasks_.Delete(ctx_, del).status()));
  del.set_exec_id("e1");
  EXPECT_TRUE(absl::IsNotFound(tasks_.Delete(ctx_, del).status()));
  pb::ConnectRequest connect;
  connect.set_id("nope");
  absl::StatusOr<pb::ConnectResponse> c = tasks_.Connect(ctx_, connect);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->shim_pid(), static_cast<uint32_t>(::getpid()));
  EXPECT_EQ(c->task_pid(), 0u);
  EXPECT_EQ(c->version(), "test");
}

TEST_F(ContainerdTaskTest, ShutdownStopsTheServerOnlyWithoutTasksOrWhenToldNow) {
  int shutdowns = 0;
  TaskService tasks(nullptr, TaskServiceOptions{"test", [&] { ++shutdowns; }});
  pb::ShutdownRequest req;
  ASSERT_TRUE(tasks.Shutdown(ctx_, req).ok());
  EXPECT_EQ(shutdowns, 1);
  req.set_now(true);
  ASSERT_TRUE(tasks.Shutdown(ctx_, req).ok());
  EXPECT_EQ(shutdowns, 2);
}

}  // namespace
}  // namespace kvcri::shim::containerd
