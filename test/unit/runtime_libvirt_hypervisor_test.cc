// LibvirtHypervisor against libvirt's in-memory test driver (test:///default).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>

#include "config/base/metrics.h"
#include "runtime/libvirt_hypervisor.h"

namespace kvcri::runtime {
namespace {

// test:///default is shared by every connection in the process, so each
// test uses its own domain names.
std::string UniqueName(std::string_view base) {
  static std::atomic<int> n{0};
  return std::string("kvcri-") + std::string(base) + "-" + std::to_string(n++);
}

VmSpec Spec(const std::string& name) {
  VmSpec s;
  s.name = name;
  s.pod_id = "pod-" + name;
  s.container_id = "ctr-" + name;
  s.pod_namespace = "default";
  s.pod_name = "web";
  s.accel = config::Accelerator::kTcg;
  s.memory_mib = 128;
  s.kernel = "/boot/vmlinuz";
  s.cmdline = "console=ttyS0";
  return s;
}

std::unique_ptr<LibvirtHypervisor> OpenTestDriver() {
  auto h = LibvirtHypervisor::Open(LibvirtHypervisorOptions{"test:///default", ""});
  EXPECT_TRUE(h.ok()) << h.status();
  return h.ok() ? std::move(*h) : nullptr;
}

TEST(LibvirtHypervisor, ReadyOnOpenConnection) {
  auto h = OpenTestDriver();
  ASSERT_NE(h, nullptr);
  EXPECT_TRUE(h->Ready().ok());
}

TEST(LibvirtHypervisor, OpenFailsOnBadUri) {
  auto h = LibvirtHypervisor::Open(LibvirtHypervisorOptions{"nosuchdriver:///x"});
  EXPECT_EQ(h.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(LibvirtHypervisor::Open(LibvirtHypervisorOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LibvirtHypervisor, CreateStatusDestroyRemove) {
  auto h = OpenTestDriver();
  ASSERT_NE(h, nullptr);
  std::string name = UniqueName("life");
  ASSERT_TRUE(h->Create(Spec(name)).ok());
  auto st = h->Status(name);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->phase, VmPhase::kRunning);

  ASSERT_TRUE(h->Destroy(name).ok());
  st = h->Status(name);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->phase, VmPhase::kShutoff);
  EXPECT_EQ(st->exit_code, 137);
  EXPECT_EQ(st->reason, "Killed");
  EXPECT_TRUE(h->Destroy(name).ok());  // already off

  ASSERT_TRUE(h->Remove(name).ok());
  st = h->Status(name);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->phase, VmPhase::kMissing);
  EXPECT_TRUE(h->Remove(name).ok());   // missing: fine
  EXPECT_TRUE(h->Destroy(name).ok());  // missing: fine
}

TEST(LibvirtHypervisor, PowerButtonOfGuestThatPowersOffIsCompleted) {
  // The test driver powers a domain off as soon as it is asked to.
  auto h = OpenTestDriver();
  ASSERT_NE(h, nullptr);
  std::string name = UniqueName("shut");
  ASSERT_TRUE(h->Create(Spec(name)).ok());
  ASSERT_TRUE(h->PowerButton(name).ok());
  auto st = h->Status(name);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->phase, VmPhase::kShutoff);
  EXPECT_EQ(st->exit_code, 0);
  EXPECT_EQ(st->reason, "Completed");
  EXPECT_TRUE(h->PowerButton(name).ok());  // already off
  EXPECT_EQ(h->PowerButton("kvcri-nope").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(h->Remove(name).ok());
}

TEST(LibvirtHypervisor, LifecycleEventsReachTheSubscriber) {
  auto h = OpenTestDriver();
  ASSERT_NE(h, nullptr);
  absl::Mutex mu;
  std::vector<std::string> seen;
  ASSERT_TRUE(h->Subscribe([&](const VmEvent& e) {
                 absl::MutexLock l(&mu);
                 seen.push_back(e.name + " " + e.detail);
               }).ok());
  std::string name = UniqueName("events");
  ASSERT_TRUE(h->Create(Spec(name)).ok());
  ASSERT_TRUE(h->Destroy(name).ok());
  // Events come from libvirt's event loop thread.
  auto stopped = [&] {
    absl::MutexLock l(&mu);
    for (const std::string& s : seen) {
      if (s.rfind(name + " stopped/", 0) == 0) return true;
    }
    return false;
  };
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!stopped() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_TRUE(stopped());
  EXPECT_TRUE(h->Subscribe(nullptr).ok());
  EXPECT_TRUE(h->Remove(name).ok());
}

TEST(LibvirtHypervisor, FailedLibvirtCallsAreCountedByFunctionButAnswersAreNot) {
  base::MetricsRegistry registry;
  absl::StatusOr<base::MetricFamily*> errors = registry.Counter("kvcri_libvirt_errors_total", "h", {"operation"});
  ASSERT_TRUE(errors.ok());
  LibvirtHypervisorOptions options{"test:///default", ""};
  options.errors = *errors;
  auto h = LibvirtHypervisor::Open(options);
  ASSERT_TRUE(h.ok()) << h.status();
  const std::string name = UniqueName("errors");
  ASSERT_TRUE((*h)->Create(Spec(name)).ok());
  // A missing domain is an answer: Status says kMissing, Destroy and Remove
  // are done already.
  const std::string missing = UniqueName("missing");
  ASSERT_TRUE((*h)->Status(missing).ok());
  ASSERT_TRUE((*h)->Remove(missing).ok());
  EXPECT_THAT(registry.Expose(), ::testing::Not(::testing::HasSubstr("kvcri_libvirt_errors_total{")));
  // Resuming a domain that is not paused is a libvirt failure.
  EXPECT_FALSE((*h)->Resume(name).ok());
  EXPECT_FALSE((*h)->Resume(name).ok());
  EXPECT_THAT(registry.Expose(), ::testing::HasSubstr("kvcri_libvirt_errors_total{operation=\"virDomainResume\"} 2\n"));
  ASSERT_TRUE((*h)->Remove(name).ok());
  h->reset();
  // Closed: later failures (other tests, other hypervisors) are not counted here.
  auto other = OpenTestDriver();
  ASSERT_NE(other, nullptr);
  const std::string n2 = UniqueName("errors");
  ASSERT_TRUE(other->Create(Spec(n2)).ok());
  EXPECT_FALSE(other->Resume(n2).ok());
  EXPECT_THAT(registry.Expose(), ::testing::HasSubstr("kvcri_libvirt_errors_total{operation=\"virDomainResume\"} 2\n"));
  ASSERT_TRUE(other->Remove(n2).ok());
}

TEST(LibvirtHypervisor, OnlyUrisWhoseQemuJoinsThePodNetnsAreAccepted) {
  EXPECT_TRUE(CheckUriSupportsPodNetns("qemu:///embed?root=/var/lib/kubevirt-cri/libvirt").ok());
  EXPECT_TRUE(CheckUriSupportsPodNetns("test:///default").ok());
  absl::Status s = CheckUriSupportsPodNetns("qemu:///system");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("network namespace"));
  EXPECT_FALSE(CheckUriSupportsPodNetns("qemu+ssh://host/system").ok());
}

TEST(LibvirtHypervisor, CreateRollsBackWhenStartFails) {
  // The test driver cannot start paused: the start fails after the define.
  auto h = OpenTestDriver();
  ASSERT_NE(h, nullptr);
  std::string name = UniqueName("rollback");
  VmSpec s = Spec(name);
  s.start_paused = true;
  EXPECT_FALSE(h->Create(s).ok());
  EXPECT_EQ(h->Status(name)->phase, VmPhase::kMissing);
  EXPECT_EQ(h->Resume(name).code(), absl::StatusCode::kNotFound);
}

TEST(LibvirtHypervisor, CreateRefusesExistingName) {
  auto h = OpenTestDriver();
  ASSERT_NE(h, nullptr);
  std::string name = UniqueName("dup");
  ASSERT_TRUE(h->Create(Spec(name)).ok());
  EXPECT_EQ(h->Create(Spec(name)).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(h->Status(name)->phase, VmPhase::kRunning);  // the first one is untouched
  EXPECT_TRUE(h->Remove(name).ok());
}

TEST(LibvirtHypervisor, CreateRejectsInvalidSpecWithoutDefining) {
  auto h = OpenTestDriver();
  ASSERT_NE(h, nullptr);
  std::string name = UniqueName("bad");
  VmSpec s = Spec(name);
  s.kernel.clear();  // nothing to boot
  EXPECT_EQ(h->Create(s).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(h->Status(name)->phase, VmPhase::kMissing);
}

TEST(LibvirtHypervisor, ListReturnsOnlyOurDomainsWithMetadata) {
  auto h = OpenTestDriver();
  ASSERT_NE(h, nullptr);
  std::string a = UniqueName("list"), b = UniqueName("list");
  ASSERT_TRUE(h->Create(Spec(a)).ok());
  ASSERT_TRUE(h->Create(Spec(b)).ok());
  ASSERT_TRUE(h->Destroy(b).ok());
  auto list = h->List();
  ASSERT_TRUE(list.ok()) << list.status();
  // test:///default ships a domain "test" without our metadata: not listed.
  std::map<std::string, VmListing> by_name;
  for (const VmListing& v : *list) by_name[v.name] = v;
  EXPECT_EQ(by_name.count("test"), 0u);
  ASSERT_EQ(by_name.count(a), 1u);
  EXPECT_EQ(by_name[a].container_id, "ctr-" + a);
  EXPECT_EQ(by_name[a].pod_id, "pod-" + a);
  EXPECT_EQ(by_name[a].phase, VmPhase::kRunning);
  ASSERT_EQ(by_name.count(b), 1u);
  EXPECT_EQ(by_name[b].phase, VmPhase::kShutoff);
  EXPECT_TRUE(h->Remove(a).ok());
  EXPECT_TRUE(h->Remove(b).ok());
}

TEST(LibvirtHypervisor, SurvivesReconnect) {
  std::string name = UniqueName("reconnect");
  auto first = OpenTestDriver();
  ASSERT_NE(first, nullptr);
  auto second = OpenTestDriver();  // keeps the shared test driver state alive
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(first->Create(Spec(name)).ok());
  first.reset();
  EXPECT_EQ(second->Status(name)->phase, VmPhase::kRunning);
  EXPECT_TRUE(second->Remove(name).ok());
}

TEST(LibvirtHypervisor, EscapedNamesRoundTrip) {
  auto h = OpenTestDriver();
  ASSERT_NE(h, nullptr);
  std::string name = UniqueName("we<i>rd&'\"");
  VmSpec s = Spec(name);
  s.cmdline = "a=\"<&>\"";
  ASSERT_TRUE(h->Create(s).ok());
  EXPECT_EQ(h->Status(name)->phase, VmPhase::kRunning);
  auto list = h->List();
  ASSERT_TRUE(list.ok());
  bool found = false;
  for (const VmListing& v : *list) found |= v.name == name && v.container_id == "ctr-" + name;
  EXPECT_TRUE(found);
  EXPECT_TRUE(h->Remove(name).ok());
}

TEST(LibvirtHypervisor, StatsOfRunningDomain) {
  auto h = OpenTestDriver();
  ASSERT_NE(h, nullptr);
  std::string name = UniqueName("stats");
  ASSERT_TRUE(h->Create(Spec(name)).ok());
  auto s = h->Stats(name);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT(s->memory_actual_bytes, 0u);
  ASSERT_TRUE(h->Destroy(name).ok());
  EXPECT_EQ(h->Stats(name).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(h->Stats("kvcri-nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(h->Remove(name).ok());
}

TEST(LibvirtHypervisor, ConcurrentCallsAreSafe) {
  auto h = OpenTestDriver();
  ASSERT_NE(h, nullptr);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        std::string name = UniqueName("conc");
        if (!h->Create(Spec(name)).ok()) ++failures;
        if (!h->List().ok()) ++failures;
        if (!h->Remove(name).ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace kvcri::runtime
