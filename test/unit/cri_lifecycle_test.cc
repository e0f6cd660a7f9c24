// cri/ orchestration with fakes: rollback, idempotency, recovery.
#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <sys/stat.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <regex>
#include <string>
#include <vector>

#include "test/fakes/cri_harness.h"
#include "test/fakes/shell.h"

namespace kvcri::cri {
namespace {

using ::testing::HasSubstr;

class CriLifecycleTest : public CriHarness {
 protected:
  // Whether the fake's Resume() leaves a VM paused on a host I/O error.
  void SetIoErrorPersists(bool persists) {
    absl::MutexLock l(&hv_.mu);
    hv_.io_error_persists = persists;
  }
  // QEMU paused `domain` because a write found the host file system full,
  // and a resume does not help until SetIoErrorPersists(false).
  void PauseOnHostIoError(const std::string& domain) {
    SetIoErrorPersists(true);
    hv_.SetStatus(domain, {runtime::VmPhase::kPaused, 0, runtime::kIoErrorReason, "vda: no space left on the host"});
  }
};

TEST_F(CriLifecycleTest, RuntimeConfigAnswersTheConfiguredCgroupDriver) {
  for (const auto& [driver, want] : {std::pair{"systemd", pb::SYSTEMD}, std::pair{"cgroupfs", pb::CGROUPFS}}) {
    config_.runtime.cgroup_driver = driver;
    pb::RuntimeConfigRequest req;
    pb::RuntimeConfigResponse resp;
    grpc::Status s = service_->RuntimeConfig(nullptr, &req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.linux().cgroup_driver(), want) << driver;
  }
}

TEST_F(CriLifecycleTest, RunPodSandboxRemovesRecordAndNameWhenNetnsFails) {
  {
    absl::MutexLock l(&netns_.mu);
    netns_.create_error = absl::PermissionDeniedError("unshare: operation not permitted");
  }
  std::string id;
  grpc::Status s = RunPod("web", &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(store_->SandboxCount(), 0u);
  // The name is free again.
  {
    absl::MutexLock l(&netns_.mu);
    netns_.create_error = absl::OkStatus();
  }
  ASSERT_TRUE(RunPod("web", &id).ok());
  EXPECT_EQ(store_->SandboxCount(), 1u);
}

TEST_F(CriLifecycleTest, SameNameWithAnotherConfigIsAlreadyExists) {
  std::string a;
  ASSERT_TRUE(RunPod("web", &a).ok());
  pb::RunPodSandboxRequest req;
  *req.mutable_config() = PodConfig("web");
  (*req.mutable_config()->mutable_labels())["app"] = "other";
  req.set_runtime_handler("kubevirt");
  pb::RunPodSandboxResponse resp;
  grpc::Status s = service_->RunPodSandbox(nullptr, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(), HasSubstr(a));
}

TEST_F(CriLifecycleTest, RetryOfAFinishedRunPodSandboxReturnsTheSameSandbox) {
  std::string a, b;
  ASSERT_TRUE(RunPod("web", &a).ok());
  ASSERT_TRUE(RunPod("web", &b).ok());
  EXPECT_EQ(a, b);
  EXPECT_EQ(store_->SandboxCount(), 1u);
  std::vector<std::string> calls = net_log_.Take();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "cni ADD " + a), 1);
}

// Names and namespaces follow Kubernetes' rules at RunPodSandbox and
// CreateContainer: nothing reaches CNI_ARGS (a ';' or '=' would inject IP=),
// a path or the VM's definition, and the error names the field.
TEST_F(CriLifecycleTest, MetadataOutsideKubernetesRulesIsRefusedAtTheFirstCallNamingTheField) {
  struct Bad {
    std::string field;
    std::function<void(pb::PodSandboxConfig*)> edit;
  };
  const std::vector<Bad> bad = {
      {"config.metadata.name", [](auto* c) { c->mutable_metadata()->set_name("web;IP=10.0.0.99"); }},
      {"config.metadata.name", [](auto* c) { c->mutable_metadata()->set_name("web=x"); }},
      {"config.metadata.name", [](auto* c) { c->mutable_metadata()->set_name("Web"); }},
      {"config.metadata.name", [](auto* c) { c->mutable_metadata()->set_name("web\n"); }},
      {"config.metadata.name", [](auto* c) { c->mutable_metadata()->set_name("-web"); }},
      {"config.metadata.name", [](auto* c) { c->mutable_metadata()->set_name("web..x"); }},
      {"config.metadata.name", [](auto* c) { c->mutable_metadata()->set_name(std::string(254, 'a')); }},
      {"config.metadata.namespace", [](auto* c) { c->mutable_metadata()->set_namespace_("ns;IP=1"); }},
      {"config.metadata.namespace", [](auto* c) { c->mutable_metadata()->set_namespace_("kube.system"); }},
      {"config.metadata.namespace", [](auto* c) { c->mutable_metadata()->set_namespace_(std::string(64, 'n')); }},
      {"config.metadata.uid", [](auto* c) { c->mutable_metadata()->set_uid("u=1;IP=10.0.0.99"); }},
      {"config.metadata.uid", [](auto* c) { c->mutable_metadata()->set_uid("u/1"); }},
      {"config.hostname", [](auto* c) { c->set_hostname("web\x1b[2J"); }},
      {"config.log_directory", [](auto* c) { c->set_log_directory("/var/log/pods/a\nb"); }},
      {"config.annotations[\"kubevirt-cri.io/kernel-cmdline\"]",
       [](auto* c) { (*c->mutable_annotations())["kubevirt-cri.io/kernel-cmdline"] = "console=ttyS0\n"; }},
      {"config.linux.sysctls[\"../../etc/passwd\"]",
       [](auto* c) { (*c->mutable_linux()->mutable_sysctls())["../../etc/passwd"] = "x"; }},
      {"config.linux.sysctls[\"net.core.somaxconn\"]",
       [](auto* c) { (*c->mutable_linux()->mutable_sysctls())["net.core.somaxconn"] = "1024\nkernel.x=1"; }},
  };
  for (const Bad& b : bad) {
    pb::RunPodSandboxRequest req;
    *req.mutable_config() = PodConfig("web");
    b.edit(req.mutable_config());
    req.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse resp;
    grpc::Status s = service_->RunPodSandbox(nullptr, &req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << b.field;
    EXPECT_THAT(s.error_message(), HasSubstr(b.field)) << s.error_message();
  }
  EXPECT_EQ(store_->SandboxCount(), 0u);
  EXPECT_TRUE(net_log_.Take().empty());

  // What kubelet sends passes: a 253-character subdomain, a 63-character
  // label, a UUID.
  pb::RunPodSandboxRequest ok;
  *ok.mutable_config() = PodConfig("web");
  std::string long_name = "web-1.example";
  long_name += "." + std::string(253 - long_name.size() - 1, 'x');
  ok.mutable_config()->mutable_metadata()->set_name(long_name);
  ok.mutable_config()->mutable_metadata()->set_namespace_(std::string(63, 'n'));
  ok.mutable_config()->mutable_metadata()->set_uid("0b6c1f3e-5a8d-4c1e-9f2a-000000000001");
  ok.set_runtime_handler("kubevirt");
  pb::RunPodSandboxResponse ok_resp;
  grpc::Status s = service_->RunPodSandbox(nullptr, &ok, &ok_resp);
  ASSERT_TRUE(s.ok()) << s.error_message();

  // Container names are DNS labels; control characters in the log path fail
  // at CreateContainer, before anything exists.
  std::string ctr;
  for (const std::string& name : std::vector<std::string>{"VM", "vm_1", "vm.1", "vm;IP=1", std::string(64, 'v')}) {
    grpc::Status c = CreateVm(ok_resp.pod_sandbox_id(), "example.com/vm:1", &ctr, name);
    EXPECT_EQ(c.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
    EXPECT_THAT(c.error_message(), HasSubstr("config.metadata.name")) << c.error_message();
  }
  pb::CreateContainerRequest req;
  req.set_pod_sandbox_id(ok_resp.pod_sandbox_id());
  req.mutable_config()->mutable_metadata()->set_name("vm");
  req.mutable_config()->mutable_image()->set_image("example.com/vm:1");
  req.mutable_config()->set_log_path("vm\r.log");
  pb::CreateContainerResponse resp;
  grpc::Status c = service_->CreateContainer(nullptr, &req, &resp);
  EXPECT_EQ(c.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(c.error_message(), HasSubstr("config.log_path"));
  EXPECT_TRUE(store_->ListContainers([](const sandbox::ContainerRecord&) { return true; }).empty());
  ASSERT_TRUE(CreateVm(ok_resp.pod_sandbox_id(), "example.com/vm:1", &ctr, std::string(63, 'v')).ok());
}

TEST_F(CriLifecycleTest, APlainImageWithoutUnpackedLayersIsFailedPrecondition) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  grpc::Status s = CreateVm(pod, "busybox", &ctr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("busybox"));
  EXPECT_THAT(s.error_message(), HasSubstr("without unpacked layers"));
  EXPECT_TRUE(store_->ListContainers().empty());
}

TEST_F(CriLifecycleTest, APlainImageWithoutTheMicroVmsBootFilesSaysHowToBuildThem) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  grpc::Status s = CreateVm(pod, "busybox-layered", &ctr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("[microvm] kernel"));
  EXPECT_THAT(s.error_message(), HasSubstr("build-microvm.sh"));
  EXPECT_THAT(s.error_message(), HasSubstr("docs/microvm.md"));
  EXPECT_TRUE(store_->ListContainers().empty());
  EXPECT_TRUE(fs::is_empty(config_.root / "containers"));
}

TEST_F(CriLifecycleTest, NetworkNotReadyNamesTheCniDirectoryAndPointsToTheQuickstart) {
  config_.cni.conf_dir = dir_ / "no-cni-here";
  pb::StatusRequest req;
  pb::StatusResponse resp;
  ASSERT_TRUE(service_->Status(nullptr, &req, &resp).ok());
  const pb::RuntimeCondition* network = nullptr;
  for (const pb::RuntimeCondition& c : resp.status().conditions()) {
    if (c.type() == "NetworkReady") network = &c;
  }
  ASSERT_NE(network, nullptr);
  EXPECT_FALSE(network->status());
  EXPECT_EQ(network->reason(), "NetworkPluginNotReady");
  EXPECT_THAT(network->message(), HasSubstr("\"" + config_.cni.conf_dir.string() + "\""));
  EXPECT_THAT(network->message(), HasSubstr("README.md \"First VM\""));
  EXPECT_THAT(network->message(), HasSubstr("scripts/demo.sh"));
}

TEST_F(CriLifecycleTest, FailedStartRemovesDomainAndReportsStartError) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  {
    absl::MutexLock l(&hv_.mu);
    hv_.create_error = absl::InternalError("qemu exploded");
  }
  grpc::Status s = Start(ctr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_FALSE(hv_.Has("kvcri-" + ctr));
  pb::ContainerStatus st = Status(ctr);
  EXPECT_EQ(st.state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(st.reason(), "StartError");
  EXPECT_THAT(st.message(), HasSubstr("qemu exploded"));
}

TEST_F(CriLifecycleTest, KernelCmdlineDefaultsToSerialConsole) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  ASSERT_TRUE(Start(ctr).ok());
  runtime::VmSpec spec = hv_.SpecOf("kvcri-" + ctr);
  EXPECT_EQ(spec.cmdline, "console=ttyS0");
  EXPECT_EQ(spec.accel, config::Accelerator::kTcg);
  EXPECT_TRUE(spec.start_paused);  // resumed once the record says RUNNING
  EXPECT_EQ(hv_.PhaseOf("kvcri-" + ctr), runtime::VmPhase::kRunning);
  EXPECT_EQ(spec.netns, "/proc/self/ns/net");  // QEMU starts in the Pod netns
}

// kubevirt-cri.io/guest-agent=inject: the agent binary and its vendor-data
// go on the seed; another value or a missing binary fails CreateContainer.
TEST_F(CriLifecycleTest, GuestAgentAnnotationPutsTheAgentOnTheSeed) {
  pod_options_.guest_agent_binary = (dir_ / "kvcri-agent").string();
  Restart();
  auto run = [&](const std::string& name, const std::string& value, std::string* pod) {
    pb::RunPodSandboxRequest req;
    *req.mutable_config() = PodConfig(name);
    (*req.mutable_config()->mutable_annotations())["kubevirt-cri.io/guest-agent"] = value;
    req.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse resp;
    ASSERT_TRUE(service_->RunPodSandbox(nullptr, &req, &resp).ok());
    *pod = resp.pod_sandbox_id();
  };
  std::string pod, ctr;
  run("missing", "inject", &pod);
  grpc::Status missing = CreateVm(pod, "example.com/vm:1", &ctr);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(missing.error_message(), HasSubstr(pod_options_.guest_agent_binary));

  run("bogus", "yes-please", &pod);
  grpc::Status bogus = CreateVm(pod, "example.com/vm:1", &ctr);
  EXPECT_EQ(bogus.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bogus.error_message(), HasSubstr("kubevirt-cri.io/guest-agent"));

  {
    std::ofstream bin(pod_options_.guest_agent_binary, std::ios::binary);
    bin << "\x7f" "ELF-agent-bytes";
  }
  run("web", "inject", &pod);
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  std::vector<sandbox::ContainerRecord> recs =
      store_->ListContainers([&](const sandbox::ContainerRecord& r) { return r.id == ctr; });
  ASSERT_EQ(recs.size(), 1u);
  auto seed_file = [&](const std::string& name) {
    return kvcri::testing::Sh("MTOOLS_SKIP_CHECK=1 mtype -i " + recs[0].seed_path + " ::" + name).output;
  };
  EXPECT_EQ(seed_file("kvcri-agent"), "\x7f" "ELF-agent-bytes");
  EXPECT_THAT(seed_file("vendor-data"), HasSubstr("install -m 0755 \"$d/kvcri-agent\" /usr/local/bin/kvcri-agent"));
  EXPECT_EQ(seed_file("user-data"), "#cloud-config\n{}\n");  // untouched
}

TEST_F(CriLifecycleTest, GuestPowerOffBecomesExitedWithItsCode) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  ASSERT_TRUE(Start(ctr).ok());
  EXPECT_EQ(Status(ctr).state(), pb::CONTAINER_RUNNING);
  hv_.SetStatus("kvcri-" + ctr, {runtime::VmPhase::kShutoff, 0, "Completed"});
  pb::ContainerStatus st = Status(ctr);
  EXPECT_EQ(st.state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 0);
  EXPECT_EQ(st.reason(), "Completed");
  EXPECT_GT(st.finished_at(), 0);
}

TEST_F(CriLifecycleTest, RestartCreatesNewAttemptButNotASecondContainer) {
  std::string pod, first, second;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &first).ok());
  grpc::Status s = CreateVm(pod, "example.com/vm:1", &second, "sidecar");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(Start(first).ok());
  hv_.SetStatus("kvcri-" + first, {runtime::VmPhase::kShutoff, 1, "Crashed"});
  EXPECT_EQ(Status(first).state(), pb::CONTAINER_EXITED);
  // kubelet restarts the exited VM container as a new attempt of the same name.
  grpc::Status again = CreateVm(pod, "example.com/vm:1", &second, "vm", 1);
  EXPECT_TRUE(again.ok()) << again.error_message();
}

// Several networks (Multus): the VM gets a NIC per sandbox interface in the
// result's order, PodSandboxStatus the other network's IP as an additional
// IP; a restart restores the wiring and DHCP of both, StopPodSandbox unwires
// both before the one CNI DEL.
TEST_F(CriLifecycleTest, ExtraNetworksAreNicsOfTheVmRestoredAfterRestartAndUnwiredOnStop) {
  cni_.extra_ifnames = {"net1"};
  tap_.others["net1"] = {"net1", "", "0a:58:0a:01:00:05", 1400, {{"10.1.0.5", 24}}, "", "", {}};
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  pb::PodSandboxStatusRequest sreq;
  sreq.set_pod_sandbox_id(pod);
  pb::PodSandboxStatusResponse sresp;
  ASSERT_TRUE(service_->PodSandboxStatus(nullptr, &sreq, &sresp).ok());
  EXPECT_EQ(sresp.status().network().ip(), "10.0.0.2");
  ASSERT_EQ(sresp.status().network().additional_ips_size(), 1);
  EXPECT_EQ(sresp.status().network().additional_ips(0).ip(), "10.1.0.5");

  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  ASSERT_TRUE(Start(ctr).ok());
  runtime::VmSpec spec = hv_.SpecOf("kvcri-" + ctr);
  ASSERT_EQ(spec.nics.size(), 2u);
  EXPECT_EQ(spec.nics[0].tap_name, "tap0");
  EXPECT_EQ(spec.nics[0].mac, "0a:58:0a:00:00:02");
  EXPECT_EQ(spec.nics[1].tap_name, "tap1");
  EXPECT_EQ(spec.nics[1].mac, "0a:58:0a:01:00:05");
  EXPECT_EQ(spec.nics[1].mtu, 1400);

  const std::string netns = store_->GetSandbox(pod)->netns_path;
  net_log_.Take();
  Restart();
  EXPECT_THAT(net_log_.Take(), ::testing::IsSupersetOf({"wire " + netns, "dhcp add " + pod,
                                                        "wire " + netns + " net1 tap1", "dhcp add " + pod + " tap1"}));
  ASSERT_TRUE(StopPod(pod).ok());
  EXPECT_THAT(net_log_.Take(), ::testing::IsSupersetOf({"dhcp remove " + pod, "unwire " + netns,
                                                        "unwire " + netns + " net1 tap1", "cni DEL " + pod}));
  absl::MutexLock l(&cni_.mu);
  EXPECT_TRUE(cni_.allocated.empty());
}

TEST_F(CriLifecycleTest, RecoveryRemovesOrphanDomainsAndNamespaces) {
  runtime::VmSpec orphan;
  orphan.name = "kvcri-orphan";
  orphan.container_id = std::string(64, 'e');
  hv_.AddForeignVm(orphan);
  ASSERT_TRUE(netns_.Create(std::string(64, 'f')).ok());
  Restart();
  EXPECT_FALSE(hv_.Has("kvcri-orphan"));
  EXPECT_FALSE(*netns_.Exists(std::string(64, 'f')));
}

// A record this build cannot read (here: written by a newer version) is not
// a missing record: its VM keeps running untouched across the restart, and
// the Pod is reported NOTREADY, the container UNKNOWN with the reason.
TEST_F(CriLifecycleTest, RecoveryKeepsTheRunningVmOfAnUnreadableRecord) {
  for (const char* which : {"container", "sandbox", "both"}) {
    SCOPED_TRACE(which);
    std::string pod;
    const std::string ctr = RunningPodVm(std::string("web-") + which, &pod);
    const std::string domain = "kvcri-" + ctr;
    ASSERT_TRUE(hv_.Has(domain));
    const fs::path sandbox_file = config_.root / "sandboxes" / pod / "sandbox.json";
    const fs::path container_file = config_.root / "sandboxes" / pod / "containers" / (ctr + ".json");
    auto bump_version = [](const fs::path& p) {
      std::ifstream in(p);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::string bumped = std::regex_replace(text, std::regex(R"("version"\s*:\s*1\b)"), "\"version\": 99");
      ASSERT_NE(bumped, text) << p;
      std::ofstream(p, std::ios::trunc) << bumped;
    };
    if (std::string(which) != "sandbox") bump_version(container_file);
    if (std::string(which) != "container") bump_version(sandbox_file);
    const size_t calls_before = hv_.Calls().size();
    Restart();
    EXPECT_TRUE(hv_.Has(domain));
    EXPECT_EQ(hv_.PhaseOf(domain), runtime::VmPhase::kRunning);
    std::vector<std::string> calls = hv_.Calls();
    for (size_t i = calls_before; i < calls.size(); ++i) {
      EXPECT_THAT(calls[i], ::testing::Not(HasSubstr(domain))) << "recovery touched the VM";
    }

    pb::PodSandboxStatusRequest sreq;
    sreq.set_pod_sandbox_id(pod);
    pb::PodSandboxStatusResponse sresp;
    ASSERT_TRUE(service_->PodSandboxStatus(nullptr, &sreq, &sresp).ok());
    if (std::string(which) != "container") {
      EXPECT_EQ(sresp.status().state(), pb::SANDBOX_NOTREADY);
    }
    pb::ContainerStatus cs = Status(ctr);
    if (std::string(which) != "sandbox") {
      EXPECT_EQ(cs.state(), pb::CONTAINER_UNKNOWN);
      EXPECT_EQ(cs.reason(), "RecordUnreadable");
      EXPECT_THAT(cs.message(), HasSubstr("unsupported version 99"));
    } else {
      EXPECT_EQ(cs.state(), pb::CONTAINER_RUNNING);
    }

    // kubelet's clean-up still reaches the VM.
    ASSERT_TRUE(StopPod(pod).ok());
    ASSERT_TRUE(RemovePod(pod).ok());
    EXPECT_FALSE(hv_.Has(domain));
  }
}

// An unreadable record does not say which uid its still-running VM has; the
// group of its container dir does, and that uid is not handed out again.
TEST_F(CriLifecycleTest, TheUidOfAVmWithAnUnreadableRecordIsNotReused) {
  ASSERT_TRUE(config_.security.confined());
  // The next uid after a restart continues above the highest one the
  // readable records hold: with none readable, it would start over.
  std::string pod;
  const std::string ctr = RunningPodVm("old", &pod);
  auto vm_gid = [&](const std::string& id) {
    struct stat st {};
    EXPECT_EQ(::stat((config_.root / "containers" / id).c_str(), &st), 0) << id;
    return st.st_gid;
  };
  const gid_t old_uid = vm_gid(ctr);
  ASSERT_EQ(old_uid, config_.security.vm_uid_first);
  const fs::path record = config_.root / "sandboxes" / pod / "containers" / (ctr + ".json");
  std::ifstream in(record);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(record, std::ios::trunc) << std::regex_replace(text, std::regex(R"("version"\s*:\s*1\b)"), "\"version\": 99");
  Restart();
  ASSERT_EQ(Status(ctr).reason(), "RecordUnreadable");
  std::string pod2;
  const std::string ctr2 = RunningPodVm("new", &pod2);
  EXPECT_NE(vm_gid(ctr2), old_uid);
}

// QEMU pauses a VM whose disk write found the host file system full: the
// container is RUNNING with reason PausedIOError and the failed disk, every
// sweep tries a resume, and once one sticks the reason is gone.
TEST_F(CriLifecycleTest, AVmPausedOnAHostIoErrorIsReportedAndResumedBySweeps) {
  std::string pod;
  const std::string ctr = RunningPodVm("web", &pod);
  const std::string domain = "kvcri-" + ctr;
  PauseOnHostIoError(domain);
  pb::ContainerStatus st = Status(ctr);
  EXPECT_EQ(st.state(), pb::CONTAINER_RUNNING);
  EXPECT_EQ(st.reason(), "PausedIOError");
  EXPECT_THAT(st.message(), HasSubstr("vda: no space left on the host"));
  // The pause survives a restart (the record says since when).
  Restart();
  EXPECT_EQ(Status(ctr).reason(), "PausedIOError");

  // Still full: the sweep's resume does not stick.
  manual_clock_.Advance(absl::Seconds(10));
  pods_->Sweep();
  EXPECT_EQ(hv_.PhaseOf(domain), runtime::VmPhase::kPaused);
  EXPECT_EQ(Status(ctr).reason(), "PausedIOError");
  std::vector<std::string> calls = hv_.Calls();
  EXPECT_GE(std::count(calls.begin(), calls.end(), "Resume " + domain), 2) << "start, then the sweep";

  // Space is back: the next sweep resumes it for good.
  SetIoErrorPersists(false);
  manual_clock_.Advance(absl::Seconds(10));
  pods_->Sweep();
  EXPECT_EQ(hv_.PhaseOf(domain), runtime::VmPhase::kRunning);
  st = Status(ctr);
  EXPECT_EQ(st.state(), pb::CONTAINER_RUNNING);
  EXPECT_EQ(st.reason(), "");
  EXPECT_EQ(st.message(), "");
}

// A pause that outlasts vm.io_error_timeout_seconds ends the container
// clearly: forced off, EXITED with reason IOError, not frozen forever.
TEST_F(CriLifecycleTest, AVmPausedOnAHostIoErrorPastTheBoundIsStoppedAndExited) {
  config_.vm.io_error_timeout_seconds = 60;
  std::string pod;
  const std::string ctr = RunningPodVm("web", &pod);
  const std::string domain = "kvcri-" + ctr;
  PauseOnHostIoError(domain);
  pods_->Sweep();
  EXPECT_EQ(Status(ctr).state(), pb::CONTAINER_RUNNING);
  manual_clock_.Advance(absl::Seconds(59));
  pods_->Sweep();
  EXPECT_EQ(Status(ctr).state(), pb::CONTAINER_RUNNING);
  manual_clock_.Advance(absl::Seconds(2));
  pods_->Sweep();
  pb::ContainerStatus st = Status(ctr);
  EXPECT_EQ(st.state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(st.reason(), "IOError");
  EXPECT_NE(st.exit_code(), 0);
  EXPECT_THAT(st.message(), HasSubstr("vda: no space left on the host"));
  EXPECT_NE(hv_.PhaseOf(domain), runtime::VmPhase::kPaused);
}

// The overlay of a disk VM grows at most to its image disk's virtual size:
// an image declaring more than vm.max_disk_mib is refused before anything
// is created.
TEST_F(CriLifecycleTest, ADiskImageLargerThanTheBoundIsRefusedAtCreateContainer) {
  runtime::image::ImageInfo disk;
  disk.id = "sha256:" + std::string(64, '3');
  disk.repo_tags = {"example.com/huge:1"};
  disk.boot.kind = runtime::image::BootKind::kDisk;
  disk.boot.disk = dir_ / "images" / "huge.qcow2";
  disk.boot.disk_format = runtime::image::DiskFormat::kQcow2;
  disk.boot.disk_virtual_size = (uint64_t{1} << 40);  // 1 TiB declared by the registry
  images_.Add("example.com/huge:1", disk);
  config_.vm.max_disk_mib = 1024;
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  grpc::Status s = CreateVm(pod, "example.com/huge:1", &ctr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("vm.max_disk_mib"));
  EXPECT_TRUE(store_->ListContainers().empty());
  EXPECT_TRUE(fs::is_empty(config_.root / "containers"));
}

TEST_F(CriLifecycleTest, RecoveryReportsVmThatDiedWhileDownAsExited) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  ASSERT_TRUE(Start(ctr).ok());
  hv_.Remove("kvcri-" + ctr).IgnoreError();  // gone behind our back
  Restart();
  pb::ContainerStatus st = Status(ctr);
  EXPECT_EQ(st.state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 255);
  EXPECT_EQ(st.reason(), "VMNotFound");
}

TEST_F(CriLifecycleTest, RecoveryRollsBackASandboxCutShortMidCreation) {
  sandbox::SandboxRecord half;
  half.id = std::string(64, 'a');
  half.metadata = {"half", "ns", "uid", 0};
  half.phase = sandbox::Phase::kCreating;
  ASSERT_TRUE(store_->PutSandbox(half).ok());
  ASSERT_TRUE(netns_.Create(half.id).ok());
  Restart();
  EXPECT_FALSE(store_->GetSandbox(half.id).ok());
  EXPECT_FALSE(*netns_.Exists(half.id));
}

TEST_F(CriLifecycleTest, RemovePodSandboxRemovesEverything) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  ASSERT_TRUE(Start(ctr).ok());
  pb::RemovePodSandboxRequest req;
  req.set_pod_sandbox_id(pod);
  pb::RemovePodSandboxResponse resp;
  ASSERT_TRUE(service_->RemovePodSandbox(nullptr, &req, &resp).ok());
  EXPECT_FALSE(hv_.Has("kvcri-" + ctr));
  EXPECT_FALSE(*netns_.Exists(pod));
  EXPECT_FALSE(fs::exists(config_.root / "containers" / ctr));
  EXPECT_EQ(store_->SandboxCount(), 0u);
  EXPECT_TRUE(service_->RemovePodSandbox(nullptr, &req, &resp).ok());
}

TEST_F(CriLifecycleTest, ListFiltersByLabelStateAndIdPrefix) {
  std::string a, b;
  ASSERT_TRUE(RunPod("a", &a).ok());
  ASSERT_TRUE(RunPod("b", &b).ok());
  pb::ListPodSandboxRequest req;
  (*req.mutable_filter()->mutable_label_selector())["app"] = "b";
  pb::ListPodSandboxResponse resp;
  ASSERT_TRUE(service_->ListPodSandbox(nullptr, &req, &resp).ok());
  ASSERT_EQ(resp.items_size(), 1);
  EXPECT_EQ(resp.items(0).id(), b);
  req.Clear();
  req.mutable_filter()->set_id(a.substr(0, 8));
  resp.Clear();
  ASSERT_TRUE(service_->ListPodSandbox(nullptr, &req, &resp).ok());
  ASSERT_EQ(resp.items_size(), 1);
  EXPECT_EQ(resp.items(0).id(), a);
}

TEST_F(CriLifecycleTest, RunPodSandboxAttachesTheNetworkAndReportsThePodIp) {
  std::string pod;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  EXPECT_THAT(net_log_.Take(), ::testing::ElementsAre("cni ADD " + pod, "wire /proc/self/ns/net", "dhcp add " + pod));
  pb::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(pod);
  pb::PodSandboxStatusResponse resp;
  ASSERT_TRUE(service_->PodSandboxStatus(nullptr, &req, &resp).ok());
  EXPECT_EQ(resp.status().network().ip(), "10.0.0.2");
  {
    absl::MutexLock l(&cni_.mu);
    EXPECT_EQ(cni_.last_add.pod_name, "web");
    EXPECT_EQ(cni_.last_add.pod_namespace, "ns");
    EXPECT_EQ(cni_.last_add.pod_uid, "uid-web");
  }
  // StopPodSandbox: DHCP off, tap gone, DEL; the IP is no longer reported.
  pb::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod);
  pb::StopPodSandboxResponse stop_resp;
  ASSERT_TRUE(service_->StopPodSandbox(nullptr, &stop, &stop_resp).ok());
  EXPECT_THAT(net_log_.Take(), ::testing::ElementsAre("dhcp remove " + pod, "unwire /proc/self/ns/net", "cni DEL " + pod));
  resp.Clear();
  ASSERT_TRUE(service_->PodSandboxStatus(nullptr, &req, &resp).ok());
  EXPECT_EQ(resp.status().network().ip(), "");
  absl::MutexLock l(&cni_.mu);
  EXPECT_TRUE(cni_.allocated.empty());
}

TEST_F(CriLifecycleTest, FailedCniAddLeavesNoRecordNetnsOrName) {
  cni_.add_error = absl::InternalError("plugin \"bridge\" failed: no IP addresses available");
  std::string pod;
  grpc::Status s = RunPod("web", &pod);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THAT(s.error_message(), HasSubstr("no IP addresses available"));
  EXPECT_EQ(store_->SandboxCount(), 0u);
  absl::MutexLock l(&netns_.mu);
  EXPECT_TRUE(netns_.pinned.empty());
}

TEST_F(CriLifecycleTest, FailedWiringDeletesTheCniAttachment) {
  tap_.wire_error = absl::NotFoundError("interface \"eth0\" not found in the Pod netns");
  std::string pod;
  EXPECT_FALSE(RunPod("web", &pod).ok());
  EXPECT_EQ(store_->SandboxCount(), 0u);
  absl::MutexLock l(&cni_.mu);
  EXPECT_TRUE(cni_.allocated.empty());
}

TEST_F(CriLifecycleTest, BadBandwidthAnnotationIsRefusedBeforeAnythingExists) {
  pb::RunPodSandboxRequest req;
  *req.mutable_config() = PodConfig("web");
  (*req.mutable_config()->mutable_annotations())["kubernetes.io/ingress-bandwidth"] = "fast";
  req.set_runtime_handler("kubevirt");
  pb::RunPodSandboxResponse resp;
  grpc::Status s = service_->RunPodSandbox(nullptr, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("kubernetes.io/ingress-bandwidth"));
  EXPECT_TRUE(net_log_.Take().empty());
  EXPECT_EQ(store_->SandboxCount(), 0u);
}

TEST_F(CriLifecycleTest, VmGetsTheWiredNicAndTheCloudInitSeed) {
  std::string pod, ctr;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  ASSERT_TRUE(CreateVm(pod, "example.com/vm:1", &ctr).ok());
  ASSERT_TRUE(fs::exists(config_.root / "containers" / ctr / "cidata.img"));
  ASSERT_TRUE(Start(ctr).ok());
  const runtime::VmSpec spec = hv_.SpecOf("kvcri-" + ctr);
  ASSERT_EQ(spec.nics.size(), 1u);
  EXPECT_EQ(spec.nics[0].tap_name, "tap0");
  EXPECT_EQ(spec.nics[0].mac, "0a:58:0a:00:00:02");
  EXPECT_EQ(spec.nics[0].mtu, 1450);
  ASSERT_FALSE(spec.disks.empty());
  const runtime::DiskSpec& seed = spec.disks.back();
  EXPECT_EQ(seed.serial, "cidata");
  EXPECT_EQ(seed.format, "raw");
  EXPECT_TRUE(seed.read_only);
}

TEST_F(CriLifecycleTest, RestartServesDhcpAgainAndRecoveryDelsAHalfCreatedSandbox) {
  std::string pod;
  ASSERT_TRUE(RunPod("web", &pod).ok());
  sandbox::SandboxRecord half;
  half.id = std::string(64, 'b');
  half.metadata = {"half", "ns", "uid-h", 0};
  half.phase = sandbox::Phase::kCreating;
  half.netns_path = "/proc/self/ns/net";
  ASSERT_TRUE(store_->PutSandbox(half).ok());
  ASSERT_TRUE(netns_.Create(half.id).ok());
  net_log_.Take();
  Restart();
  std::vector<std::string> calls = net_log_.Take();
  EXPECT_THAT(calls, ::testing::Contains("cni DEL " + half.id));
  EXPECT_THAT(calls, ::testing::Contains("dhcp add " + pod));
  EXPECT_FALSE(store_->GetSandbox(half.id).ok());
}

}  // namespace
}  // namespace kvcri::cri
