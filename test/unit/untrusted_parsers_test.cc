// Parsers of untrusted answers (registry, token endpoint, CNI plugin): wrong types and sizes are errors, not crashes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>

#include "cni/plugin_exec.h"
#include "runtime/image/registry_auth.h"
#include "runtime/image/registry_client.h"
#include "test/fuzz/fake_http.h"

namespace kvcri::runtime::image {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<std::string> Answer(std::string_view token_body) {
  fuzz::ScriptedFetcher http(std::string("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n") +
                             std::string(token_body));
  AuthChallenge c;
  c.scheme = "bearer";
  c.params["realm"] = "https://auth.example/token";
  return AnswerChallenge(http, c, {}, "repository:kvcri/disk:pull", "registry.example", false, absl::InfiniteFuture());
}

// nlohmann's value() threw type_error out of the pull (and the daemon).
TEST(TokenAnswer, ANonStringTokenIsUnauthenticatedNotAnException) {
  absl::StatusOr<std::string> a = Answer(R"({"token": 1, "access_token": ["x"]})");
  EXPECT_EQ(a.status().code(), absl::StatusCode::kUnauthenticated) << a.status();
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("without a token"));
}

// The token became "Authorization: Bearer abc\r\nX-Injected: 1" on every later request.
TEST(TokenAnswer, ATokenThatWouldSplitTheHeaderIsRefused) {
  absl::StatusOr<std::string> a = Answer(R"({"token": "abc\r\nX-Injected: 1"})");
  EXPECT_EQ(a.status().code(), absl::StatusCode::kUnauthenticated) << a.status();
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("control or non-ASCII"));
  EXPECT_EQ(*Answer(R"({"access_token": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"})"), "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln");
}

absl::StatusOr<FetchedManifest> GetManifest(std::string_view answers) {
  fuzz::ScriptedFetcher http(answers);
  Reference ref;
  ref.domain = "registry.example";
  ref.path = "kvcri/disk";
  ref.tag = "latest";
  RegistryClient client(&http, {}, ref, {}, absl::InfiniteFuture());
  return client.GetManifest("latest");
}

TEST(RegistryAnswer, AnErrorBodyWithNonStringFieldsStillGivesTheHttpError) {
  absl::StatusOr<FetchedManifest> m =
      GetManifest("HTTP/1.1 404 Not Found\r\n\r\n{\"errors\":[{\"code\":1,\"message\":{}}]}");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound) << m.status();
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("HTTP 404"));
}

TEST(RegistryAnswer, ANonStringMediaTypeIsAnUnsupportedManifest) {
  absl::StatusOr<FetchedManifest> m =
      GetManifest("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n{\"mediaType\":1}");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << m.status();
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("unsupported media type"));
}

// A CNI result is a few KiB; a plugin printing without end was held whole
// in the daemon's memory.
TEST(PluginOutput, APluginPrintingMoreThanTheBoundIsRefusedAndNotHeld) {
  char tmpl[] = "/tmp/kvcri-plugin-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::filesystem::path plugin = std::filesystem::path(tmpl) / "chatty";
  std::ofstream(plugin) << "#!/bin/sh\nhead -c 6291456 /dev/zero | tr '\\0' x\n";
  std::filesystem::permissions(plugin, std::filesystem::perms::owner_all);
  cni::PluginCall call;
  call.plugin = "chatty";
  call.binary = plugin;
  call.command = "ADD";
  call.env = {"PATH=/usr/bin:/bin"};
  absl::StatusOr<std::string> out = cni::ExecPlugin(call);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("printed more than 4194304 bytes"));
  absl::StatusOr<cni::ProcessOutput> run = cni::RunProcess(plugin, {plugin.string()}, call.env, "", absl::Minutes(1));
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0);  // read to the end: the plugin never blocked on a full pipe
  EXPECT_TRUE(run->stdout_truncated);
  EXPECT_EQ(run->stdout_data.size(), cni::kMaxProcessOutput);
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace kvcri::runtime::image
