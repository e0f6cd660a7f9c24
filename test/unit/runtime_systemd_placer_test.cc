// runtime/cgroup/systemd_placer: the D-Bus calls on the wire against FakeSystemd, on v1 and v2 scratch trees.
#include "runtime/cgroup/systemd_placer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <fstream>
#include <future>
#include <sstream>

#include "test/fakes/fake_systemd.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::runtime::cgroup {
namespace {

namespace fs = std::filesystem;
using ::kvcri::testing::FakeSystemd;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kPodSlice[] = "kubepods-burstable-pod1.slice";
constexpr char kPodPath[] = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice";

class SystemdPlacerTest : public ::kvcri::testing::ScratchDirTest {
 protected:
  void Write(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  static std::string Read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // A cgroup v2 tree: the unified root and the scope's files, as the kernel
  // makes them when systemd creates the scope.
  CgroupLayout V2() {
    Write(dir_ / "cgroup.controllers", "cpuset cpu io memory pids\n");
    for (const char* f : {"cgroup.procs", "cpu.max", "cpu.weight", "memory.max", "cpuset.cpus", "cpuset.mems"}) {
      Write(dir_ / (std::string(kPodPath).substr(1) + "/kvcri-c1.scope") / f, "");
    }
    absl::StatusOr<CgroupLayout> l = CgroupLayout::Detect(dir_);
    EXPECT_TRUE(l.ok()) << l.status();
    return *l;
  }
  // A v1 tree with one hierarchy per controller; the scope's directory in
  // each (cgroup.procs and the limit files the kernel would show).
  CgroupLayout V1() {
    const std::string scope = std::string(kPodPath).substr(1) + "/kvcri-c1.scope";
    const std::map<std::string, std::vector<std::string>> files = {
        {"cpu", {"cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"}},
        {"cpuacct", {}},
        {"cpuset", {"cpuset.cpus", "cpuset.mems"}},
        {"memory", {"memory.limit_in_bytes", "memory.move_charge_at_immigrate"}},
        {"pids", {}}};
    for (const auto& [controller, names] : files) {
      Write(dir_ / controller / scope / "cgroup.procs", "");
      for (const std::string& f : names) Write(dir_ / controller / scope / f, "");
    }
    absl::StatusOr<CgroupLayout> l = CgroupLayout::Detect(dir_);
    EXPECT_TRUE(l.ok()) << l.status();
    return *l;
  }
  // systemd removes a stopped scope's cgroup (in every hierarchy it manages).
  void SetUp() override {
    ScratchDirTest::SetUp();
    fake_.OnStop([this](const std::string& unit) {
      const std::string rel = std::string(kPodPath).substr(1) + "/" + unit;
      fs::remove_all(dir_ / rel);
      for (const char* c : {"cpu", "cpuacct", "memory", "pids"}) fs::remove_all(dir_ / c / rel);
    });
  }
  std::unique_ptr<SystemdPlacer> Placer(CgroupLayout layout, SystemdPlacerOptions options = {}) {
    absl::StatusOr<std::unique_ptr<SystemdPlacer>> p =
        SystemdPlacer::Create(std::move(layout), "kvcri.slice", fake_.Factory(), options);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *std::move(p) : nullptr;
  }
  CgroupTarget Target(const SystemdPlacer& p) {
    absl::StatusOr<CgroupTarget> t = p.Plan(kPodSlice, "c1");
    EXPECT_TRUE(t.ok()) << t.status();
    return *t;
  }
  // The calls with `method`, in order.
  std::vector<FakeSystemd::Call> CallsOf(const std::string& method) {
    std::vector<FakeSystemd::Call> out;
    for (const FakeSystemd::Call& c : fake_.calls()) {
      if (c.method == method) out.push_back(c);
    }
    return out;
  }

  FakeSystemd fake_;
};

TEST_F(SystemdPlacerTest, PlanPutsAScopeNamedAfterTheContainerIntoThePodsSlice) {
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->driver(), "systemd");
  absl::StatusOr<CgroupTarget> t = p->Plan(kPodSlice, "c1");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->unit, "kvcri-c1.scope");
  EXPECT_EQ(t->slice, kPodSlice);
  EXPECT_EQ(t->path, std::string(kPodPath) + "/kvcri-c1.scope");
  // Pods without a cgroup_parent (crictl): the placer's default slice.
  t = p->Plan("", "c1");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->slice, "kvcri.slice");
  EXPECT_EQ(t->path, "/kvcri.slice/kvcri-c1.scope");
  // The root slice.
  t = p->Plan("-.slice", "c1");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->path, "/kvcri-c1.scope");
  EXPECT_THAT(fake_.methods(), IsEmpty()) << "Plan creates nothing";
}

TEST_F(SystemdPlacerTest, PlanRefusesACgroupfsPathNamingTheField) {
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  for (const char* parent :
       {"/kubepods/burstable/pod1", "kubepods.slice/kubepods-burstable.slice", "a--b.slice", ".slice"}) {
    absl::StatusOr<CgroupTarget> t = p->Plan(parent, "c1");
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << parent;
    EXPECT_THAT(t.status().message(), HasSubstr("linux.cgroup_parent")) << parent;
    EXPECT_THAT(t.status().message(), HasSubstr(parent));
  }
  EXPECT_EQ(p->Plan(kPodSlice, "c/1").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SystemdPlacerTest, ConnectWithoutASystemBusIsFailedPreconditionSayingSo) {
  // No systemd here; point sd_bus_open_system at a socket that does not exist.
  const std::string addr = "unix:path=" + (dir_ / "no-bus").native();
  const char* old = ::getenv("DBUS_SYSTEM_BUS_ADDRESS");
  const std::string saved = old ? old : "";
  ::setenv("DBUS_SYSTEM_BUS_ADDRESS", addr.c_str(), 1);
  absl::StatusOr<std::unique_ptr<SystemdPlacer>> p = SystemdPlacer::Connect(V2(), "kvcri.slice");
  if (old) {
    ::setenv("DBUS_SYSTEM_BUS_ADDRESS", saved.c_str(), 1);
  } else {
    ::unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
  }
  EXPECT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(p.status().message(), HasSubstr("runtime.cgroup_driver is \"systemd\""));
  EXPECT_THAT(p.status().message(), HasSubstr("cgroupfs"));
}

TEST_F(SystemdPlacerTest, ConnectSpeaksToSystemdThroughTheSystemBus) {
  // The fake as the system bus: sd_bus_open_system's Hello, the AddMatch
  // for JobRemoved with systemd's name as sender, then the Manager.
  const fs::path sock = dir_ / "system_bus_socket";
  ASSERT_TRUE(fake_.ListenAsSystemBus(sock.native()).ok());
  const char* old = ::getenv("DBUS_SYSTEM_BUS_ADDRESS");
  const std::string saved = old ? old : "";
  ::setenv("DBUS_SYSTEM_BUS_ADDRESS", ("unix:path=" + sock.native()).c_str(), 1);
  absl::StatusOr<std::unique_ptr<SystemdPlacer>> p = SystemdPlacer::Connect(V2(), "kvcri.slice");
  absl::Status placed = p.ok() ? (*p)->Place(Target(**p), {4242}) : p.status();
  if (old) {
    ::setenv("DBUS_SYSTEM_BUS_ADDRESS", saved.c_str(), 1);
  } else {
    ::unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
  }
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->systemd_version(), 252);
  EXPECT_TRUE(placed.ok()) << placed;
  std::vector<FakeSystemd::Call> matches = CallsOf("AddMatch");
  ASSERT_EQ(matches.size(), 1u);
  EXPECT_THAT(matches[0].unit, HasSubstr("sender='org.freedesktop.systemd1'"));
  EXPECT_THAT(matches[0].unit, HasSubstr("member='JobRemoved'"));
  EXPECT_EQ(fake_.units().at("kvcri-c1.scope"), "active");
}

TEST_F(SystemdPlacerTest, CreateAsksTheManagerForItsVersionAndRefusesABadDefaultSlice) {
  fake_.SetVersion("v245.4-1.fc32");
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->systemd_version(), 245);
  absl::StatusOr<std::unique_ptr<SystemdPlacer>> bad = SystemdPlacer::Create(V2(), "/kubepods", fake_.Factory());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SystemdPlacerTest, PlaceStartsATransientScopeWithRuncsProperties) {
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  const CgroupTarget t = Target(*p);
  ASSERT_TRUE(p->Place(t, {4242, 4243}).ok());

  std::vector<FakeSystemd::Call> starts = CallsOf("StartTransientUnit");
  ASSERT_EQ(starts.size(), 1u);
  const FakeSystemd::Call& c = starts[0];
  EXPECT_EQ(c.unit, "kvcri-c1.scope");
  EXPECT_EQ(c.mode, "fail");
  EXPECT_EQ(c.aux_units, 0u);
  const FakeSystemd::Property* slice = c.Find("Slice");
  ASSERT_NE(slice, nullptr);
  EXPECT_EQ(slice->signature, "s");
  EXPECT_EQ(slice->s, kPodSlice);
  const FakeSystemd::Property* pids = c.Find("PIDs");
  ASSERT_NE(pids, nullptr);
  EXPECT_EQ(pids->signature, "au");
  EXPECT_THAT(pids->au, ElementsAre(4242u, 4243u));
  for (const char* name : {"Delegate", "CPUAccounting", "MemoryAccounting", "TasksAccounting", "IOAccounting"}) {
    const FakeSystemd::Property* b = c.Find(name);
    ASSERT_NE(b, nullptr) << name;
    EXPECT_EQ(b->signature, "b") << name;
    EXPECT_TRUE(b->b) << name;
  }
  const FakeSystemd::Property* deps = c.Find("DefaultDependencies");
  ASSERT_NE(deps, nullptr);
  EXPECT_EQ(deps->signature, "b");
  EXPECT_FALSE(deps->b);
  const FakeSystemd::Property* desc = c.Find("Description");
  ASSERT_NE(desc, nullptr);
  EXPECT_THAT(desc->s, HasSubstr("kvcri-c1"));
  EXPECT_EQ(c.Find("BlockIOAccounting"), nullptr) << "v1's name on a v2 host";
  EXPECT_EQ(fake_.units().at("kvcri-c1.scope"), "active");
  // Create's probe and Place: one connection each.
  EXPECT_EQ(fake_.connections(), 2);
}

TEST_F(SystemdPlacerTest, PlaceFailsClearlyWhenTheJobEndsFailedAndLeavesNoUnit) {
  fake_.SetStartResult("failed");
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  absl::Status s = p->Place(Target(*p), {4242});
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("\"kvcri-c1.scope\""));
  EXPECT_THAT(s.message(), HasSubstr("ended \"failed\""));
  EXPECT_THAT(fake_.methods(), ElementsAre("StartTransientUnit", "StopUnit", "ResetFailedUnit"));
  EXPECT_THAT(fake_.units(), IsEmpty()) << "the failed unit is reset, so its name can be used again";
}

TEST_F(SystemdPlacerTest, PlaceTimesOutWhenTheJobNeverEnds) {
  fake_.SetJobsNeverEnd(true);
  auto p = Placer(V2(), {.job_timeout = absl::Milliseconds(300)});
  ASSERT_NE(p, nullptr);
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = p->Place(Target(*p), {4242});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(s.message(), HasSubstr("kvcri-c1.scope"));
  EXPECT_GE(took, std::chrono::milliseconds(300));
  EXPECT_LT(took, std::chrono::seconds(5));
  // Given up: stopped (replacing the pending start) and reset.
  std::vector<FakeSystemd::Call> stops = CallsOf("StopUnit");
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_EQ(stops[0].mode, "replace");
}

TEST_F(SystemdPlacerTest, AJobThatNeverEndsDoesNotHoldUpOtherPods) {
  fake_.HangJobsOf("kvcri-slow.scope");
  auto p = Placer(V2(), {.job_timeout = absl::Seconds(3)});
  ASSERT_NE(p, nullptr);
  absl::StatusOr<CgroupTarget> slow = p->Plan(kPodSlice, "slow");
  ASSERT_TRUE(slow.ok());
  std::future<absl::Status> waiting = std::async(std::launch::async, [&] { return p->Place(*slow, {1}); });
  // Let the slow Place reach its wait.
  for (int i = 0; i < 200 && CallsOf("StartTransientUnit").empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(p->Place(Target(*p), {2}).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_EQ(waiting.wait_for(std::chrono::seconds(0)), std::future_status::timeout) << "the slow one still waits";
  EXPECT_EQ(waiting.get().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(SystemdPlacerTest, PlaceAfterACrashResetsAFailedLeftoverAndStartsAgain) {
  fake_.AddUnit("kvcri-c1.scope", "failed");
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(p->Place(Target(*p), {4242}).ok());
  EXPECT_THAT(fake_.methods(), ElementsAre("StartTransientUnit", "ResetFailedUnit", "StartTransientUnit"));
  EXPECT_EQ(fake_.units().at("kvcri-c1.scope"), "active");
}

TEST_F(SystemdPlacerTest, PlaceAfterACrashGivesARunningLeftoverScopeThePids) {
  fake_.AddUnit("kvcri-c1.scope", "active");
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(p->Place(Target(*p), {4242, 4243}).ok());
  EXPECT_THAT(fake_.methods(),
              ElementsAre("StartTransientUnit", "ResetFailedUnit", "StartTransientUnit", "AttachProcessesToUnit"));
  std::vector<FakeSystemd::Call> attach = CallsOf("AttachProcessesToUnit");
  ASSERT_EQ(attach.size(), 1u);
  EXPECT_EQ(attach[0].unit, "kvcri-c1.scope");
  EXPECT_EQ(attach[0].subcgroup, "");
  EXPECT_THAT(attach[0].pids, ElementsAre(4242u, 4243u));
}

TEST_F(SystemdPlacerTest, RemoveStopsTheScopeWaitsAndResetsIt) {
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  const CgroupTarget t = Target(*p);
  ASSERT_TRUE(p->Place(t, {4242}).ok());
  ASSERT_TRUE(p->Remove(t).ok());
  std::vector<FakeSystemd::Call> stops = CallsOf("StopUnit");
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_EQ(stops[0].unit, "kvcri-c1.scope");
  EXPECT_EQ(stops[0].mode, "fail");
  EXPECT_THAT(fake_.methods(), ElementsAre("StartTransientUnit", "StopUnit", "ResetFailedUnit"));
  EXPECT_THAT(fake_.units(), IsEmpty());
  EXPECT_FALSE(fs::exists(dir_ / (std::string(kPodPath).substr(1) + "/kvcri-c1.scope")));
}

TEST_F(SystemdPlacerTest, RemoveOfAScopeSystemdNoLongerHasIsOk) {
  // A scope whose last process exited is gone from systemd already, its cgroup too.
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  fs::remove_all(dir_ / (std::string(kPodPath).substr(1) + "/kvcri-c1.scope"));
  EXPECT_TRUE(p->Remove(Target(*p)).ok());
  EXPECT_THAT(fake_.methods(), ElementsAre("StopUnit", "ResetFailedUnit"));
  // A target of no driver.
  EXPECT_TRUE(p->Remove(CgroupTarget{}).ok());
}

TEST_F(SystemdPlacerTest, RemoveWhoseStopFailsStillResetsTheUnit) {
  fake_.SetStopResult("failed");
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  const CgroupTarget t = Target(*p);
  ASSERT_TRUE(p->Place(t, {4242}).ok());
  EXPECT_TRUE(p->Remove(t).ok());
  EXPECT_THAT(fake_.units(), IsEmpty());
}

TEST_F(SystemdPlacerTest, RemoveRefusesWhileAProcessIsStillInTheScope) {
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  const CgroupTarget t = Target(*p);
  Write(dir_ / (t.path.substr(1) + "/cgroup.procs"), "4242\n");
  absl::Status s = p->Remove(t);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("4242"));
  EXPECT_THAT(fake_.methods(), IsEmpty()) << "no StopUnit: it would kill the VM";
}

TEST_F(SystemdPlacerTest, OnV1PlaceJoinsTheHierarchiesSystemdLeavesAlone) {
  auto p = Placer(V1());
  ASSERT_NE(p, nullptr);
  const CgroupTarget t = Target(*p);
  ASSERT_TRUE(p->Place(t, {4242}).ok());
  std::vector<FakeSystemd::Call> starts = CallsOf("StartTransientUnit");
  ASSERT_EQ(starts.size(), 1u);
  ASSERT_NE(starts[0].Find("BlockIOAccounting"), nullptr) << "v1's name for IO accounting";
  EXPECT_EQ(starts[0].Find("IOAccounting"), nullptr);
  // systemd has no cpuset controller on v1: the file write puts QEMU there.
  EXPECT_EQ(Read(dir_ / "cpuset" / t.path.substr(1) / "cgroup.procs"), "4242\n");
}

TEST_F(SystemdPlacerTest, SetLimitsOnV2SendsRuncsPropertiesThenWritesTheFiles) {
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  const CgroupTarget t = Target(*p);
  ASSERT_TRUE(p->Place(t, {4242}).ok());
  CgroupLimits l;
  l.cpu_quota_us = 33333;  // 33.333 % of a CPU: systemd keeps whole percent, so 34 %
  l.cpu_period_us = 100000;
  l.cpu_shares = 1024;
  l.memory_limit_bytes = 512 << 20;
  l.cpuset_cpus = "0-2,9";
  l.cpuset_mems = "0";
  ASSERT_TRUE(p->SetLimits(t, l).ok());

  std::vector<FakeSystemd::Call> sets = CallsOf("SetUnitProperties");
  ASSERT_EQ(sets.size(), 1u);
  const FakeSystemd::Call& c = sets[0];
  EXPECT_EQ(c.unit, "kvcri-c1.scope");
  EXPECT_TRUE(c.runtime);
  auto t_of = [&](const char* name) -> uint64_t {
    const FakeSystemd::Property* x = c.Find(name);
    EXPECT_NE(x, nullptr) << name;
    if (!x) return 0;
    EXPECT_EQ(x->signature, "t") << name;
    return x->t;
  };
  EXPECT_EQ(t_of("MemoryMax"), 512u << 20);
  EXPECT_EQ(t_of("CPUWeight"), 39u);  // runc's shares -> weight: 1 + (1022 * 9999) / 262142
  EXPECT_EQ(t_of("CPUQuotaPerSecUSec"), 340000u);
  EXPECT_EQ(t_of("CPUQuotaPeriodUSec"), 100000u);
  const FakeSystemd::Property* cpus = c.Find("AllowedCPUs");
  ASSERT_NE(cpus, nullptr);
  EXPECT_EQ(cpus->signature, "ay");
  EXPECT_THAT(cpus->ay, ElementsAre(0x07, 0x02));
  const FakeSystemd::Property* mems = c.Find("AllowedMemoryNodes");
  ASSERT_NE(mems, nullptr);
  EXPECT_THAT(mems->ay, ElementsAre(0x01));
  for (const char* v1_name : {"MemoryLimit", "CPUShares"}) EXPECT_EQ(c.Find(v1_name), nullptr) << v1_name;

  // The files say the same, with the quota rounded as systemd keeps it.
  const fs::path scope = dir_ / t.path.substr(1);
  EXPECT_EQ(Read(scope / "cpu.max"), "34000 100000");
  EXPECT_EQ(Read(scope / "cpu.weight"), "39");
  EXPECT_EQ(Read(scope / "memory.max"), std::to_string(512 << 20));
  EXPECT_EQ(Read(scope / "cpuset.cpus"), "0-2,9");
}

TEST_F(SystemdPlacerTest, SetLimitsOnV1UsesTheV1PropertiesAndFiles) {
  auto p = Placer(V1());
  ASSERT_NE(p, nullptr);
  const CgroupTarget t = Target(*p);
  ASSERT_TRUE(p->Place(t, {4242}).ok());
  CgroupLimits l;
  l.cpu_quota_us = 50000;
  l.cpu_period_us = 100000;
  l.cpu_shares = 512;
  l.memory_limit_bytes = 256 << 20;
  l.cpuset_cpus = "1";
  ASSERT_TRUE(p->SetLimits(t, l).ok());
  std::vector<FakeSystemd::Call> sets = CallsOf("SetUnitProperties");
  ASSERT_EQ(sets.size(), 1u);
  const FakeSystemd::Call& c = sets[0];
  ASSERT_NE(c.Find("MemoryLimit"), nullptr);
  EXPECT_EQ(c.Find("MemoryLimit")->t, 256u << 20);
  ASSERT_NE(c.Find("CPUShares"), nullptr);
  EXPECT_EQ(c.Find("CPUShares")->t, 512u);
  ASSERT_NE(c.Find("CPUQuotaPerSecUSec"), nullptr);
  EXPECT_EQ(c.Find("CPUQuotaPerSecUSec")->t, 500000u);
  for (const char* v2_name : {"MemoryMax", "CPUWeight"}) EXPECT_EQ(c.Find(v2_name), nullptr) << v2_name;

  const std::string rel = t.path.substr(1);
  EXPECT_EQ(Read(dir_ / "cpu" / rel / "cpu.shares"), "512");
  EXPECT_EQ(Read(dir_ / "cpu" / rel / "cpu.cfs_quota_us"), "50000");
  EXPECT_EQ(Read(dir_ / "cpu" / rel / "cpu.cfs_period_us"), "100000");
  EXPECT_EQ(Read(dir_ / "memory" / rel / "memory.limit_in_bytes"), std::to_string(256 << 20));
  // systemd has no cpuset on v1: only the file carries it.
  EXPECT_EQ(Read(dir_ / "cpuset" / rel / "cpuset.cpus"), "1");
}

TEST_F(SystemdPlacerTest, SetLimitsLeavesOutWhatAnOldSystemdDoesNotKnowButWritesTheFiles) {
  fake_.SetVersion("241");
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  const CgroupTarget t = Target(*p);
  ASSERT_TRUE(p->Place(t, {4242}).ok());
  CgroupLimits l;
  l.cpu_quota_us = 20000;
  l.cpu_period_us = 50000;
  l.cpuset_cpus = "0";
  ASSERT_TRUE(p->SetLimits(t, l).ok());
  std::vector<FakeSystemd::Call> sets = CallsOf("SetUnitProperties");
  ASSERT_EQ(sets.size(), 1u);
  EXPECT_EQ(sets[0].Find("CPUQuotaPeriodUSec"), nullptr) << "v242+";
  EXPECT_EQ(sets[0].Find("AllowedCPUs"), nullptr) << "v244+";
  ASSERT_NE(sets[0].Find("CPUQuotaPerSecUSec"), nullptr);
  EXPECT_EQ(sets[0].Find("CPUQuotaPerSecUSec")->t, 400000u);
  EXPECT_EQ(Read(dir_ / t.path.substr(1) / "cpu.max"), "20000 50000");
  EXPECT_EQ(Read(dir_ / t.path.substr(1) / "cpuset.cpus"), "0");
}

TEST_F(SystemdPlacerTest, SetLimitsRefusesABadCpuListNamingTheField) {
  auto p = Placer(V2());
  ASSERT_NE(p, nullptr);
  CgroupLimits l;
  l.cpuset_cpus = "3-1";
  absl::Status s = p->SetLimits(Target(*p), l);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("linux.resources.cpuset_cpus"));
  EXPECT_THAT(s.message(), HasSubstr("\"3-1\""));
  EXPECT_TRUE(CallsOf("SetUnitProperties").empty());
}

TEST(CpuListToMask, SetsOneBitPerCpuLowestFirst) {
  auto mask = [](std::string_view s) { return CpuListToMask(s); };
  EXPECT_THAT(*mask("0"), ElementsAre(0x01));
  EXPECT_THAT(*mask("0-7"), ElementsAre(0xff));
  EXPECT_THAT(*mask("8"), ElementsAre(0x00, 0x01));
  EXPECT_THAT(*mask("1,3-5, 15\n"), ElementsAre(0x3a, 0x80));
  for (const char* bad : {"", ",", "a", "1-", "-1", "5-3", "1.5", "999999"}) {
    EXPECT_EQ(mask(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace kvcri::runtime::cgroup
