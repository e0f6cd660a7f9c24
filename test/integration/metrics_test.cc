// The [metrics] endpoint of the real daemon: GET /metrics is valid Prometheus text counting the CRI calls made and the Pods by state.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "test/client/prom_text.h"
#include "test/client/test_daemon.h"

namespace kvcri::testing {
namespace {

// A port free right now on loopback (the daemon binds it a moment later).
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// One HTTP/1.1 request on a new connection; the whole answer (the server closes).
std::string HttpRequest(int port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return "";
  }
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[16384];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

std::string Body(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

TEST(MetricsTest, TheEndpointServesValidExpositionTextOfTheCallsMade) {
  RequireIntegrationEnvironment(false);
  const int port = FreePort();
  TestDaemon::Options o;
  o.extra_config = absl::StrCat("[metrics]\naddress = \"127.0.0.1:", port, "\"\n");
  TestDaemon d(o);
  d.Start();
  for (int i = 0; i < 3; ++i) {
    pb::VersionRequest req;
    pb::VersionResponse resp;
    ASSERT_TRUE(d.runtime().Version(Ctx().get(), req, &resp).ok());
  }
  pb::PodSandboxStatusRequest bad;
  bad.set_pod_sandbox_id("ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
  pb::PodSandboxStatusResponse bad_resp;
  EXPECT_EQ(d.runtime().PodSandboxStatus(Ctx().get(), bad, &bad_resp).error_code(), grpc::StatusCode::NOT_FOUND);

  const std::string response = HttpRequest(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_THAT(response, ::testing::StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(response, ::testing::HasSubstr("text/plain; version=0.0.4"));
  absl::StatusOr<std::map<std::string, PromFamily>> fams = ParsePromText(Body(response));
  ASSERT_TRUE(fams.ok()) << fams.status() << "\n" << response;
  // The start-up's own Version wait counts too: at least ours.
  absl::StatusOr<double> versions = PromValue(
      *fams, "kvcri_cri_requests_total", {{"method", "/runtime.v1.RuntimeService/Version"}, {"code", "OK"}});
  ASSERT_TRUE(versions.ok()) << response;
  EXPECT_GE(*versions, 3);
  EXPECT_EQ(*PromValue(*fams, "kvcri_cri_requests_total",
                       {{"method", "/runtime.v1.RuntimeService/PodSandboxStatus"}, {"code", "NOT_FOUND"}}),
            1);
  absl::StatusOr<double> count = PromValue(*fams, "kvcri_cri_request_duration_seconds_count",
                                           {{"method", "/runtime.v1.RuntimeService/Version"}});
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, *versions);
  EXPECT_EQ(*PromValue(*fams, "kvcri_pod_sandboxes", {{"state", "SANDBOX_READY"}}), 0);
  EXPECT_EQ(*PromValue(*fams, "kvcri_containers", {{"state", "CONTAINER_RUNNING"}}), 0);
  EXPECT_EQ(*PromValue(*fams, "kvcri_container_events_dropped_total", {}), 0);

  EXPECT_THAT(HttpRequest(port, "GET / HTTP/1.1\r\n\r\n"), ::testing::StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(HttpRequest(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
              ::testing::StartsWith("HTTP/1.1 405"));
  EXPECT_THAT(HttpRequest(port, "garbage\r\n\r\n"), ::testing::StartsWith("HTTP/1.1 400"));
  // An oversized request header is refused, and the endpoint keeps serving.
  EXPECT_THAT(HttpRequest(port, "GET /metrics HTTP/1.1\r\nX: " + std::string(16 << 10, 'a') + "\r\n\r\n"),
              ::testing::StartsWith("HTTP/1.1 400"));
  EXPECT_THAT(HttpRequest(port, "GET /metrics HTTP/1.1\r\n\r\n"), ::testing::StartsWith("HTTP/1.1 200"));
}

}  // namespace
}  // namespace kvcri::testing
