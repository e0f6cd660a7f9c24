// The remotecommand messages shared by SPDY and WebSocket: exit status JSON and resize events.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "cri/streaming/stream_io.h"

namespace kvcri::streaming {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

TEST(StreamingStatus, SuccessIsTheStatusClientGoAccepts) {
  EXPECT_EQ(json::parse(StatusJson({absl::OkStatus(), 0})), json::parse(R"({"metadata":{},"status":"Success"})"));
  EXPECT_EQ(LegacyErrorText({absl::OkStatus(), 0}), "");
}

// client-go's v4 error decoder turns reason NonZeroExitCode with a cause of
// reason ExitCode into the command's exit code (exec.CodeExitError).
TEST(StreamingStatus, NonZeroExitCarriesTheCodeAsClientGoReadsIt) {
  const json j = json::parse(StatusJson({absl::OkStatus(), 137}));
  EXPECT_EQ(j["status"], "Failure");
  EXPECT_EQ(j["reason"], "NonZeroExitCode");
  ASSERT_EQ(j["details"]["causes"].size(), 1u);
  EXPECT_EQ(j["details"]["causes"][0]["reason"], "ExitCode");
  EXPECT_EQ(j["details"]["causes"][0]["message"], "137");
  EXPECT_THAT(j["message"].get<std::string>(), HasSubstr("137"));
  EXPECT_THAT(LegacyErrorText({absl::OkStatus(), 137}), HasSubstr("137"));
}

TEST(StreamingStatus, AnErrorIsAnInternalErrorWithItsMessage) {
  const json j = json::parse(StatusJson({absl::FailedPreconditionError("no agent \"x\""), 0}));
  EXPECT_EQ(j["status"], "Failure");
  EXPECT_EQ(j["reason"], "InternalError");
  EXPECT_EQ(j["code"], 500);
  EXPECT_THAT(j["message"].get<std::string>(), HasSubstr("no agent \"x\""));
  EXPECT_EQ(LegacyErrorText({absl::FailedPreconditionError("boom"), 0}), "boom");
}

TEST(StreamingStatus, InvalidUtf8InAMessageStillGivesValidJson) {
  const std::string bad("\xff\xfe guest said", 13);
  EXPECT_NO_THROW(json::parse(StatusJson({absl::InternalError(bad), 0})));
}

TEST(StreamingStatus, ResizeMessages) {
  absl::StatusOr<TerminalSize> size = ParseTerminalSize(R"({"Width":132,"Height":43})");
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(size->width, 132);
  EXPECT_EQ(size->height, 43);
  for (const char* bad : {"", "[]", "{", R"({"Width":80})", R"({"Width":-1,"Height":2})", R"({"Width":65536,"Height":2})",
                          R"({"Width":"80","Height":24})", R"({"Width":1.5,"Height":24})"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(ParseTerminalSize(bad).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace kvcri::streaming
