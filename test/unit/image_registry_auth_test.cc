// Registry auth: challenges parsed, basic and bearer answers, loopback registries.
#include <gtest/gtest.h>

#include "runtime/image/registry_auth.h"
#include "runtime/image/registry_client.h"

namespace kvcri::runtime::image {
namespace {

TEST(RegistryAuthTest, ParsesBearerChallenge) {
  absl::StatusOr<AuthChallenge> c = ParseAuthChallenge(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull")");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->scheme, "bearer");
  EXPECT_EQ(c->params["realm"], "https://auth.docker.io/token");
  EXPECT_EQ(c->params["service"], "registry.docker.io");
  EXPECT_EQ(c->params["scope"], "repository:library/busybox:pull");
}

TEST(RegistryAuthTest, ParsesBasicChallengeAndEscapes) {
  absl::StatusOr<AuthChallenge> c = ParseAuthChallenge(R"(Basic realm="a \"quoted\" realm", x=y)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->scheme, "basic");
  EXPECT_EQ(c->params["realm"], "a \"quoted\" realm");
  EXPECT_EQ(c->params["x"], "y");
}

TEST(RegistryAuthTest, RefusesMalformedChallenges) {
  EXPECT_FALSE(ParseAuthChallenge("").ok());
  EXPECT_FALSE(ParseAuthChallenge(R"(Bearer realm="unterminated)").ok());
}

TEST(RegistryAuthTest, Base64AndBasicHeader) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  RegistryCredentials creds{.username = "user", .password = "pass"};
  EXPECT_EQ(creds.BasicHeaderValue(), "Basic dXNlcjpwYXNz");
  RegistryCredentials auth_only{.auth = "dXNlcjpwYXNz"};
  EXPECT_EQ(auth_only.BasicHeaderValue(), "Basic dXNlcjpwYXNz");
  EXPECT_EQ(RegistryCredentials{}.BasicHeaderValue(), "");
}

TEST(RegistryAuthTest, LoopbackRegistries) {
  EXPECT_TRUE(IsLoopbackRegistry("localhost:5000"));
  EXPECT_TRUE(IsLoopbackRegistry("127.0.0.1:41234"));
  EXPECT_TRUE(IsLoopbackRegistry("[::1]:5000"));
  EXPECT_FALSE(IsLoopbackRegistry("registry.example:5000"));
  EXPECT_FALSE(IsLoopbackRegistry("docker.io"));
}

}  // namespace
}  // namespace kvcri::runtime::image
