// CRI stats of VM Pods over the harness: scratch cgroup v1 numbers, the CPU rate, filters, network, metrics.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "cni/netdev_stats.h"
#include "config/base/metrics.h"
#include "runtime/cgroup/cgroup_placer.h"
#include "runtime/disk_usage.h"
#include "test/fakes/cri_harness.h"
#include "test/fakes/fake_netdev.h"

namespace kvcri::cri {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kMiB = uint64_t{1} << 20;

// The cgroupfs placer on a scratch tree, where no kernel makes a cgroup's
// files: Place() gives each new directory the cgroup.procs it writes to,
// Remove() takes the directories with the files the test wrote.
class ScratchPlacer : public runtime::cgroup::CgroupfsPlacer {
 public:
  using CgroupfsPlacer::CgroupfsPlacer;
  absl::Status Place(const runtime::cgroup::CgroupTarget& t, const std::vector<pid_t>& pids) override {
    if (absl::Status s = runtime::cgroup::CreateCgroup(layout(), t.path); !s.ok()) return s;
    for (const fs::path& d : layout().DirsOf(t.path)) std::ofstream(d / "cgroup.procs").flush();
    return CgroupfsPlacer::Place(t, pids);
  }
  absl::Status Remove(const runtime::cgroup::CgroupTarget& t) override {
    for (const fs::path& d : layout().DirsOf(t.path)) fs::remove_all(d);
    return absl::OkStatus();
  }
};

// A scratch cgroup v1 tree (cpu, cpuacct, memory, pids) with a cgroupfs
// placer on it, plugged into the harness: CreateContainer records the
// cgroup, StartContainer places the (fake) VM there, the test writes the
// accounting files.
class CriStatsTest : public CriHarness {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/kvcri-stats-cg-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    cg_root_ = tmpl;
    for (const char* c : {"cpu", "cpuacct", "memory", "pids"}) fs::create_directories(cg_root_ / c);
    absl::StatusOr<runtime::cgroup::CgroupLayout> layout = runtime::cgroup::CgroupLayout::Detect(cg_root_);
    ASSERT_TRUE(layout.ok()) << layout.status();
    placer_ = std::make_unique<ScratchPlacer>(*layout, "/kvcri");
    absl::StatusOr<base::MetricFamily*> h =
        registry_.Histogram("kvcri_stats_collection_duration_seconds", "test", {"rpc"}, base::DurationBuckets());
    ASSERT_TRUE(h.ok());
    add_deps_ = [this, family = *h](RuntimeDeps& d) {
      d.cgroups = placer_.get();
      d.netdev = &netdev_;
      d.stats_duration = family;
    };
    CriHarness::SetUp();
  }
  void TearDown() override {
    CriHarness::TearDown();
    fs::remove_all(cg_root_);
  }

  // The cgroup of `ctr` exists and the record names it (a record from
  // before placement gets one here).
  std::string Place(const std::string& ctr) {
    absl::StatusOr<sandbox::ContainerRecord> rec = store_->GetContainer(ctr);
    EXPECT_TRUE(rec.ok());
    if (!rec->cgroup_path.empty()) return rec->cgroup_path;
    absl::StatusOr<runtime::cgroup::CgroupTarget> t = placer_->Plan("", ctr);
    EXPECT_TRUE(t.ok()) << t.status();
    EXPECT_TRUE(runtime::cgroup::CreateCgroup(placer_->layout(), t->path).ok());
    EXPECT_TRUE(store_
                    ->UpdateContainer(ctr,
                                      [&](sandbox::ContainerRecord& r) {
                                        r.cgroup_path = t->path;
                                        return absl::OkStatus();
                                      })
                    .ok());
    return t->path;
  }
  void Write(const std::string& rel, const char* controller, const char* file, const std::string& text) {
    std::ofstream(cg_root_ / controller / rel.substr(1) / file) << text;
  }
  // One sample's worth of accounting files.
  void SetUsage(const std::string& rel, uint64_t cpu_ns, uint64_t usage, uint64_t inactive_file, uint64_t rss,
                uint64_t limit, uint64_t pids) {
    Write(rel, "cpuacct", "cpuacct.usage", std::to_string(cpu_ns) + "\n");
    Write(rel, "memory", "memory.usage_in_bytes", std::to_string(usage) + "\n");
    Write(rel, "memory", "memory.stat",
          "total_rss " + std::to_string(rss) + "\ntotal_inactive_file " + std::to_string(inactive_file) +
              "\ntotal_pgfault 1000\ntotal_pgmajfault 7\n");
    Write(rel, "memory", "memory.limit_in_bytes", std::to_string(limit) + "\n");
    Write(rel, "pids", "pids.current", std::to_string(pids) + "\n");
  }

  std::vector<pb::ContainerStats> ListStats(const pb::ContainerStatsFilter& f = {}) {
    pb::ListContainerStatsRequest req;
    *req.mutable_filter() = f;
    pb::ListContainerStatsResponse resp;
    grpc::Status s = service_->ListContainerStats(nullptr, &req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.stats().begin(), resp.stats().end()};
  }
  std::vector<std::string> StatsIds(const pb::ContainerStatsFilter& f) {
    std::vector<std::string> ids;
    for (const pb::ContainerStats& s : ListStats(f)) ids.push_back(s.attributes().id());
    return ids;
  }
  std::vector<pb::PodSandboxStats> ListPodStats(const pb::PodSandboxStatsFilter& f = {}) {
    pb::ListPodSandboxStatsRequest req;
    *req.mutable_filter() = f;
    pb::ListPodSandboxStatsResponse resp;
    grpc::Status s = service_->ListPodSandboxStats(nullptr, &req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.stats().begin(), resp.stats().end()};
  }
  std::vector<std::string> PodStatsIds(const pb::PodSandboxStatsFilter& f) {
    std::vector<std::string> ids;
    for (const pb::PodSandboxStats& s : ListPodStats(f)) ids.push_back(s.attributes().id());
    return ids;
  }

  fs::path cg_root_;
  std::unique_ptr<ScratchPlacer> placer_;
  testing::FakeNetdev netdev_;
  base::MetricsRegistry registry_;
};

TEST_F(CriStatsTest, ContainerStatsAreTheCgroupsNumbersAndTheCpuRateBetweenSamples) {
  std::string pod;
  const std::string ctr = RunningPodVm("web", &pod);
  const std::string cg = Place(ctr);
  SetUsage(cg, 2'000'000'000, 600 * kMiB, 100 * kMiB, 450 * kMiB, kGiB, 9);

  pb::ContainerStatsRequest req;
  req.set_container_id(ctr);
  pb::ContainerStatsResponse resp;
  ASSERT_TRUE(service_->ContainerStats(nullptr, &req, &resp).ok());
  const pb::ContainerStats& s = resp.stats();
  EXPECT_EQ(s.attributes().id(), ctr);
  EXPECT_EQ(s.attributes().metadata().name(), "vm");
  const int64_t now = absl::ToUnixNanos(manual_clock_.Now());
  EXPECT_EQ(s.cpu().timestamp(), now);
  EXPECT_EQ(s.cpu().usage_core_nano_seconds().value(), 2'000'000'000u);
  EXPECT_FALSE(s.cpu().has_usage_nano_cores()) << "no rate from a first sample, as containerd";
  EXPECT_EQ(s.memory().timestamp(), now);
  EXPECT_EQ(s.memory().usage_bytes().value(), 600 * kMiB);
  EXPECT_EQ(s.memory().working_set_bytes().value(), 500 * kMiB) << "usage minus inactive file";
  EXPECT_EQ(s.memory().rss_bytes().value(), 450 * kMiB);
  EXPECT_EQ(s.memory().available_bytes().value(), kGiB - 500 * kMiB) << "limit minus working set";
  EXPECT_EQ(s.memory().page_faults().value(), 1000u);
  EXPECT_EQ(s.memory().major_page_faults().value(), 7u);
  // The container directory: seed (and overlay for disk boot) on the node.
  EXPECT_GT(s.writable_layer().used_bytes().value(), 0u);
  EXPECT_GE(s.writable_layer().inodes_used().value(), 2u);
  EXPECT_FALSE(s.writable_layer().fs_id().mountpoint().empty());
  EXPECT_EQ(s.writable_layer().timestamp(), now);

  // 10 s later, 7.5 s more CPU: 0.75 of a core.
  manual_clock_.Advance(absl::Seconds(10));
  SetUsage(cg, 9'500'000'000, 600 * kMiB, 100 * kMiB, 450 * kMiB, kGiB, 9);
  std::vector<pb::ContainerStats> listed = ListStats();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].cpu().usage_nano_cores().value(), 750'000'000u);

  // A second caller half a second later gets the same rate, not one over 0.5 s.
  manual_clock_.Advance(absl::Milliseconds(500));
  SetUsage(cg, 9'600'000'000, 600 * kMiB, 100 * kMiB, 450 * kMiB, kGiB, 9);
  listed = ListStats();
  EXPECT_EQ(listed[0].cpu().usage_nano_cores().value(), 750'000'000u);
  EXPECT_EQ(listed[0].cpu().usage_core_nano_seconds().value(), 9'600'000'000u);
}

TEST_F(CriStatsTest, AStoppedContainerAnswersWithoutCpuOrMemoryAndItsSampleIsForgotten) {
  std::string pod;
  const std::string ctr = RunningPodVm("web", &pod);
  SetUsage(Place(ctr), 1'000'000'000, 10 * kMiB, 0, 10 * kMiB, 0, 3);
  ASSERT_EQ(ListStats().size(), 1u);
  EXPECT_EQ(service_->stats().cached_samples(), 1u);
  ASSERT_TRUE(StopCtr(ctr, 0).ok());
  std::vector<pb::ContainerStats> listed = ListStats();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_FALSE(listed[0].has_cpu());
  EXPECT_FALSE(listed[0].has_memory());
  EXPECT_TRUE(listed[0].has_writable_layer());
  EXPECT_EQ(service_->stats().cached_samples(), 0u);
}

TEST_F(CriStatsTest, WithoutALimitAvailableIsZeroAndWithoutAReadableCgroupTheHypervisorsNumbersAnswer) {
  std::string pod;
  const std::string ctr = RunningPodVm("web", &pod);
  // A cgroup without accounting files (unreadable) and no hypervisor stats: attributes and disk only.
  std::vector<pb::ContainerStats> listed = ListStats();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_FALSE(listed[0].has_cpu());
  EXPECT_TRUE(listed[0].has_writable_layer());

  runtime::VmStats vm;
  vm.cpu_ns = 3'000'000'000;
  vm.memory_rss_bytes = 300 * kMiB;
  vm.memory_actual_bytes = 512 * kMiB;
  {
    absl::MutexLock l(&hv_.mu);
    hv_.vm_stats["kvcri-" + ctr] = vm;
  }
  listed = ListStats();
  EXPECT_EQ(listed[0].cpu().usage_core_nano_seconds().value(), 3'000'000'000u);
  EXPECT_EQ(listed[0].memory().working_set_bytes().value(), 300 * kMiB);
  EXPECT_EQ(listed[0].memory().available_bytes().value(), 0u);

  // With a cgroup, it wins and the hypervisor is not asked.
  SetUsage(Place(ctr), 5'000'000'000, 40 * kMiB, 0, 40 * kMiB, 9223372036854771712u, 2);
  int before;
  {
    absl::MutexLock l(&hv_.mu);
    before = hv_.stats_calls;
  }
  listed = ListStats();
  EXPECT_EQ(listed[0].cpu().usage_core_nano_seconds().value(), 5'000'000'000u);
  EXPECT_EQ(listed[0].memory().available_bytes().value(), 0u) << "v1's unlimited is no limit";
  absl::MutexLock l(&hv_.mu);
  EXPECT_EQ(hv_.stats_calls, before);
}

TEST_F(CriStatsTest, ListFiltersByIdPrefixPodAndLabelsAndSandboxStatsOnlyReadyPods) {
  std::string pod_a, pod_b;
  const std::string a = RunningPodVm("a", &pod_a);
  const std::string b = RunningPodVm("b", &pod_b);
  ASSERT_TRUE(store_
                  ->UpdateContainer(a,
                                    [](sandbox::ContainerRecord& r) {
                                      r.labels["tier"] = "front";
                                      return absl::OkStatus();
                                    })
                  .ok());
  EXPECT_THAT(StatsIds({}), UnorderedElementsAre(a, b));
  pb::ContainerStatsFilter f;
  f.set_id(a.substr(0, 10));
  EXPECT_THAT(StatsIds(f), ElementsAre(a));
  f.set_id(a);
  EXPECT_THAT(StatsIds(f), ElementsAre(a));
  f.set_id(std::string(64, 'f'));
  EXPECT_THAT(StatsIds(f), IsEmpty());
  f.Clear();
  f.set_pod_sandbox_id(pod_b);
  EXPECT_THAT(StatsIds(f), ElementsAre(b));
  f.Clear();
  (*f.mutable_label_selector())["tier"] = "front";
  EXPECT_THAT(StatsIds(f), ElementsAre(a));
  (*f.mutable_label_selector())["tier"] = "back";
  EXPECT_THAT(StatsIds(f), IsEmpty());

  EXPECT_THAT(PodStatsIds({}), UnorderedElementsAre(pod_a, pod_b));
  pb::PodSandboxStatsFilter pf;
  pf.set_id(pod_a.substr(0, 12));
  EXPECT_THAT(PodStatsIds(pf), ElementsAre(pod_a));
  pf.Clear();
  (*pf.mutable_label_selector())["app"] = "b";
  EXPECT_THAT(PodStatsIds(pf), ElementsAre(pod_b));
  ASSERT_TRUE(StopPod(pod_b).ok());
  EXPECT_THAT(PodStatsIds({}), ElementsAre(pod_a)) << "a NOTREADY Pod has nothing to measure";

  pb::PodSandboxStatsRequest req;
  pb::PodSandboxStatsResponse resp;
  req.set_pod_sandbox_id(pod_b);
  grpc::Status s = service_->PodSandboxStats(nullptr, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("pod_sandbox_id"));
  req.set_pod_sandbox_id("");
  s = service_->PodSandboxStats(nullptr, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("pod_sandbox_id"));
  req.set_pod_sandbox_id(std::string(64, 'f'));
  EXPECT_EQ(service_->PodSandboxStats(nullptr, &req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  pb::ContainerStatsRequest creq;
  pb::ContainerStatsResponse cresp;
  s = service_->ContainerStats(nullptr, &creq, &cresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("container_id"));
  creq.set_container_id(std::string(64, 'f'));
  EXPECT_EQ(service_->ContainerStats(nullptr, &creq, &cresp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(CriStatsTest, PodStatsSumItsContainersAndReportTheCniInterfaceButNotLoOrTheTap) {
  std::string pod;
  const std::string ctr = RunningPodVm("web", &pod);
  const std::string cg = Place(ctr);
  SetUsage(cg, 1'000'000'000, 200 * kMiB, 0, 150 * kMiB, kGiB, 12);
  absl::StatusOr<sandbox::SandboxRecord> sb = store_->GetSandbox(pod);
  ASSERT_TRUE(sb.ok());
  const std::string tap = sb->network.nics.empty() ? "tap0" : sb->network.nics[0].tap_name;
  const std::string eth = sb->network.nics.empty() ? "eth0" : sb->network.nics[0].cni_ifname;
  {
    absl::MutexLock l(&netdev_.mu);
    netdev_.counters[sb->netns_path] = {{"lo", 5, 1, 0, 0, 5, 1, 0, 0},
                                        {"net1", 10, 1, 0, 0, 20, 2, 0, 0},
                                        {eth, 1000, 10, 2, 0, 3000, 30, 4, 0},
                                        {tap, 3000, 30, 0, 0, 1000, 10, 0, 0}};
  }
  std::vector<pb::PodSandboxStats> stats = ListPodStats();
  ASSERT_EQ(stats.size(), 1u);
  const pb::LinuxPodSandboxStats& l = stats[0].linux();
  EXPECT_EQ(stats[0].attributes().metadata().name(), "web");
  EXPECT_EQ(stats[0].attributes().labels().at("app"), "web");
  EXPECT_EQ(l.cpu().usage_core_nano_seconds().value(), 1'000'000'000u);
  EXPECT_EQ(l.memory().working_set_bytes().value(), 200 * kMiB);
  EXPECT_EQ(l.process().process_count().value(), 12u);
  EXPECT_GT(l.process().timestamp(), 0);
  ASSERT_EQ(l.containers_size(), 1);
  EXPECT_EQ(l.containers(0).attributes().id(), ctr);
  std::vector<std::string> names;
  for (const auto& i : l.network().interfaces()) names.push_back(i.name());
  EXPECT_THAT(names, ElementsAre("net1", eth));
  EXPECT_EQ(l.network().default_interface().name(), eth);
  EXPECT_EQ(l.network().default_interface().rx_bytes().value(), 1000u);
  EXPECT_EQ(l.network().default_interface().rx_errors().value(), 2u);
  EXPECT_EQ(l.network().default_interface().tx_bytes().value(), 3000u);
  EXPECT_EQ(l.network().default_interface().tx_errors().value(), 4u);
  EXPECT_GT(l.network().timestamp(), 0);

  // The Pod's rate is over its own samples.
  manual_clock_.Advance(absl::Seconds(4));
  SetUsage(cg, 3'000'000'000, 200 * kMiB, 0, 150 * kMiB, kGiB, 12);
  pb::PodSandboxStatsRequest req;
  req.set_pod_sandbox_id(pod);
  pb::PodSandboxStatsResponse resp;
  ASSERT_TRUE(service_->PodSandboxStats(nullptr, &req, &resp).ok());
  EXPECT_EQ(resp.stats().linux().cpu().usage_nano_cores().value(), 500'000'000u);

  // A netns that cannot be read leaves the network out, not the Pod.
  {
    absl::MutexLock l2(&netdev_.mu);
    netdev_.error = absl::PermissionDeniedError("setns");
  }
  stats = ListPodStats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_FALSE(stats[0].linux().has_network());
  EXPECT_TRUE(stats[0].linux().has_cpu());
}

TEST_F(CriStatsTest, PodStatsCountThePodMicroVmsCgroup) {
  // A Pod of plain-image containers: its micro-VM's QEMU is in a cgroup of
  // its own, named by the sandbox record.
  std::string pod;
  ASSERT_TRUE(RunPod("plain", &pod).ok());
  absl::StatusOr<runtime::cgroup::CgroupTarget> t = placer_->Plan("", pod);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE(runtime::cgroup::CreateCgroup(placer_->layout(), t->path).ok());
  ASSERT_TRUE(store_
                  ->UpdateSandbox(pod,
                                  [&](sandbox::SandboxRecord& r) {
                                    r.pod_vm.domain_name = "kvcri-" + pod;
                                    r.pod_vm.cgroup_path = t->path;
                                    return absl::OkStatus();
                                  })
                  .ok());
  SetUsage(t->path, 2'000'000'000, 300 * kMiB, 0, 250 * kMiB, kGiB, 9);
  pb::PodSandboxStatsRequest req;
  req.set_pod_sandbox_id(pod);
  pb::PodSandboxStatsResponse resp;
  ASSERT_TRUE(service_->PodSandboxStats(nullptr, &req, &resp).ok());
  const pb::LinuxPodSandboxStats& l = resp.stats().linux();
  EXPECT_EQ(l.cpu().usage_core_nano_seconds().value(), 2'000'000'000u);
  EXPECT_EQ(l.memory().working_set_bytes().value(), 300 * kMiB);
  EXPECT_EQ(l.process().process_count().value(), 9u);
}

TEST_F(CriStatsTest, RemovedContainersLeaveTheSampleCacheOnTheNextUnfilteredList) {
  std::string pod;
  const std::string ctr = RunningPodVm("web", &pod);
  SetUsage(Place(ctr), 1, 1, 0, 1, 0, 1);
  ListPodStats();
  EXPECT_EQ(service_->stats().cached_samples(), 2u) << "the container's and the Pod's";
  ASSERT_TRUE(StopPod(pod).ok());
  ASSERT_TRUE(RemovePod(pod).ok());
  ListStats();
  EXPECT_EQ(service_->stats().cached_samples(), 0u);
}

TEST_F(CriStatsTest, MetricsUseCadvisorNamesAndLabelsForEveryDescribedSeries) {
  std::string pod;
  const std::string ctr = RunningPodVm("web", &pod);
  SetUsage(Place(ctr), 7'900'000'000, 300 * kMiB, 50 * kMiB, 200 * kMiB, kGiB, 4);
  runtime::VmStats vm;
  vm.memory_actual_bytes = 512 * kMiB;
  vm.memory_unused_bytes = 100 * kMiB;
  absl::StatusOr<sandbox::SandboxRecord> sb = store_->GetSandbox(pod);
  {
    absl::MutexLock l(&hv_.mu);
    hv_.vm_stats["kvcri-" + ctr] = vm;
  }
  {
    absl::MutexLock l(&netdev_.mu);
    netdev_.counters[sb->netns_path] = {{"eth0", 1000, 10, 0, 0, 3000, 30, 0, 0}};
  }
  pb::ListMetricDescriptorsRequest dreq;
  pb::ListMetricDescriptorsResponse dresp;
  ASSERT_TRUE(service_->ListMetricDescriptors(nullptr, &dreq, &dresp).ok());
  std::map<std::string, std::vector<std::string>> keys;
  for (const auto& d : dresp.descriptors()) keys[d.name()] = {d.label_keys().begin(), d.label_keys().end()};
  EXPECT_THAT(keys["container_cpu_usage_seconds_total"],
              ElementsAre("id", "image", "namespace", "pod", "container", "cpu"));
  EXPECT_THAT(keys["container_memory_working_set_bytes"], ElementsAre("id", "image", "namespace", "pod", "container"));
  EXPECT_THAT(keys["container_network_receive_bytes_total"],
              ElementsAre("id", "image", "namespace", "pod", "container", "interface"));

  pb::ListPodSandboxMetricsRequest req;
  pb::ListPodSandboxMetricsResponse resp;
  ASSERT_TRUE(service_->ListPodSandboxMetrics(nullptr, &req, &resp).ok());
  ASSERT_EQ(resp.pod_metrics_size(), 1);
  const pb::PodSandboxMetrics& pm = resp.pod_metrics(0);
  EXPECT_EQ(pm.pod_sandbox_id(), pod);
  std::map<std::string, const pb::Metric*> by_name;
  for (const auto& m : pm.metrics()) by_name[m.name()] = &m;
  ASSERT_EQ(pm.container_metrics_size(), 1);
  EXPECT_EQ(pm.container_metrics(0).container_id(), ctr);
  for (const auto& m : pm.container_metrics(0).metrics()) by_name[m.name()] = &m;
  // Every series has a descriptor and as many label values as it has keys.
  for (const auto& [name, m] : by_name) {
    ASSERT_TRUE(keys.count(name)) << name;
    EXPECT_EQ(static_cast<size_t>(m->label_values_size()), keys[name].size()) << name;
    EXPECT_GT(m->timestamp(), 0) << name;
  }
  const pb::Metric* cpu = by_name["container_cpu_usage_seconds_total"];
  ASSERT_NE(cpu, nullptr);
  EXPECT_EQ(cpu->metric_type(), pb::COUNTER);
  EXPECT_EQ(cpu->value().value(), 7u);
  EXPECT_THAT(cpu->label_values(), ElementsAre(ctr, "example.com/vm:1", "ns", "web", "vm", "total"));
  EXPECT_EQ(by_name["container_memory_working_set_bytes"]->value().value(), 250 * kMiB);
  EXPECT_EQ(by_name["container_memory_working_set_bytes"]->metric_type(), pb::GAUGE);
  EXPECT_EQ(by_name["container_spec_memory_limit_bytes"]->value().value(), kGiB);
  EXPECT_EQ(by_name["kvcri_guest_memory_unused_bytes"]->value().value(), 100 * kMiB);
  const pb::Metric* rx = by_name["container_network_receive_bytes_total"];
  ASSERT_NE(rx, nullptr);
  EXPECT_EQ(rx->value().value(), 1000u);
  EXPECT_THAT(rx->label_values(), ElementsAre(pod, "", "ns", "web", "POD", "eth0"));
}

TEST_F(CriStatsTest, EveryStatsCallIsTimedInTheCollectionHistogram) {
  std::string pod;
  RunningPodVm("web", &pod);
  ListStats();
  ListPodStats();
  ListPodStats();
  const std::string text = registry_.Expose();
  EXPECT_THAT(text, HasSubstr("kvcri_stats_collection_duration_seconds_count{rpc=\"ListContainerStats\"} 1"));
  EXPECT_THAT(text, HasSubstr("kvcri_stats_collection_duration_seconds_count{rpc=\"ListPodSandboxStats\"} 2"));
}

TEST(ProcNetDev, ParsesTheKernelsLayoutAndRefusesOtherShapes) {
  const char* text =
      "Inter-|   Receive                                                |  Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls "
      "carrier compressed\n"
      "    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       "
      "0          0\n"
      "  eth0: 123456789  1000    3    4    0     0          0         0  987654   900    5    6    0     0       0 "
      "         0\n";
  absl::StatusOr<std::vector<cni::InterfaceCounters>> got = cni::ParseProcNetDev(text);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[1], (cni::InterfaceCounters{"eth0", 123456789, 1000, 3, 4, 987654, 900, 5, 6}));
  EXPECT_FALSE(cni::ParseProcNetDev("h\nh\n  eth0: 1 2 3\n").ok());
  EXPECT_FALSE(cni::ParseProcNetDev("h\nh\n  eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n").ok());
  EXPECT_FALSE(cni::ParseProcNetDev("h\nh\n  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\n").ok());
}

TEST(DiskUsage, CountsAllocatedBlocksNotApparentSizesAndNamesTheMountPoint) {
  std::string tmpl = "/tmp/kvcri-disk-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const fs::path dir = tmpl;
  {
    std::ofstream full(dir / "written");
    full << std::string(1 << 20, 'x');
  }
  {
    std::ofstream sparse(dir / "sparse");
    sparse.seekp((64 << 20) - 1);
    sparse << 'x';
  }
  absl::StatusOr<runtime::DiskUsage> u = runtime::DirDiskUsage(dir);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_GE(u->used_bytes, uint64_t{1} << 20);
  EXPECT_LT(u->used_bytes, uint64_t{8} << 20) << "the 64 MiB sparse file allocates one block";
  EXPECT_EQ(u->inodes_used, 3u);
  EXPECT_EQ(dir.string().rfind(u->mountpoint, 0), 0u) << u->mountpoint;
  EXPECT_EQ(runtime::DirDiskUsage(dir / "missing").status().code(), absl::StatusCode::kNotFound);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kvcri::cri
