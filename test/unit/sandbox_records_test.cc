// Sandbox and container records: JSON round trips, versions, refused records.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sandbox/records.h"

namespace kvcri::sandbox {
namespace {

using ::testing::HasSubstr;

constexpr char kSandboxId[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
constexpr char kContainerId[] = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

SandboxRecord FullSandbox() {
  SandboxRecord r;
  r.id = kSandboxId;
  r.metadata = {"web", "default", "uid-1", 3};
  r.runtime_handler = "kubevirt";
  r.state = SandboxState::kReady;
  r.phase = Phase::kReady;
  r.created_at = 1'700'000'000'123'456'789;
  r.labels = {{"app", "web"}, {"tier", "front"}};
  r.annotations = {{"note", "quote \" and ünïcödé"}};
  r.log_directory = "/var/log/pods/default_web_uid-1";
  r.hostname = "web-0";
  r.netns_path = "/run/kubevirt-cri/netns/x";
  r.dns = {{"10.0.0.10"}, {"default.svc.cluster.local", "svc.cluster.local"}, {"ndots:5"}};
  r.port_mappings = {{Protocol::kTcp, 80, 8080, "127.0.0.1"}, {Protocol::kSctp, 9, 0, ""}};
  r.host_network = false;
  r.cgroup_parent = "/kubepods/burstable/poduid-1";
  r.network = {"10.88.0.5", {"fd00::5"}};
  return r;
}

ContainerRecord FullContainer() {
  ContainerRecord c;
  c.id = kContainerId;
  c.sandbox_id = kSandboxId;
  c.metadata = {"app", 2};
  c.image = "registry.example/vm:1";
  c.image_ref = "sha256:abc";
  c.labels = {{"io.kubernetes.container.name", "app"}};
  c.annotations = {{"a", "b"}};
  c.log_path = "app/2.log";
  c.state = ContainerState::kExited;
  c.phase = Phase::kRemoving;
  c.created_at = 1;
  c.started_at = 2;
  c.finished_at = 3;
  c.exit_code = -1;
  c.reason = "Error";
  c.message = "guest powered off";
  c.domain_name = "kvcri-fedcba98";
  c.overlay_path = "/var/lib/kubevirt-cri/overlays/x.qcow2";
  c.console_path = "/run/kubevirt-cri/console/x.sock";
  c.vcpus = 2;
  c.memory_mib = 1024;
  c.max_vcpus = 4;
  c.max_memory_mib = 2048;
  c.resources = {100000, 150000, 512, 1073741824, "0-1", "0"};
  c.boot = {BootKind::kKernel, "/k/vmlinuz", "/k/initrd", "console=ttyS0", "", ""};
  c.devices = {{"/dev/kvm", "/dev/kvm", "rwm"}};
  c.mounts = {{"/data", "/srv/data", true}, {"/scratch", "/tmp/s", false}};
  return c;
}

TEST(ContainerRecord, KeepsTheResourcesInForceAndTheMaximums) {
  nlohmann::json j = nlohmann::json::parse(FullContainer().ToJson());
  EXPECT_EQ(j["max_vcpus"], 4);
  EXPECT_EQ(j["max_memory_mib"], 2048);
  EXPECT_EQ(j["resources"]["cpu_quota"], 150000);
  EXPECT_EQ(j["resources"]["memory_limit_in_bytes"], 1073741824);
  EXPECT_EQ(j["resources"]["cpuset_cpus"], "0-1");
  // A record written before resizing existed reads with no maximums and no
  // resources: the caller falls back to vcpus and memory_mib.
  j.erase("max_vcpus");
  j.erase("max_memory_mib");
  j.erase("resources");
  absl::StatusOr<ContainerRecord> old = ContainerRecord::FromJson(j.dump());
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->max_vcpus, 0);
  EXPECT_EQ(old->max_memory_mib, 0);
  EXPECT_EQ(old->resources, ContainerLinuxResources{});
  EXPECT_EQ(old->vcpus, 2);
}

TEST(ContainerRecord, KeepsTheFirmwareAndReadsOldRecordsAsBios) {
  ContainerRecord c = FullContainer();
  c.boot = {BootKind::kDisk, "", "", "", "/c/disk.qcow2", "qcow2", "", "uefi-secure", "/ovmf/CODE.ms.fd", "/ovmf/VARS.ms.fd",
            "/c/nvram.fd", "/dev/vdz", true};
  absl::StatusOr<ContainerRecord> back = ContainerRecord::FromJson(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->boot, c.boot);
  // Written before UEFI existed: no firmware fields, which reads as bios (empty).
  nlohmann::json j = nlohmann::json::parse(c.ToJson());
  for (const char* k : {"firmware", "uefi_code", "uefi_vars", "nvram", "tpm"}) j["boot"].erase(k);
  absl::StatusOr<ContainerRecord> old = ContainerRecord::FromJson(j.dump());
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->boot.firmware, "");
  EXPECT_EQ(old->boot.nvram, "");
  EXPECT_FALSE(old->boot.tpm);
}

TEST(SandboxRecord, RoundTripsEveryField) {
  SandboxRecord r = FullSandbox();
  absl::StatusOr<SandboxRecord> back = SandboxRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, r);
}

TEST(SandboxRecord, RoundTripsDefaults) {
  SandboxRecord r;
  r.id = kSandboxId;
  r.metadata = {"n", "ns", "u", 0};
  absl::StatusOr<SandboxRecord> back = SandboxRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, r);
}

TEST(SandboxRecord, WritesVersionAndReadableEnums) {
  nlohmann::json j = nlohmann::json::parse(FullSandbox().ToJson());
  EXPECT_EQ(j["version"], kRecordVersion);
  EXPECT_EQ(j["state"], "ready");
  EXPECT_EQ(j["phase"], "ready");
  EXPECT_EQ(j["port_mappings"][1]["protocol"], "sctp");
  EXPECT_EQ(j["metadata"]["namespace"], "default");
}

TEST(SandboxRecord, LoadErrorIsNeverSerialized) {
  SandboxRecord r = FullSandbox();
  r.load_error = "boom";
  EXPECT_THAT(r.ToJson(), ::testing::Not(HasSubstr("boom")));
  absl::StatusOr<SandboxRecord> back = SandboxRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->load_error, "");
}

TEST(SandboxRecord, RejectsUnknownVersion) {
  nlohmann::json j = nlohmann::json::parse(FullSandbox().ToJson());
  j["version"] = 2;
  absl::StatusOr<SandboxRecord> r = SandboxRecord::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(r.status()), HasSubstr("unsupported version 2"));
}

TEST(SandboxRecord, RejectsMissingVersion) {
  nlohmann::json j = nlohmann::json::parse(FullSandbox().ToJson());
  j.erase("version");
  absl::StatusOr<SandboxRecord> r = SandboxRecord::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Msg(r.status()), HasSubstr("\"version\""));
}

TEST(SandboxRecord, RejectsCorruptJson) {
  std::string text = FullSandbox().ToJson();
  for (std::string bad : {text.substr(0, text.size() / 2), std::string(""), std::string("\0\0\0", 3),
                          std::string("[1,2]"), std::string("null")}) {
    absl::StatusOr<SandboxRecord> r = SandboxRecord::FromJson(bad);
    ASSERT_FALSE(r.ok()) << "accepted: " << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(SandboxRecord, NamesTheFieldOfATypeError) {
  nlohmann::json j = nlohmann::json::parse(FullSandbox().ToJson());
  j["metadata"]["attempt"] = "three";
  absl::StatusOr<SandboxRecord> r = SandboxRecord::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Msg(r.status()), HasSubstr("\"metadata.attempt\" is not an integer"));

  j = nlohmann::json::parse(FullSandbox().ToJson());
  j["port_mappings"][1]["host_port"] = 1LL << 40;
  r = SandboxRecord::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Msg(r.status()), HasSubstr("\"port_mappings[1].host_port\" is out of range"));

  j = nlohmann::json::parse(FullSandbox().ToJson());
  j["labels"]["app"] = 1;
  r = SandboxRecord::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Msg(r.status()), HasSubstr("\"labels\" has a non-string value at \"app\""));
}

TEST(SandboxRecord, RejectsUnknownEnumValue) {
  nlohmann::json j = nlohmann::json::parse(FullSandbox().ToJson());
  j["state"] = "sleepy";
  absl::StatusOr<SandboxRecord> r = SandboxRecord::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Msg(r.status()), HasSubstr("\"state\" has unknown value \"sleepy\""));
}

TEST(SandboxRecord, RejectsMissingRequiredFieldsAndBadId) {
  nlohmann::json j = nlohmann::json::parse(FullSandbox().ToJson());
  j["metadata"].erase("uid");
  absl::StatusOr<SandboxRecord> r = SandboxRecord::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Msg(r.status()), HasSubstr("\"metadata.uid\" is missing"));

  j = nlohmann::json::parse(FullSandbox().ToJson());
  j["id"] = "../../etc";
  r = SandboxRecord::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Msg(r.status()), HasSubstr("lowercase hex"));
}

TEST(SandboxRecord, IgnoresUnknownKeysAndDefaultsMissingOptionalOnes) {
  nlohmann::json j = nlohmann::json::parse(FullSandbox().ToJson());
  j["added_by_a_later_build"] = {1, 2};
  j.erase("hostname");
  absl::StatusOr<SandboxRecord> r = SandboxRecord::FromJson(j.dump());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->hostname, "");
  EXPECT_EQ(r->labels.at("app"), "web");
}

TEST(ContainerRecord, RoundTripsEveryField) {
  ContainerRecord c = FullContainer();
  absl::StatusOr<ContainerRecord> back = ContainerRecord::FromJson(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, c);

  c.boot = {BootKind::kDisk, "", "", "", "/img/disk.qcow2", "qcow2"};
  back = ContainerRecord::FromJson(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, c);

  // A persistent VM: boots from one of its devices, named by container path.
  c.boot = {BootKind::kDevice, "", "", "", "", "", "/dev/vda"};
  back = ContainerRecord::FromJson(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, c);
  EXPECT_EQ(BootKindName(back->boot.kind), "device");
}

TEST(ContainerRecord, RejectsUnknownVersionAndCorruptInput) {
  nlohmann::json j = nlohmann::json::parse(FullContainer().ToJson());
  j["version"] = 0;
  absl::StatusOr<ContainerRecord> r = ContainerRecord::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Msg(r.status()), HasSubstr("container record has unsupported version 0"));

  r = ContainerRecord::FromJson("{\"version\":1,");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Msg(r.status()), HasSubstr("not valid JSON"));
}

TEST(ContainerRecord, RejectsBadSandboxIdAndNames) {
  nlohmann::json j = nlohmann::json::parse(FullContainer().ToJson());
  j["sandbox_id"] = "ABC";
  absl::StatusOr<ContainerRecord> r = ContainerRecord::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Msg(r.status()), HasSubstr("\"sandbox_id\""));

  j = nlohmann::json::parse(FullContainer().ToJson());
  j["mounts"][0]["readonly"] = "yes";
  r = ContainerRecord::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Msg(r.status()), HasSubstr("\"mounts[0].readonly\" is not a boolean"));
}

TEST(Names, FollowCriConventions) {
  EXPECT_EQ(SandboxName({"web", "default", "uid-1", 3}), "web_default_uid-1_3");
  EXPECT_EQ(ContainerName({"app", 0}), "app_0");
  EXPECT_TRUE(IsValidId(kSandboxId));
  EXPECT_FALSE(IsValidId(std::string(kSandboxId).substr(1)));
  EXPECT_FALSE(IsValidId(std::string(63, 'a') + "G"));
}

}  // namespace
}  // namespace kvcri::sandbox
