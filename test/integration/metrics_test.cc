// The [metrics] endpoint of the real daemon: GET /metrics is valid Prometheus text counting CRI calls, Pods by state, pulls, VM starts and boots, DHCP.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "test/client/host_util.h"
#include "test/client/pod_helpers.h"
#include "test/client/prom_text.h"
#include "test/client/registry_fixture.h"
#include "test/client/test_daemon.h"

namespace kvcri::testing {
namespace {

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
  const int port = FreeLoopbackPort();
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

// The families of one scrape; a test failure when the text does not parse.
std::map<std::string, PromFamily> Scrape(int port) {
  const std::string response = HttpRequest(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  absl::StatusOr<std::map<std::string, PromFamily>> fams = ParsePromText(Body(response));
  EXPECT_TRUE(fams.ok()) << fams.status() << "\n" << response;
  return fams.ok() ? *std::move(fams) : std::map<std::string, PromFamily>{};
}

double ValueOr(const std::map<std::string, PromFamily>& fams, const std::string& name,
               const std::map<std::string, std::string>& labels, double otherwise = -1) {
  absl::StatusOr<double> v = PromValue(fams, name, labels);
  return v.ok() ? *v : otherwise;
}

// A pulled VM Pod moves every VM-side family: pull bytes and duration, the
// VM start, its boot up to qemu-guest-agent, the guest's DHCP, the state
// gauges; and a healthy run has no libvirt error at all.
TEST(MetricsTest, APulledVmPodIsCountedFromPullToBoot) {
  RequireIntegrationEnvironment(false);
  RegistryFixture reg;
  reg.Start();
  ASSERT_FALSE(HasFatalFailure());
  reg.Push(GuestImageDir("oci-disk"), "vm/metrics:1");
  ASSERT_FALSE(HasFatalFailure());
  const std::string image = reg.Host() + "/vm/metrics:1";

  const int port = FreeLoopbackPort();
  TestDaemon::Options o;
  o.extra_config = absl::StrCat("[metrics]\naddress = \"127.0.0.1:", port, "\"\n");
  TestDaemon d(o);
  d.Start();
  std::map<std::string, PromFamily> fams = Scrape(port);
  EXPECT_EQ(ValueOr(fams, "kvcri_image_pull_bytes_total", {}), 0);
  EXPECT_EQ(ValueOr(fams, "kvcri_dhcp_leases", {}), 0);

  pb::PullImageRequest pull;
  pull.mutable_image()->set_image(image);
  pb::PullImageResponse pulled;
  grpc::Status s = d.images().PullImage(Ctx(std::chrono::seconds(300)).get(), pull, &pulled);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\ndaemon:\n" << d.DaemonLog();
  std::string pod_id, ctr_id;
  ASSERT_TRUE(StartPod(d, "metrics", image, &pod_id, &ctr_id)) << d.DaemonLog();

  // qemu-guest-agent connects once the guest's /init has started it; its
  // DHCP comes a little before. Under TCG that takes a while.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  do {
    fams = Scrape(port);
    if (ValueOr(fams, "kvcri_vm_boot_duration_seconds_count", {}) >= 1 &&
        ValueOr(fams, "kvcri_dhcp_replies_total", {{"type", "ack"}}) >= 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(ValueOr(fams, "kvcri_vm_boot_duration_seconds_count", {}), 1) << d.DaemonLog();
  EXPECT_GT(ValueOr(fams, "kvcri_vm_boot_duration_seconds_sum", {}), 0);
  EXPECT_GE(ValueOr(fams, "kvcri_dhcp_replies_total", {{"type", "offer"}}), 1);
  EXPECT_GE(ValueOr(fams, "kvcri_dhcp_replies_total", {{"type", "ack"}}), 1);
  EXPECT_EQ(ValueOr(fams, "kvcri_dhcp_leases", {}), 1);
  // The image's blobs came over the wire; the pull and the start each once.
  EXPECT_GT(ValueOr(fams, "kvcri_image_pull_bytes_total", {}), 1 << 20);
  EXPECT_EQ(ValueOr(fams, "kvcri_image_pull_duration_seconds_count", {{"result", "ok"}}), 1);
  EXPECT_EQ(ValueOr(fams, "kvcri_vm_start_duration_seconds_count", {{"result", "ok"}}), 1);
  EXPECT_EQ(ValueOr(fams, "kvcri_pod_sandboxes", {{"state", "SANDBOX_READY"}}), 1);
  EXPECT_EQ(ValueOr(fams, "kvcri_containers", {{"state", "CONTAINER_RUNNING"}}), 1);
  // The family is there (HELP and TYPE) with no series: nothing failed.
  ASSERT_EQ(fams.count("kvcri_libvirt_errors_total"), 1u);
  EXPECT_TRUE(fams.at("kvcri_libvirt_errors_total").samples.empty())
      << "a libvirt call failed in a healthy run: " << fams.at("kvcri_libvirt_errors_total").samples[0].name;

  RemovePod(d, pod_id);
  fams = Scrape(port);
  EXPECT_EQ(ValueOr(fams, "kvcri_dhcp_leases", {}), 0);
  EXPECT_EQ(ValueOr(fams, "kvcri_pod_sandboxes", {{"state", "SANDBOX_READY"}}), 0);
  EXPECT_EQ(ValueOr(fams, "kvcri_containers", {{"state", "CONTAINER_RUNNING"}}), 0);
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
