// The real daemon binary on a private socket: Version, Status, UNIMPLEMENTED
// answers, socket handling and restarts.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "runtime/accelerator.h"
#include "test/client/test_daemon.h"

namespace kvcri::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kBridgeConflist[] = R"({
  "cniVersion": "1.0.0", "name": "test-net",
  "plugins": [{"type": "bridge", "bridge": "kvcri-t0", "ipam": {"type": "host-local", "subnet": "10.250.0.0/24"}}]
})";

const pb::RuntimeCondition* FindCondition(const pb::StatusResponse& resp, const std::string& type) {
  for (const auto& c : resp.status().conditions()) {
    if (c.type() == type) return &c;
  }
  return nullptr;
}

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override { RequireIntegrationEnvironment(/*need_guest_images=*/false); }
};

TEST_F(DaemonTest, VersionNamesRuntimeAndApi) {
  TestDaemon d;
  d.Start();
  pb::VersionResponse resp;
  ASSERT_TRUE(d.runtime().Version(Ctx().get(), pb::VersionRequest(), &resp).ok());
  EXPECT_EQ(resp.runtime_name(), "kubevirt-cri");
  EXPECT_EQ(resp.runtime_api_version(), "v1");
  EXPECT_EQ(resp.version(), "0.1.0");
  EXPECT_FALSE(resp.runtime_version().empty());
}

TEST_F(DaemonTest, StatusIsRuntimeReadyWithTcgAndNetworkNotReadyWithoutCniConfig) {
  TestDaemon::Options opts;
  opts.pod_network = false;
  TestDaemon d(opts);
  d.Start();
  pb::StatusRequest req;
  req.set_verbose(true);
  pb::StatusResponse resp;
  ASSERT_TRUE(d.runtime().Status(Ctx().get(), req, &resp).ok());
  const pb::RuntimeCondition* runtime = FindCondition(resp, "RuntimeReady");
  ASSERT_NE(runtime, nullptr);
  EXPECT_TRUE(runtime->status()) << runtime->reason() << ": " << runtime->message() << "\n" << d.DaemonLog();
  const pb::RuntimeCondition* network = FindCondition(resp, "NetworkReady");
  ASSERT_NE(network, nullptr);
  EXPECT_FALSE(network->status());
  EXPECT_EQ(network->reason(), "NetworkPluginNotReady");
  EXPECT_THAT(network->message(), HasSubstr(d.cni_dir().string()));
  EXPECT_THAT(network->message(), HasSubstr("README.md \"First VM\""));

  ASSERT_TRUE(resp.info().count("kubevirt-cri"));
  nlohmann::json info = nlohmann::json::parse(resp.info().at("kubevirt-cri"));
  std::string accel = info["accelerator"];
  // This machine's /dev/kvm (kvm_pvm) cannot run ordinary guests; hosts with
  // kvm_intel/kvm_amd legitimately pick kvm.
  bool real_kvm = std::filesystem::exists("/sys/module/kvm_intel") || std::filesystem::exists("/sys/module/kvm_amd");
  EXPECT_EQ(accel, real_kvm ? "kvm" : "tcg");
  EXPECT_FALSE(info["acceleratorReason"].get<std::string>().empty());
  if (std::filesystem::exists("/sys/module/kvm_pvm") && !real_kvm) {
    EXPECT_THAT(info["acceleratorReason"].get<std::string>(), HasSubstr("kvm_pvm"));
    EXPECT_THAT(d.DaemonLog(), HasSubstr("kvm_pvm"));
  }
  EXPECT_THAT(info["libvirtUri"].get<std::string>(), HasSubstr("qemu:///embed?root="));
}

TEST_F(DaemonTest, NetworkReadyOnceAConflistExists) {
  TestDaemon::Options opts;
  opts.cni_conflist = kBridgeConflist;
  TestDaemon d(opts);
  d.Start();
  pb::StatusResponse resp;
  ASSERT_TRUE(d.runtime().Status(Ctx().get(), pb::StatusRequest(), &resp).ok());
  const pb::RuntimeCondition* network = FindCondition(resp, "NetworkReady");
  ASSERT_NE(network, nullptr);
  EXPECT_TRUE(network->status()) << network->message();
}

TEST_F(DaemonTest, BrokenConflistIsReportedInNetworkCondition) {
  TestDaemon::Options opts;
  opts.cni_conflist = "{ not json";
  TestDaemon d(opts);
  d.Start();
  pb::StatusResponse resp;
  ASSERT_TRUE(d.runtime().Status(Ctx().get(), pb::StatusRequest(), &resp).ok());
  const pb::RuntimeCondition* network = FindCondition(resp, "NetworkReady");
  ASSERT_NE(network, nullptr);
  EXPECT_FALSE(network->status());
  EXPECT_THAT(network->message(), HasSubstr("10-test.conflist"));
}

// Forcing KVM: RuntimeReady follows what this host can do, so the test runs
// the same way on a host with usable KVM (ready) and on one without (refused
// with NoAccelerator naming kvm), such as our PVM build machines.
TEST_F(DaemonTest, ForcedKvmIsRuntimeReadyExactlyWhenTheHostRunsKvmGuests) {
  const absl::StatusOr<runtime::AccelChoice> host = runtime::ChooseAccelerator(config::Accelerator::kKvm, runtime::HostProbe());
  TestDaemon::Options opts;
  opts.extra_config = "[libvirt]\naccelerator = \"kvm\"\n";
  TestDaemon d(opts);
  d.Start();
  pb::StatusResponse resp;
  ASSERT_TRUE(d.runtime().Status(Ctx().get(), pb::StatusRequest(), &resp).ok());
  const pb::RuntimeCondition* runtime = FindCondition(resp, "RuntimeReady");
  ASSERT_NE(runtime, nullptr);
  if (host.ok()) {
    EXPECT_TRUE(runtime->status()) << runtime->reason() << ": " << runtime->message();
  } else {
    EXPECT_FALSE(runtime->status());
    EXPECT_EQ(runtime->reason(), "NoAccelerator");
    EXPECT_THAT(runtime->message(), HasSubstr("kvm"));
  }
}

TEST_F(DaemonTest, UnservedRpcsAnswerUnimplementedWithTheirName) {
  TestDaemon d;
  d.Start();
  pb::CheckpointContainerResponse cp;
  grpc::Status s = d.runtime().CheckpointContainer(Ctx().get(), pb::CheckpointContainerRequest(), &cp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(s.error_message(), HasSubstr("CheckpointContainer"));
}

TEST_F(DaemonTest, SocketIsMode0660) {
  TestDaemon d;
  d.Start();
  struct stat st;
  ASSERT_EQ(::stat(d.socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST_F(DaemonTest, RestartAfterKill9RemovesStaleSocket) {
  TestDaemon d;
  d.Start();
  d.Kill9();
  ASSERT_TRUE(std::filesystem::exists(d.socket())) << "kill -9 should leave the socket file behind";
  d.Start();
  pb::VersionResponse resp;
  EXPECT_TRUE(d.runtime().Version(Ctx().get(), pb::VersionRequest(), &resp).ok());
  EXPECT_THAT(d.DaemonLog(), HasSubstr("removing stale socket"));
}

TEST_F(DaemonTest, SigtermExitsCleanlyAndRemovesSocket) {
  TestDaemon d;
  d.Start();
  int status = d.Terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << "\n" << d.DaemonLog();
  EXPECT_FALSE(std::filesystem::exists(d.socket()));
  d.Start();  // and it comes back on the same paths
}

TEST_F(DaemonTest, SecondDaemonOnALiveSocketRefusesToStart) {
  TestDaemon d;
  d.Start();
  std::string out;
  // Same flags, foreground daemon: must fail fast instead of stealing the socket.
  int rc = d.RunSubcommand({}, &out);
  EXPECT_NE(rc, 0);
  EXPECT_THAT(out, HasSubstr("already running"));
  pb::VersionResponse resp;
  EXPECT_TRUE(d.runtime().Version(Ctx().get(), pb::VersionRequest(), &resp).ok());
}

TEST_F(DaemonTest, NonSocketAtListenPathIsLeftAlone) {
  TestDaemon d;
  std::ofstream(d.socket()) << "precious";
  std::string out;
  int rc = d.RunSubcommand({}, &out);
  EXPECT_NE(rc, 0);
  EXPECT_THAT(out, HasSubstr("not a socket"));
  std::ifstream in(d.socket());
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST_F(DaemonTest, BadConfigFailsWithTheKeyNamed) {
  TestDaemon::Options opts;
  opts.extra_config = "bogus_key = 1\n";
  TestDaemon d(opts);
  std::string out;
  int rc = d.RunSubcommand({}, &out);
  EXPECT_EQ(rc, 2);
  EXPECT_THAT(out, HasSubstr("bogus_key"));
}

TEST_F(DaemonTest, LibvirtdUrisAreRefusedAtStartUpSayingWhy) {
  // libvirtd forks QEMU in its own network namespace: the Pod's tap is not
  // there, so such a URI is refused before anything is created.
  TestDaemon::Options opts;
  opts.extra_config = "[libvirt]\nuri = \"qemu:///system\"\n";
  TestDaemon d(opts);
  std::string out;
  int rc = d.RunSubcommand({}, &out);
  EXPECT_NE(rc, 0);
  EXPECT_THAT(out, HasSubstr("qemu:///system"));
  EXPECT_THAT(out, HasSubstr("network namespace"));
  EXPECT_FALSE(std::filesystem::exists(d.socket()));
}

}  // namespace
}  // namespace kvcri::testing
