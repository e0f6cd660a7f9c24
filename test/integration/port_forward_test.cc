// PortForward into VM Pods over SPDY and WebSocket: through kvcri-agent to the guest's 127.0.0.1, and to the Pod IP when the agent is stopped; 50 connections of 10 MiB each way.
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "test/client/exec_helpers.h"

namespace kvcri::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr Transport kTransports[] = {Transport::kSpdy, Transport::kWebSocket};
constexpr int kConnections = 50;
constexpr size_t kBytesEachWay = 10 << 20;
// Guest services (test/guest/README.md): kvcri-echo on 127.0.0.1 and on 0.0.0.0.
constexpr uint16_t kLocalhostEcho = 7000;
constexpr uint16_t kAnyAddressEcho = 7001;
constexpr uint16_t kClosedPort = 7999;

// One daemon, two VM Pods booted at once: "agent" runs kvcri-agent, "podip"
// has it stopped (kvcri.agent=0), so port-forward must dial the Pod IP.
class PortForwardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RequireIntegrationEnvironment(true);
    daemon_ = std::make_unique<TestDaemon>();
    daemon_->Start();
    ImportGuestImages(*daemon_);
    pods_ = {VmPod{.name = "pf-agent"}, VmPod{.name = "pf-podip", .cmdline_extra = "kvcri.agent=0"}};
    ready_ = StartVmPods(*daemon_, pods_);
    // Until kvcri-agent has connected, a forward would take the Pod IP path
    // (where 127.0.0.1:7000 is out of reach): wait for the agent to serve.
    if (ready_) {
      absl::Status s = WaitForExec(*daemon_, pods_[0].container_id, std::chrono::seconds(120));
      EXPECT_TRUE(s.ok()) << "kvcri-agent never served ExecSync: " << s;
      ready_ = s.ok();
    }
    // The Pod IP path needs the guest's echo service up, which comes after READY.
    if (ready_) HttpGetUntil(pods_[1].ip, 8080, "/index.html", "kubevirt-cri-guest");
  }
  static void TearDownTestSuite() {
    RemoveVmPods(*daemon_, pods_);
    daemon_.reset();
  }
  void SetUp() override { ASSERT_TRUE(ready_) << "the suite's VM Pods did not start"; }

  static TestDaemon& d() { return *daemon_; }
  static const VmPod& agent_pod() { return pods_[0]; }
  static const VmPod& podip_pod() { return pods_[1]; }

  // `n` concurrent echo round trips to `port` of `pod` over `t`. SPDY: one
  // connection (one URL), a stream pair per forwarded connection; WebSocket:
  // one URL and connection per forwarded connection, as kubectl does.
  static absl::Status Echo(Transport t, const VmPod& pod, uint16_t port, int n, size_t bytes) {
    if (t == Transport::kSpdy) {
      absl::StatusOr<std::string> url = PortForwardUrl(d(), pod.pod_id, {});
      if (!url.ok()) return url.status();
      absl::StatusOr<std::unique_ptr<PortForwardClient>> pf = OpenSpdyPortForward(*url);
      if (!pf.ok()) return pf.status();
      return ConcurrentEcho(n, bytes, [&](int) { return (*pf)->Connect(port); });
    }
    std::vector<std::unique_ptr<PortForwardClient>> clients;
    return ConcurrentEcho(n, bytes, [&](int) -> absl::StatusOr<std::unique_ptr<ForwardedConnection>> {
      absl::StatusOr<std::string> url = PortForwardUrl(d(), pod.pod_id, {port});
      if (!url.ok()) return url.status();
      absl::StatusOr<std::unique_ptr<PortForwardClient>> pf = OpenWebSocketPortForward(*url, {port});
      if (!pf.ok()) return pf.status();
      clients.push_back(std::move(*pf));
      return clients.back()->Connect(port);
    }, HalfClose::kNone);
  }

  // The error a forwarded connection to `port` reports: from Connect, or from
  // the first Read (the error stream/channel).
  static absl::Status FirstError(Transport t, const VmPod& pod, uint16_t port) {
    absl::StatusOr<std::string> url = PortForwardUrl(d(), pod.pod_id, {port});
    if (!url.ok()) return url.status();
    absl::StatusOr<std::unique_ptr<PortForwardClient>> pf =
        t == Transport::kSpdy ? OpenSpdyPortForward(*url) : OpenWebSocketPortForward(*url, {port});
    if (!pf.ok()) return pf.status();
    absl::StatusOr<std::unique_ptr<ForwardedConnection>> c = (*pf)->Connect(port);
    if (!c.ok()) return c.status();
    // May fail once the server gave up on the port: the read below tells why.
    (*c)->Write("hello?\n").IgnoreError();
    char buf[256];
    absl::StatusOr<size_t> n = (*c)->Read(buf, sizeof buf);
    if (!n.ok()) return n.status();
    return *n == 0 ? absl::OkStatus() : absl::InternalError(absl::StrCat("read ", *n, " bytes from a closed port"));
  }

  inline static std::unique_ptr<TestDaemon> daemon_;
  inline static std::vector<VmPod> pods_;
  inline static bool ready_ = false;
};

TEST_F(PortForwardTest, ThroughTheAgentToTheGuestsLocalhost) {
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    const auto t0 = Clock::now();
    absl::Status s = Echo(t, agent_pod(), kLocalhostEcho, kConnections, kBytesEachWay);
    EXPECT_TRUE(s.ok()) << s << "\n" << d().DaemonLog();
    std::cout << TransportName(t) << " via kvcri-agent: " << kConnections << " x " << (kBytesEachWay >> 20)
              << " MiB each way in " << std::chrono::duration<double>(Clock::now() - t0).count() << " s\n";
  }
}

TEST_F(PortForwardTest, ToThePodIpWhenTheAgentIsStopped) {
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    const auto t0 = Clock::now();
    absl::Status s = Echo(t, podip_pod(), kAnyAddressEcho, kConnections, kBytesEachWay);
    EXPECT_TRUE(s.ok()) << s << "\n" << d().DaemonLog();
    std::cout << TransportName(t) << " via the Pod IP: " << kConnections << " x " << (kBytesEachWay >> 20)
              << " MiB each way in " << std::chrono::duration<double>(Clock::now() - t0).count() << " s\n";
  }
}

TEST_F(PortForwardTest, WithoutTheAgentTheGuestsLocalhostIsOutOfReach) {
  // 7000 listens on the guest's 127.0.0.1 only: the Pod IP path is refused,
  // which shows the forward really went to the Pod IP.
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    EXPECT_FALSE(FirstError(t, podip_pod(), kLocalhostEcho).ok());
  }
}

TEST_F(PortForwardTest, AClosedPortIsReportedAndOtherConnectionsCarryOn) {
  for (Transport t : kTransports) {
    SCOPED_TRACE(TransportName(t));
    for (const VmPod* pod : {&agent_pod(), &podip_pod()}) {
      SCOPED_TRACE(pod->name);
      absl::Status s = FirstError(t, *pod, kClosedPort);
      EXPECT_FALSE(s.ok()) << "a forward to closed port " << kClosedPort << " looked like a clean close";
      EXPECT_TRUE(Echo(t, *pod, pod == &agent_pod() ? kLocalhostEcho : kAnyAddressEcho, 2, 64 << 10).ok());
    }
  }
}

TEST_F(PortForwardTest, ManyConnectionsShareOneSpdyConnectionWhileOneFails) {
  // One SPDY connection: a failing forward's error stream must not disturb
  // the data streams of its neighbours.
  absl::StatusOr<std::string> url = PortForwardUrl(d(), agent_pod().pod_id, {});
  ASSERT_TRUE(url.ok()) << url.status();
  absl::StatusOr<std::unique_ptr<PortForwardClient>> pf = OpenSpdyPortForward(*url);
  ASSERT_TRUE(pf.ok()) << pf.status();
  absl::Status s = ConcurrentEcho(8, 1 << 20, [&](int i) -> absl::StatusOr<std::unique_ptr<ForwardedConnection>> {
    if (i == 4) {
      absl::StatusOr<std::unique_ptr<ForwardedConnection>> bad = (*pf)->Connect(kClosedPort);
      if (bad.ok()) {
        char buf[16];
        EXPECT_FALSE((*bad)->Read(buf, sizeof buf).ok());
      }
    }
    return (*pf)->Connect(kLocalhostEcho);
  });
  EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace kvcri::testing
