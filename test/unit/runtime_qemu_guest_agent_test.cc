// QemuGuestAgent against scripted qemu-ga replies: exit codes, signals, output bounds, malformed replies, the deadline
// kill.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "runtime/qemu_guest_agent.h"
#include "test/fakes/fake_hypervisor.h"

namespace kvcri::runtime {
namespace {

using ::nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string B64(std::string_view s) { return absl::Base64Escape(absl::string_view(s.data(), s.size())); }

// A scripted qemu-ga: guest-exec hands out pids from 100; guest-exec-status
// answers `running_polls` times "not exited", then `final_status`.
struct ScriptedAgent {
  int running_polls = 0;
  std::string final_status = R"({"return":{"exited":true,"exitcode":0}})";
  int next_pid = 100;
  int polls = 0;
  // Killed pids report exited by SIGKILL; the rest keep running.
  bool run_forever = false;
  std::set<int64_t> killed;
  std::set<int64_t> killers;            // pids of kill commands
  std::set<std::string> missing_paths;  // guest-exec of these fails like a missing binary

  absl::StatusOr<std::string> Reply(std::string_view cmd_text) {
    json cmd = json::parse(cmd_text);
    const std::string execute = cmd["execute"];
    if (execute == "guest-ping") return std::string(R"({"return":{}})");
    if (execute == "guest-exec") {
      const std::string path = cmd["arguments"]["path"];
      if (missing_paths.count(path)) {
        return absl::InternalError(
            "unable to execute QEMU agent command 'guest-exec': Failed to execute child process");
      }
      const auto& arg = cmd["arguments"]["arg"];
      const int pid = next_pid++;
      if (path == "/bin/kill" || path == "/usr/bin/kill") killed.insert(std::stoll(arg[1].get<std::string>()));
      if (path == "/bin/sh" && arg[0] == "-c") {  // the tree kill script ends in "t <pid>"
        const std::string script = arg[1];
        killed.insert(std::stoll(script.substr(script.rfind(' ') + 1)));
      }
      if (path == "/bin/kill" || path == "/usr/bin/kill" || path == "/bin/sh") killers.insert(pid);
      return json({{"return", {{"pid", pid}}}}).dump();
    }
    if (execute == "guest-exec-status") {
      const int64_t pid = cmd["arguments"]["pid"];
      if (killers.count(pid)) return std::string(R"({"return":{"exited":true,"exitcode":0}})");
      if (run_forever) {
        return killed.count(pid) ? std::string(R"({"return":{"exited":true,"signal":9}})")
                                 : std::string(R"({"return":{"exited":false}})");
      }
      if (polls++ < running_polls) return std::string(R"({"return":{"exited":false}})");
      return final_status;
    }
    return absl::InvalidArgumentError("unknown command " + execute);
  }
};

class QemuGuestAgentTest : public ::testing::Test {
 protected:
  QemuGuestAgentTest() {
    absl::MutexLock l(&hv_.mu);
    hv_.agent_reply = [this](std::string_view, std::string_view cmd, absl::Duration) { return script_.Reply(cmd); };
  }
  absl::StatusOr<GuestExecResult> Run(std::vector<std::string> argv, std::string_view input = "",
                                      absl::Duration within = absl::Seconds(5)) {
    return agent_.Exec("kvcri-abc", argv, input, absl::Now() + within);
  }
  std::vector<json> Commands() {
    std::vector<json> out;
    for (const std::string& c : hv_.AgentCommands()) out.push_back(json::parse(c));
    return out;
  }

  ScriptedAgent script_;
  testing::FakeHypervisor hv_;
  QemuGuestAgentOptions options_{.max_output_bytes = 8, .poll_interval = absl::Milliseconds(1)};
  QemuGuestAgent agent_{&hv_, options_};
};

TEST_F(QemuGuestAgentTest, PingSendsGuestPing) {
  EXPECT_TRUE(agent_.Ping("kvcri-abc", absl::Seconds(1)).ok());
  ASSERT_EQ(Commands().size(), 1u);
  EXPECT_EQ(Commands()[0]["execute"], "guest-ping");
}

TEST_F(QemuGuestAgentTest, PingWithoutAgentIsTheHypervisorsError) {
  {
    absl::MutexLock l(&hv_.mu);
    hv_.agent_reply = [](std::string_view, std::string_view, absl::Duration) -> absl::StatusOr<std::string> {
      return absl::UnavailableError("QEMU guest agent is not connected");
    };
  }
  EXPECT_EQ(agent_.Ping("kvcri-abc", absl::Seconds(1)).code(), absl::StatusCode::kUnavailable);
}

TEST_F(QemuGuestAgentTest, ExecSendsArgvStdinAndCapturesOutput) {
  script_.running_polls = 2;
  script_.final_status =
      json({{"return", {{"exited", true}, {"exitcode", 0}, {"out-data", B64("hi\n")}, {"err-data", B64("e")}}}}).dump();
  absl::StatusOr<GuestExecResult> r = Run({"/bin/echo", "a b", "c"}, "in\x01put");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_data, "hi\n");
  EXPECT_EQ(r->stderr_data, "e");
  EXPECT_FALSE(r->truncated);
  std::vector<json> cmds = Commands();
  ASSERT_EQ(cmds.size(), 4u);  // exec, 3 polls
  EXPECT_EQ(cmds[0]["execute"], "guest-exec");
  EXPECT_EQ(cmds[0]["arguments"]["path"], "/bin/echo");
  EXPECT_EQ(cmds[0]["arguments"]["arg"], json::array({"a b", "c"}));
  EXPECT_EQ(cmds[0]["arguments"]["input-data"], B64("in\x01put"));
  EXPECT_EQ(cmds[0]["arguments"]["capture-output"], true);
  EXPECT_EQ(cmds[1]["execute"], "guest-exec-status");
  EXPECT_EQ(cmds[1]["arguments"]["pid"], 100);
}

TEST_F(QemuGuestAgentTest, ExitCodeAndSignal) {
  script_.final_status = R"({"return":{"exited":true,"exitcode":3}})";
  absl::StatusOr<GuestExecResult> r = Run({"false"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);

  script_.polls = 0;
  script_.final_status = R"({"return":{"exited":true,"signal":15}})";
  r = Run({"sleep"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 143);
}

TEST_F(QemuGuestAgentTest, OutputBeyondTheLimitIsTruncated) {
  script_.final_status =
      json({{"return", {{"exited", true}, {"exitcode", 0}, {"out-data", B64("0123456789abcdef")}}}}).dump();
  absl::StatusOr<GuestExecResult> r = Run({"cat"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "01234567");
  EXPECT_TRUE(r->truncated);
}

TEST_F(QemuGuestAgentTest, GuestSideTruncationIsReported) {
  script_.final_status =
      json({{"return", {{"exited", true}, {"exitcode", 0}, {"err-data", B64("x")}, {"err-truncated", true}}}}).dump();
  absl::StatusOr<GuestExecResult> r = Run({"cat"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stderr_data, "x");
  EXPECT_TRUE(r->truncated);
}

TEST_F(QemuGuestAgentTest, MalformedRepliesAreDataLoss) {
  for (const char* bad :
       {"not json", "[1]", R"({"return":{"exited":"yes"}})", R"({"nothing":1})", R"({"return":{"exited":true}})",
        R"({"return":{"exited":true,"exitcode":256}})", R"({"return":{"exited":true,"signal":0}})",
        R"({"return":{"exited":true,"exitcode":0,"out-data":"@@@@"}})",
        R"({"return":{"exited":true,"exitcode":0,"err-data":7}})"}) {
    script_.polls = 0;
    script_.final_status = bad;
    absl::StatusOr<GuestExecResult> r = Run({"x"});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << bad << ": " << r.status();
  }
}

TEST_F(QemuGuestAgentTest, OversizedReplyIsRefusedBeforeParsing) {
  script_.final_status = std::string((10 << 20) + 1, ' ');
  absl::StatusOr<GuestExecResult> r = Run({"x"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("bytes, above"));
}

TEST_F(QemuGuestAgentTest, ReplyOfManySmallValuesIsRefusedBeforeParsing) {
  std::string many = R"({"return":{"exited":true,"exitcode":0,"x":[)";
  for (int i = 0; i < 100000; ++i) many += "0,";
  many += "0]}}";
  script_.final_status = many;
  absl::StatusOr<GuestExecResult> r = Run({"x"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("more than 256 JSON values"));
  // Commas inside strings are data, not structure.
  script_.polls = 0;
  script_.final_status =
      json({{"return", {{"exited", true}, {"exitcode", 0}, {"junk", std::string(5000, ',')}}}}).dump();
  EXPECT_TRUE(Run({"x"}).ok());
}

TEST_F(QemuGuestAgentTest, GuestExecErrorReplyNamesTheCommand) {
  {
    absl::MutexLock l(&hv_.mu);
    hv_.agent_reply = [](std::string_view, std::string_view, absl::Duration) -> absl::StatusOr<std::string> {
      return std::string(R"({"error":{"class":"GenericError","desc":"Guest agent command failed"}})");
    };
  }
  absl::StatusOr<GuestExecResult> r = Run({"x"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("guest-exec failed: Guest agent command failed"));
}

TEST_F(QemuGuestAgentTest, RefusesEmptyArgvAndInvalidUtf8) {
  EXPECT_EQ(Run({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Run({"echo", "\xff"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(hv_.AgentCommands().empty());
}

TEST_F(QemuGuestAgentTest, DeadlineKillsTheGuestProcessTree) {
  script_.run_forever = true;
  absl::StatusOr<GuestExecResult> r = Run({"sleep", "10"}, "", absl::Milliseconds(50));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("guest pid 100 was killed"));
  EXPECT_THAT(script_.killed, ElementsAre(100));
  int killers = 0;
  for (const json& c : Commands()) {
    if (c["execute"] != "guest-exec" || c["arguments"]["path"] == "sleep") continue;
    ++killers;
    EXPECT_EQ(c["arguments"]["path"], "/bin/sh");
    const std::string script = c["arguments"]["arg"][1];
    EXPECT_THAT(script, HasSubstr("kill -STOP $1"));
    EXPECT_THAT(script, HasSubstr("/proc/$1/task/*/children"));
    EXPECT_THAT(script, HasSubstr("kill -KILL $1"));
    EXPECT_THAT(script, ::testing::EndsWith("; t 100"));
  }
  EXPECT_EQ(killers, 1);
}

TEST_F(QemuGuestAgentTest, DeadlineKillFallsBackToKillWithoutAShell) {
  script_.run_forever = true;
  script_.missing_paths = {"/bin/sh", "/bin/kill"};
  absl::StatusOr<GuestExecResult> r = Run({"sleep", "10"}, "", absl::Milliseconds(20));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_THAT(script_.killed, ElementsAre(100));
  bool via_kill = false;
  for (const json& c : Commands()) {
    if (c["execute"] == "guest-exec" && c["arguments"]["path"] == "/usr/bin/kill") {
      EXPECT_EQ(c["arguments"]["arg"], json::array({"-KILL", "100"}));
      via_kill = true;
    }
  }
  EXPECT_TRUE(via_kill);
}

TEST_F(QemuGuestAgentTest, DeadlineWithNoWayToKillSaysSo) {
  script_.run_forever = true;
  script_.missing_paths = {"/bin/kill", "/usr/bin/kill", "/bin/sh"};
  absl::StatusOr<GuestExecResult> r = Run({"sleep", "10"}, "", absl::Milliseconds(20));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(r.status().message(), HasSubstr("could not be killed"));
}

}  // namespace
}  // namespace kvcri::runtime
