// Registry auth: challenges parsed, basic and bearer answers, realm and loopback trust, server_address.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

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

namespace kvcri::runtime::image {
namespace {

// Answers every request with `answer` and records it.
class RecordingHttp : public HttpFetcher {
 public:
  explicit RecordingHttp(HttpResponse answer) : answer_(std::move(answer)) {}
  absl::StatusOr<HttpResponse> Get(const HttpRequest& req, const BodySink& sink) override {
    requests.push_back(req);
    HttpResponse resp = answer_;
    resp.effective_url = req.url;
    if (resp.status >= 200 && resp.status < 300 && sink) {
      if (absl::Status s = sink(resp.body); !s.ok()) return s;
      resp.body.clear();
    }
    return resp;
  }
  std::vector<HttpRequest> requests;

 private:
  HttpResponse answer_;
};

AuthChallenge Bearer(const std::string& realm) {
  AuthChallenge c;
  c.scheme = "bearer";
  c.params["realm"] = realm;
  c.params["service"] = "svc";
  return c;
}

HttpResponse TokenAnswer(const std::string& body) {
  HttpResponse r;
  r.status = 200;
  r.body = body;
  return r;
}

// A name that only starts like a loopback address is not one.
TEST(RegistryAuthTest, LoopbackIsParsedNotPrefixMatched) {
  EXPECT_FALSE(IsLoopbackRegistry("127.example.com"));
  EXPECT_FALSE(IsLoopbackRegistry("127.example.com:5000"));
  EXPECT_FALSE(IsLoopbackRegistry("127.0.0.1.nip.io:5000"));
  EXPECT_FALSE(IsLoopbackRegistry("localhost.example.com"));
  EXPECT_FALSE(IsLoopbackRegistry("[::2]:5000"));
  EXPECT_TRUE(IsLoopbackRegistry("127.1.2.3:5000"));
  EXPECT_TRUE(IsLoopbackRegistry("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackRegistry("LOCALHOST:5000"));
  EXPECT_TRUE(IsLoopbackRegistry("[::1]"));
  EXPECT_TRUE(IsLoopbackRegistry("[::ffff:127.0.0.1]:5000"));
}

// The token request carries the credentials: a plain-http realm on another
// host is refused before any request is made.
TEST(RegistryAuthTest, PlainHttpRealmOnAnotherHostIsRefused) {
  RecordingHttp http(TokenAnswer(R"({"token":"t"})"));
  RegistryCredentials creds{.username = "u", .password = "p"};
  absl::StatusOr<std::string> a = AnswerChallenge(http, Bearer("http://evil.example/token"), creds, "repository:x:pull",
                                                  "127.0.0.1:5000", /*insecure_tls=*/true, absl::InfiniteFuture());
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << a.status();
  EXPECT_THAT(std::string(a.status().message()), ::testing::HasSubstr("http://evil.example/token"));
  EXPECT_TRUE(http.requests.empty());
  // A loopback IP that is not the registry's host is another host too.
  a = AnswerChallenge(http, Bearer("http://127.0.0.2:5001/token"), creds, "repository:x:pull", "127.0.0.1:5000", true,
                      absl::InfiniteFuture());
  EXPECT_FALSE(a.ok());
  EXPECT_TRUE(http.requests.empty());
}

// A plain-http realm is only accepted on an insecure registry's own host.
TEST(RegistryAuthTest, PlainHttpRealmOnlyOnTheInsecureRegistrysOwnHost) {
  RecordingHttp http(TokenAnswer(R"({"token":"t"})"));
  absl::StatusOr<std::string> a = AnswerChallenge(http, Bearer("http://127.0.0.1:5001/token"), {}, "s",
                                                  "127.0.0.1:5000", /*insecure_tls=*/true, absl::InfiniteFuture());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "Bearer t");
  a = AnswerChallenge(http, Bearer("http://registry.example/token"), {}, "s", "registry.example",
                      /*insecure_tls=*/false, absl::InfiniteFuture());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << a.status();
  EXPECT_EQ(http.requests.size(), 1u);
}

// An https realm on another host is verified even for an insecure registry.
TEST(RegistryAuthTest, HttpsRealmOnAnotherHostIsVerified) {
  RecordingHttp http(TokenAnswer(R"({"access_token":"t"})"));
  ASSERT_TRUE(AnswerChallenge(http, Bearer("https://auth.example/token"), {}, "s", "10.0.0.5:5000",
                              /*insecure_tls=*/true, absl::InfiniteFuture())
                  .ok());
  ASSERT_TRUE(AnswerChallenge(http, Bearer("https://10.0.0.5:5001/token"), {}, "s", "10.0.0.5:5000",
                              /*insecure_tls=*/true, absl::InfiniteFuture())
                  .ok());
  ASSERT_EQ(http.requests.size(), 2u);
  EXPECT_FALSE(http.requests[0].insecure_tls);
  EXPECT_TRUE(http.requests[0].https_redirects_only);
  EXPECT_TRUE(http.requests[1].insecure_tls);  // the insecure registry's own host
}

// A token answer of the wrong shape is an error, never an exception.
TEST(RegistryAuthTest, MalformedTokenAnswersAreErrors) {
  for (const char* body : {R"({"token": 5})", R"({"token": null, "access_token": ["x"]})", "[1,2]", "not json",
                           R"({"token": {"a": 1}})", R"("token")"}) {
    SCOPED_TRACE(body);
    RecordingHttp http(TokenAnswer(body));
    absl::StatusOr<std::string> a = AnswerChallenge(http, Bearer("https://auth.example/token"), {}, "s",
                                                    "registry.example", false, absl::InfiniteFuture());
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.status().code(), absl::StatusCode::kUnauthenticated) << a.status();
    EXPECT_THAT(std::string(a.status().message()), ::testing::HasSubstr("auth.example"));
  }
}

TEST(RegistryAuthTest, CredentialsGoOnlyToTheirServerAddress) {
  RegistryCredentials none_given{.username = "u", .password = "p"};
  EXPECT_TRUE(CredentialsApplyTo(none_given, "registry.example", "registry.example", /*mirror=*/false));
  EXPECT_FALSE(CredentialsApplyTo(none_given, "registry.example", "mirror.example", /*mirror=*/true));
  RegistryCredentials hub{.username = "u", .password = "p", .server_address = "https://index.docker.io/v1/"};
  EXPECT_TRUE(CredentialsApplyTo(hub, "docker.io", "registry-1.docker.io", false));
  EXPECT_FALSE(CredentialsApplyTo(hub, "quay.io", "quay.io", false));
  EXPECT_FALSE(CredentialsApplyTo(hub, "docker.io", "mirror.example", true));
  RegistryCredentials mirror{.username = "u", .password = "p", .server_address = "mirror.example:5000"};
  EXPECT_TRUE(CredentialsApplyTo(mirror, "docker.io", "mirror.example:5000", true));
  EXPECT_FALSE(CredentialsApplyTo(mirror, "docker.io", "registry-1.docker.io", false));
  EXPECT_EQ(NormalizeServerAddress("HTTPS://Registry.Example:5000/v2/"), "registry.example:5000");
}

}  // namespace
}  // namespace kvcri::runtime::image
