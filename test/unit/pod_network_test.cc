// cni::PodNetwork's ordering and rollback, and cri's record <-> network
// translation, with fakes.
#include "cni/pod_network.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cri/pod_network_spec.h"
#include "test/fakes/fake_network.h"

namespace kvcri::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class PodNetworkTest : public ::testing::Test {
 protected:
  PodNetworkTest() : cni_(&log_), tap_(&log_), dhcp_(&log_), net_(&cni_, &tap_, &dhcp_) {
    // /proc/self/ns/net stands in for the Pod netns (lo is already up there).
    spec_.container_id = "pod1";
    spec_.netns = "/proc/self/ns/net";
    guest_.dns_servers = {"10.96.0.10"};
    guest_.searches = {"svc.cluster.local"};
    guest_.hostname = "web-0";
  }

  NetworkCallLog log_;
  FakeCniRunner cni_;
  FakeTapWiring tap_;
  FakeDhcp dhcp_;
  cni::PodNetwork net_;
  cni::AttachSpec spec_;
  cni::GuestDhcpInfo guest_;
};

TEST_F(PodNetworkTest, AttachRunsAddThenWiresThenServesDhcp) {
  absl::StatusOr<std::vector<cni::WiredNic>> nics = net_.Attach(spec_, guest_);
  ASSERT_TRUE(nics.ok()) << nics.status();
  ASSERT_EQ(nics->size(), 1u);
  EXPECT_EQ(nics->front().tap_name, "tap0");
  EXPECT_THAT(log_.Take(), ElementsAre("cni ADD pod1", "wire /proc/self/ns/net", "dhcp add pod1"));
  absl::MutexLock l(&dhcp_.mu);
  const cni::Lease& lease = dhcp_.leases.at("pod1");
  EXPECT_EQ(lease.ip, "10.0.0.2");
  EXPECT_EQ(lease.prefix_len, 24);
  EXPECT_EQ(lease.gateway, "10.0.0.1");
  EXPECT_EQ(lease.mac, "0a:58:0a:00:00:02");
  EXPECT_THAT(lease.dns, ElementsAre("10.96.0.10"));
  EXPECT_THAT(lease.searches, ElementsAre("svc.cluster.local"));
  EXPECT_EQ(lease.hostname, "web-0");
  EXPECT_EQ(lease.mtu, 1450);
}

TEST_F(PodNetworkTest, ConfigProblemsOfAddBecomeFailedPrecondition) {
  cni_.add_error = absl::NotFoundError("no network config found in /etc/cni/net.d");
  absl::StatusOr<std::vector<cni::WiredNic>> nic = net_.Attach(spec_, guest_);
  EXPECT_EQ(nic.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(nic.status().message()), HasSubstr("CNI ADD"));
  EXPECT_THAT(std::string(nic.status().message()), HasSubstr("/etc/cni/net.d"));
  // ADD rolls itself back; nothing else ran.
  EXPECT_THAT(log_.Take(), ElementsAre("cni ADD pod1"));
}

TEST_F(PodNetworkTest, PluginErrorKeepsItsCode) {
  cni_.add_error = absl::InternalError("plugin \"bridge\" failed: no IP addresses available");
  EXPECT_EQ(net_.Attach(spec_, guest_).status().code(), absl::StatusCode::kInternal);
}

TEST_F(PodNetworkTest, WiringFailureDelsTheAttachment) {
  tap_.wire_error = absl::NotFoundError("interface \"eth0\" not found");
  absl::StatusOr<std::vector<cni::WiredNic>> nic = net_.Attach(spec_, guest_);
  EXPECT_EQ(nic.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(nic.status().message()), HasSubstr("wiring the VM tap device"));
  EXPECT_THAT(log_.Take(), ElementsAre("cni ADD pod1", "wire /proc/self/ns/net", "dhcp remove pod1",
                                       "unwire /proc/self/ns/net", "cni DEL pod1"));
  absl::MutexLock l(&cni_.mu);
  EXPECT_TRUE(cni_.allocated.empty());
}

TEST_F(PodNetworkTest, DhcpFailureUnwiresAndDels) {
  dhcp_.add_error = absl::NotFoundError("tap0 missing");
  EXPECT_FALSE(net_.Attach(spec_, guest_).ok());
  EXPECT_THAT(log_.Take(), ElementsAre("cni ADD pod1", "wire /proc/self/ns/net", "dhcp add pod1",
                                       "dhcp remove pod1", "unwire /proc/self/ns/net", "cni DEL pod1"));
  absl::MutexLock l(&tap_.mu);
  EXPECT_TRUE(tap_.wired.empty());
}

TEST_F(PodNetworkTest, APrimaryInterfaceWithoutAddressIsRefusedAndRolledBack) {
  tap_.nic.addresses.clear();
  absl::StatusOr<std::vector<cni::WiredNic>> nic = net_.Attach(spec_, guest_);
  EXPECT_EQ(nic.status().code(), absl::StatusCode::kFailedPrecondition);
  absl::MutexLock l(&cni_.mu);
  EXPECT_TRUE(cni_.allocated.empty());
}

// An IPv6-only Pod network: served by RA + DHCPv6 (cni/ipv6_responder.h).
TEST_F(PodNetworkTest, AnIpv6OnlyPrimaryInterfaceIsServed) {
  tap_.nic.addresses = {{"fd00::2", 64}};
  absl::StatusOr<std::vector<cni::WiredNic>> nic = net_.Attach(spec_, guest_);
  ASSERT_TRUE(nic.ok()) << nic.status();
  EXPECT_THAT(log_.Take(), ::testing::Contains("dhcp add pod1"));
}

TEST_F(PodNetworkTest, DetachGoesOnPastAFailingStepAndReportsIt) {
  ASSERT_TRUE(net_.Attach(spec_, guest_).ok());
  log_.Take();
  cni_.del_error = absl::InternalError("portmap DEL failed");
  absl::Status s = net_.Detach(spec_);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(log_.Take(), ElementsAre("dhcp remove pod1", "unwire /proc/self/ns/net", "cni DEL pod1"));
  cni_.del_error = absl::OkStatus();
  EXPECT_TRUE(net_.Detach(spec_).ok());  // idempotent retry
}

TEST_F(PodNetworkTest, RestoreRewiresAndServesAgainWithoutCni) {
  ASSERT_TRUE(net_.Restore(spec_, guest_, {"eth0"}).ok());
  EXPECT_THAT(log_.Take(), ElementsAre("wire /proc/self/ns/net", "dhcp add pod1"));
}

// Multus-style: eth0 (the Pod network, default route), net1 (a second
// bridge with its own subnet, no default route) and net2 (L2 only, no IP).
class MultiNetworkTest : public PodNetworkTest {
 protected:
  MultiNetworkTest() {
    cni_.extra_ifnames = {"net1", "net2"};
    tap_.others["net1"] = {"net1", "", "0a:58:0a:01:00:05", 1400, {{"10.1.0.5", 24}}, "", "", {}};
    tap_.others["net2"] = {"net2", "", "0a:58:0a:02:00:07", 9000, {}, "", "", {}};
  }
};

TEST_F(MultiNetworkTest, EverySandboxInterfaceGetsItsTapInResultOrderAndDhcpWhereItHasIpv4) {
  absl::StatusOr<std::vector<cni::WiredNic>> nics = net_.Attach(spec_, guest_);
  ASSERT_TRUE(nics.ok()) << nics.status();
  ASSERT_EQ(nics->size(), 3u);
  EXPECT_EQ((*nics)[0].cni_ifname, "eth0");
  EXPECT_EQ((*nics)[0].tap_name, "tap0");
  EXPECT_EQ((*nics)[1].cni_ifname, "net1");
  EXPECT_EQ((*nics)[1].tap_name, "tap1");
  EXPECT_EQ((*nics)[1].mac, "0a:58:0a:01:00:05");
  EXPECT_EQ((*nics)[2].tap_name, "tap2");
  EXPECT_THAT(log_.Take(), ElementsAre("cni ADD pod1", "wire /proc/self/ns/net", "dhcp add pod1",
                                       "wire /proc/self/ns/net net1 tap1", "dhcp add pod1 tap1",
                                       "wire /proc/self/ns/net net2 tap2"));  // L2 only: no DHCP
  absl::MutexLock l(&dhcp_.mu);
  ASSERT_EQ(dhcp_.leases.size(), 2u);
  // The default route is eth0's: only its lease names a router.
  EXPECT_EQ(dhcp_.leases.at("pod1").gateway, "10.0.0.1");
  const cni::Lease& net1 = dhcp_.leases.at("pod1 tap1");
  EXPECT_EQ(net1.ip, "10.1.0.5");
  EXPECT_EQ(net1.mac, "0a:58:0a:01:00:05");
  EXPECT_EQ(net1.mtu, 1400);
  EXPECT_TRUE(net1.gateway.empty());
  EXPECT_TRUE(net1.routes.empty());
}

TEST_F(MultiNetworkTest, FailureOnTheSecondInterfaceUndoesEveryTapAndDels) {
  tap_.wire_error = absl::NotFoundError("interface \"net2\" not found");
  tap_.wire_error_ifname = "net2";
  absl::StatusOr<std::vector<cni::WiredNic>> nics = net_.Attach(spec_, guest_);
  EXPECT_EQ(nics.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(nics.status().message()), HasSubstr("\"net2\""));
  std::vector<std::string> calls = log_.Take();
  EXPECT_THAT(std::vector<std::string>(calls.end() - 5, calls.end()),
              ElementsAre("dhcp remove pod1", "unwire /proc/self/ns/net", "unwire /proc/self/ns/net net1 tap1",
                          "unwire /proc/self/ns/net net2 tap2", "cni DEL pod1"));
  absl::MutexLock l(&tap_.mu);
  EXPECT_TRUE(tap_.wired.empty());
  absl::MutexLock l2(&dhcp_.mu);
  EXPECT_TRUE(dhcp_.leases.empty());
}

TEST_F(MultiNetworkTest, DetachUnwiresEveryInterfaceOfTheCachedResult) {
  ASSERT_TRUE(net_.Attach(spec_, guest_).ok());
  log_.Take();
  ASSERT_TRUE(net_.Detach(spec_).ok());
  EXPECT_THAT(log_.Take(),
              ElementsAre("dhcp remove pod1", "unwire /proc/self/ns/net", "unwire /proc/self/ns/net net1 tap1",
                          "unwire /proc/self/ns/net net2 tap2", "cni DEL pod1"));
  absl::MutexLock l(&cni_.mu);
  EXPECT_TRUE(cni_.allocated.empty());
}

TEST_F(MultiNetworkTest, RestoreRewiresTheRecordedInterfacesInOrder) {
  ASSERT_TRUE(net_.Restore(spec_, guest_, {"eth0", "net1", "net2"}).ok());
  EXPECT_THAT(log_.Take(), ElementsAre("wire /proc/self/ns/net", "dhcp add pod1", "wire /proc/self/ns/net net1 tap1",
                                       "dhcp add pod1 tap1", "wire /proc/self/ns/net net2 tap2"));
}

TEST_F(MultiNetworkTest, APrimaryWithoutIpv4IsStillRefused) {
  tap_.nic.addresses = {};
  EXPECT_EQ(net_.Attach(spec_, guest_).status().code(), absl::StatusCode::kFailedPrecondition);
  absl::MutexLock l(&cni_.mu);
  EXPECT_TRUE(cni_.allocated.empty());
}

sandbox::SandboxRecord Sandbox() {
  sandbox::SandboxRecord sb;
  sb.id = std::string(64, 'a');
  sb.metadata = {"web", "prod", "uid-7", 0};
  sb.netns_path = "/run/kubevirt-cri/netns/x";
  sb.hostname = "web-0";
  sb.dns = {{"10.96.0.10"}, {"prod.svc.cluster.local"}, {"ndots:5"}};
  sb.port_mappings = {{sandbox::Protocol::kTcp, 8080, 30080, "127.0.0.1"},
                      {sandbox::Protocol::kUdp, 53, 0, ""}};  // no host port: not for CNI
  return sb;
}

TEST(PodNetworkSpecTest, AttachSpecCarriesIdsPortsDnsAndBandwidth) {
  sandbox::SandboxRecord sb = Sandbox();
  sb.annotations["kubernetes.io/ingress-bandwidth"] = "10M";
  absl::StatusOr<cni::AttachSpec> spec = cri::AttachSpecFor(sb);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->container_id, sb.id);
  EXPECT_EQ(spec->netns, sb.netns_path);
  EXPECT_EQ(spec->pod_namespace, "prod");
  EXPECT_EQ(spec->pod_name, "web");
  EXPECT_EQ(spec->pod_uid, "uid-7");
  ASSERT_EQ(spec->port_mappings.size(), 1u);
  EXPECT_EQ(spec->port_mappings[0], (cni::CniPortMapping{30080, 8080, "tcp", "127.0.0.1"}));
  EXPECT_THAT(spec->dns.servers, ElementsAre("10.96.0.10"));
  EXPECT_THAT(spec->dns.options, ElementsAre("ndots:5"));
  EXPECT_EQ(spec->bandwidth.ingress_rate, 10'000'000u);
  // Same record, same spec: DEL sees what ADD saw.
  EXPECT_EQ(*cri::AttachSpecFor(sb), *spec);
}

TEST(PodNetworkSpecTest, BadBandwidthAnnotationIsInvalidArgumentNamingIt) {
  sandbox::SandboxRecord sb = Sandbox();
  sb.annotations["kubernetes.io/egress-bandwidth"] = "lots";
  absl::StatusOr<cni::AttachSpec> spec = cri::AttachSpecFor(sb);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("kubernetes.io/egress-bandwidth"));
}

TEST(PodNetworkSpecTest, NicRoundTripsThroughTheRecordAndGivesPodIps) {
  cni::WiredNic nic{"eth0", "tap0", "0a:58:0a:00:00:02", 1450, {{"10.0.0.2", 24}, {"fd00::2", 64}},
                    "10.0.0.1", "fd00::1", {{"0.0.0.0/0", "10.0.0.1"}, {"10.1.0.0/16", "10.0.0.254"}}};
  sandbox::NetworkStatus status = cri::NetworkStatusFrom({nic});
  EXPECT_EQ(status.ip, "10.0.0.2");
  EXPECT_THAT(status.additional_ips, ElementsAre("fd00::2"));
  ASSERT_EQ(status.nics.size(), 1u);
  EXPECT_EQ(status.nics[0].addresses, (std::vector<std::string>{"10.0.0.2/24", "fd00::2/64"}));
  EXPECT_EQ(cri::WiredNicFrom(status.nics[0]), nic);

  // And through the record's JSON.
  sandbox::SandboxRecord sb = Sandbox();
  sb.network = status;
  absl::StatusOr<sandbox::SandboxRecord> back = sandbox::SandboxRecord::FromJson(sb.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->network, status);
}

TEST(PodNetworkSpecTest, SeedHasInstanceIdHostnameUserDataAndNetworkConfig) {
  sandbox::SandboxRecord sb = Sandbox();
  runtime::CloudInitSeed seed = cri::SeedFor(sb);
  EXPECT_EQ(seed.instance_id, "uid-7");
  EXPECT_EQ(seed.hostname, "web-0");
  EXPECT_TRUE(seed.user_data.empty());
  EXPECT_TRUE(seed.network_config.empty());  // no NIC wired

  sb.annotations[std::string(runtime::kUserDataAnnotation)] = "#cloud-config\npackages: [nginx]\n";
  sb.network = cri::NetworkStatusFrom(
      {cni::WiredNic{"eth0", "tap0", "0a:58:0a:00:00:02", 1450, {{"10.0.0.2", 24}}, "10.0.0.1", "", {}}});
  seed = cri::SeedFor(sb);
  EXPECT_EQ(seed.user_data, "#cloud-config\npackages: [nginx]\n");
  EXPECT_THAT(seed.network_config, HasSubstr("10.0.0.2/24"));
  EXPECT_THAT(seed.network_config, HasSubstr("0a:58:0a:00:00:02"));
  EXPECT_THAT(seed.network_config, HasSubstr("10.96.0.10"));
}

TEST(PodNetworkSpecTest, PrimaryIpsComeFirstThenTheOtherNetworks) {
  std::vector<cni::WiredNic> nics = {
      {"net1", "tap0", "0a:58:0a:01:00:05", 1500, {{"10.1.0.5", 24}}, "", "", {}},
      {"eth0", "tap1", "0a:58:0a:00:00:02", 1450, {{"10.0.0.2", 24}, {"fd00::2", 64}}, "10.0.0.1", "", {}},
      {"net2", "tap2", "0a:58:0a:02:00:07", 1500, {}, "", "", {}},
  };
  sandbox::NetworkStatus status = cri::NetworkStatusFrom(nics, "eth0");
  EXPECT_EQ(status.ip, "10.0.0.2");
  EXPECT_THAT(status.additional_ips, ElementsAre("fd00::2", "10.1.0.5"));
  ASSERT_EQ(status.nics.size(), 3u);  // result order kept
  EXPECT_EQ(status.nics[0].cni_ifname, "net1");

  sandbox::SandboxRecord sb = Sandbox();
  sb.network = status;
  absl::StatusOr<sandbox::SandboxRecord> back = sandbox::SandboxRecord::FromJson(sb.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->network, status);

  // Every NIC is in the network-config, matched by its MAC; the L2-only one
  // without addresses.
  runtime::CloudInitSeed seed = cri::SeedFor(sb);
  EXPECT_THAT(seed.network_config, HasSubstr("  net1:\n    match:\n      macaddress: \"0a:58:0a:01:00:05\""));
  EXPECT_THAT(seed.network_config, HasSubstr("  eth0:\n    match:\n      macaddress: \"0a:58:0a:00:00:02\""));
  EXPECT_THAT(seed.network_config,
              HasSubstr("  net2:\n    match:\n      macaddress: \"0a:58:0a:02:00:07\"\n    set-name: \"net2\"\n"
                        "    mtu: 1500\n"));
}

TEST(PodNetworkSpecTest, RecordWithOnlyTheSingleNicOfEarlierBuildsReadsAsOneNic) {
  sandbox::SandboxRecord sb = Sandbox();
  sb.network = cri::NetworkStatusFrom(
      {cni::WiredNic{"eth0", "tap0", "0a:58:0a:00:00:02", 1450, {{"10.0.0.2", 24}}, "10.0.0.1", "", {}}});
  nlohmann::json j = nlohmann::json::parse(sb.ToJson());
  EXPECT_EQ(j["network"]["nic"]["tap_name"], "tap0");  // still written for earlier builds
  j["network"].erase("nics");
  absl::StatusOr<sandbox::SandboxRecord> back = sandbox::SandboxRecord::FromJson(j.dump());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->network, sb.network);
}

}  // namespace
}  // namespace kvcri::testing
