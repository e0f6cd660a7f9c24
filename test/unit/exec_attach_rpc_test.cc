// The Exec, ExecSync, Attach and PortForward RPCs: validation naming fields, the URL from the streaming server, ExecSync's answer and its timeout code.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "cri/exec_dispatch.h"
#include "cri/streaming/streaming_server.h"
#include "runtime/console_attach.h"
#include "test/fakes/cri_harness.h"
#include "test/fakes/fake_agent.h"

namespace kvcri::cri {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::FakeGuestAgents;

// Hands out recognizable URLs and remembers what each stands for.
class FakeStreamingServer : public streaming::StreamingServer {
 public:
  absl::StatusOr<std::string> PrepareExec(const streaming::ExecSpec& spec) override {
    execs.push_back(spec);
    return "http://127.0.0.1:1234/exec/tok" + std::to_string(execs.size());
  }
  absl::StatusOr<std::string> PrepareAttach(const streaming::AttachSpec& spec) override {
    attaches.push_back(spec);
    return "http://127.0.0.1:1234/attach/tok" + std::to_string(attaches.size());
  }
  absl::StatusOr<std::string> PreparePortForward(const streaming::PortForwardSpec& spec) override {
    forwards.push_back(spec);
    return "http://127.0.0.1:1234/portforward/tok" + std::to_string(forwards.size());
  }
  std::string BaseUrl() const override { return "http://127.0.0.1:1234"; }
  void Shutdown() override {}
  std::vector<streaming::ExecSpec> execs;
  std::vector<streaming::AttachSpec> attaches;
  std::vector<streaming::PortForwardSpec> forwards;
};

class ExecAttachRpcTest : public CriHarness {
 protected:
  void SetUp() override {
    add_deps_ = [this](RuntimeDeps& deps) {
      dispatcher_ = std::make_unique<ExecDispatcher>(deps.store, deps.hypervisor, &agents_, &consoles_);
      deps.exec = dispatcher_.get();
      deps.streaming = &streaming_;
    };
    CriHarness::SetUp();
    ctr_ = RunningPodVm("web", &pod_);
  }
  void QgaUp() {
    absl::MutexLock l(&agents_.mu);
    agents_.qga_ping = absl::OkStatus();
  }

  pb::ExecRequest ExecReq(bool tty, bool in, bool out, bool err) {
    pb::ExecRequest r;
    r.set_container_id(ctr_);
    r.add_cmd("sh");
    r.set_tty(tty);
    r.set_stdin(in);
    r.set_stdout(out);
    r.set_stderr(err);
    return r;
  }

  FakeGuestAgents agents_;
  runtime::ConsoleHubs consoles_;
  FakeStreamingServer streaming_;
  std::unique_ptr<ExecDispatcher> dispatcher_;
  std::string pod_, ctr_;
};

TEST_F(ExecAttachRpcTest, ExecReturnsTheStreamingUrlForTheResolvedContainer) {
  pb::ExecRequest req = ExecReq(true, true, true, false);
  req.set_container_id(ctr_.substr(0, 12));  // a unique prefix, as crictl sends
  pb::ExecResponse resp;
  grpc::Status s = service_->Exec(nullptr, &req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.url(), "http://127.0.0.1:1234/exec/tok1");
  ASSERT_EQ(streaming_.execs.size(), 1u);
  EXPECT_EQ(streaming_.execs[0].container_id, ctr_);
  EXPECT_THAT(streaming_.execs[0].cmd, ElementsAre("sh"));
  EXPECT_TRUE(streaming_.execs[0].tty);
  EXPECT_TRUE(streaming_.execs[0].stdin);
}

TEST_F(ExecAttachRpcTest, ExecValidationErrorsNameTheField) {
  pb::ExecResponse resp;
  pb::ExecRequest tty_stderr = ExecReq(true, false, true, true);
  grpc::Status s = service_->Exec(nullptr, &tty_stderr, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "tty and stderr cannot both be true");
  pb::ExecRequest none = ExecReq(false, false, false, false);
  s = service_->Exec(nullptr, &none, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "one of stdin, stdout, or stderr must be set");
  pb::ExecRequest no_cmd = ExecReq(false, false, true, false);
  no_cmd.clear_cmd();
  s = service_->Exec(nullptr, &no_cmd, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("cmd"));
  pb::ExecRequest no_id = ExecReq(false, false, true, false);
  no_id.clear_container_id();
  s = service_->Exec(nullptr, &no_id, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("container_id"));
  pb::ExecRequest unknown = ExecReq(false, false, true, false);
  unknown.set_container_id(std::string(64, 'f'));
  s = service_->Exec(nullptr, &unknown, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("container_id"));
  EXPECT_TRUE(streaming_.execs.empty());
}

TEST_F(ExecAttachRpcTest, ExecOfAStoppedContainerIsFailedPreconditionAndGetsNoUrl) {
  ASSERT_TRUE(StopCtr(ctr_, 0).ok());
  pb::ExecRequest req = ExecReq(false, false, true, true);
  pb::ExecResponse resp;
  grpc::Status s = service_->Exec(nullptr, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_TRUE(streaming_.execs.empty());
}

TEST_F(ExecAttachRpcTest, ExecSyncAnswersOutputsAndExitCode) {
  QgaUp();
  {
    absl::MutexLock l(&agents_.mu);
    agents_.qga_exec = [](const std::vector<std::string>& argv, std::string_view, absl::Time) {
      return runtime::GuestExecResult{2, argv[0] + "\n", "bad\n", false};
    };
  }
  pb::ExecSyncRequest req;
  req.set_container_id(ctr_);
  req.add_cmd("echo");
  pb::ExecSyncResponse resp;
  grpc::Status s = service_->ExecSync(nullptr, &req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.stdout(), "echo\n");
  EXPECT_EQ(resp.stderr(), "bad\n");
  EXPECT_EQ(resp.exit_code(), 2);
}

TEST_F(ExecAttachRpcTest, ExecSyncTimeoutIsDeadlineExceededAsKubeletsProberExpects) {
  QgaUp();
  {
    absl::MutexLock l(&agents_.mu);
    agents_.qga_exec = [](const std::vector<std::string>&, std::string_view, absl::Time) {
      return absl::StatusOr<runtime::GuestExecResult>(absl::DeadlineExceededError("killed"));
    };
  }
  pb::ExecSyncRequest req;
  req.set_container_id(ctr_);
  req.add_cmd("sleep");
  req.add_cmd("10");
  req.set_timeout(2);
  pb::ExecSyncResponse resp;
  grpc::Status s = service_->ExecSync(nullptr, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(s.error_message(), HasSubstr("timeout 2s exceeded"));
}

TEST_F(ExecAttachRpcTest, ExecSyncValidationAndNoAgent) {
  pb::ExecSyncResponse resp;
  pb::ExecSyncRequest no_cmd;
  no_cmd.set_container_id(ctr_);
  EXPECT_EQ(service_->ExecSync(nullptr, &no_cmd, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  pb::ExecSyncRequest negative;
  negative.set_container_id(ctr_);
  negative.add_cmd("true");
  negative.set_timeout(-1);
  grpc::Status s = service_->ExecSync(nullptr, &negative, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("timeout"));
  pb::ExecSyncRequest ok;
  ok.set_container_id(ctr_);
  ok.add_cmd("true");
  s = service_->ExecSync(nullptr, &ok, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("neither kvcri-agent"));
}

TEST_F(ExecAttachRpcTest, AttachNeedsAStreamAndTheVmsConsoleSocket) {
  pb::AttachRequest req;
  req.set_container_id(ctr_);
  pb::AttachResponse resp;
  grpc::Status s = service_->Attach(nullptr, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "one of stdin, stdout, or stderr must be set");
  req.set_stdout(true);
  // A VM recorded without a console socket (made before attach existed).
  ASSERT_TRUE(store_->UpdateContainer(ctr_, [&](sandbox::ContainerRecord& c) {
                      c.console_socket.clear();
                      return absl::OkStatus();
                    }).ok());
  s = service_->Attach(nullptr, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  ASSERT_TRUE(store_->UpdateContainer(ctr_, [&](sandbox::ContainerRecord& c) {
                      c.console_socket = (dir_ / "console.sock").string();
                      return absl::OkStatus();
                    }).ok());
  s = service_->Attach(nullptr, &req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.url(), "http://127.0.0.1:1234/attach/tok1");
  ASSERT_EQ(streaming_.attaches.size(), 1u);
  EXPECT_EQ(streaming_.attaches[0].container_id, ctr_);
}

TEST_F(ExecAttachRpcTest, PortForwardValidatesPortsAndReturnsTheUrl) {
  pb::PortForwardRequest req;
  req.set_pod_sandbox_id(pod_);
  req.add_port(8080);
  req.add_port(70000);
  pb::PortForwardResponse resp;
  grpc::Status s = service_->PortForward(nullptr, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("port[1] 70000"));
  req.clear_port();
  req.add_port(8080);
  s = service_->PortForward(nullptr, &req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.url(), "http://127.0.0.1:1234/portforward/tok1");
  ASSERT_EQ(streaming_.forwards.size(), 1u);
  EXPECT_EQ(streaming_.forwards[0].pod_sandbox_id, pod_);
  EXPECT_THAT(streaming_.forwards[0].ports, ElementsAre(8080));
  pb::PortForwardRequest unknown;
  unknown.set_pod_sandbox_id(std::string(64, 'f'));
  s = service_->PortForward(nullptr, &unknown, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("pod_sandbox_id"));
  pb::PortForwardRequest empty;
  s = service_->PortForward(nullptr, &empty, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("pod_sandbox_id"));
}

TEST_F(ExecAttachRpcTest, RemoveContainerForgetsItsAgentClient) {
  ASSERT_TRUE(StopCtr(ctr_, 0).ok());
  ASSERT_TRUE(RemoveCtr(ctr_).ok());
  EXPECT_THAT(agents_.Calls(), ::testing::Contains("ForgetAgent " + ctr_.substr(0, 8)));
}

}  // namespace
}  // namespace kvcri::cri
