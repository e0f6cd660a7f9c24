// Pod helpers for integration tests: configs, start/remove, waits, leftovers, guest images.
#include "test/client/pod_helpers.h"

#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace kvcri::testing {

using Clock = std::chrono::steady_clock;

std::string GuestImageDir(const std::string& name) {
  return (std::filesystem::path(KVCRI_GUEST_DIR) / name).string();
}

pb::PodSandboxConfig SandboxConfig(const std::string& name, const std::filesystem::path& log_root,
                                   const std::string& ns) {
  pb::PodSandboxConfig c;
  c.mutable_metadata()->set_name(name);
  c.mutable_metadata()->set_namespace_(ns);
  c.mutable_metadata()->set_uid("uid-" + name);
  c.mutable_metadata()->set_attempt(0);
  c.set_hostname(name);
  c.set_log_directory((log_root / (ns + "_" + name)).string());
  (*c.mutable_labels())["app"] = name;
  (*c.mutable_labels())["io.kubernetes.pod.name"] = name;
  (*c.mutable_annotations())["test/annotation"] = "yes";
  return c;
}

pb::ContainerConfig VmContainerConfig(const std::string& name, const std::string& image) {
  pb::ContainerConfig c;
  c.mutable_metadata()->set_name(name);
  c.mutable_image()->set_image(image);
  c.set_log_path(name + "/0.log");
  (*c.mutable_labels())["container"] = name;
  (*c.mutable_annotations())["test/container-annotation"] = "yes";
  c.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(256ll << 20);
  return c;
}

static double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

bool StartPod(TestDaemon& d, const std::string& name, const std::string& image, std::string* pod_id,
              std::string* container_id, PodTimings* timings, pb::PodSandboxConfig* sandbox_out) {
  pb::PodSandboxConfig config = SandboxConfig(name, d.log_dir());
  if (sandbox_out) *sandbox_out = config;
  return StartPodWithConfig(d, config, image, pod_id, container_id, timings);
}

bool StartPodWithConfig(TestDaemon& d, const pb::PodSandboxConfig& config, const std::string& image,
                        std::string* pod_id, std::string* container_id, PodTimings* timings) {
  return StartPodWithConfigs(d, config, VmContainerConfig("vm", image), pod_id, container_id, timings);
}

grpc::Status CreateContainerIn(TestDaemon& d, const std::string& pod_id, const pb::PodSandboxConfig& sandbox,
                               const pb::ContainerConfig& config, std::string* container_id,
                               std::chrono::seconds timeout) {
  pb::CreateContainerRequest cr;
  cr.set_pod_sandbox_id(pod_id);
  *cr.mutable_config() = config;
  *cr.mutable_sandbox_config() = sandbox;
  pb::CreateContainerResponse resp;
  grpc::Status s = d.runtime().CreateContainer(Ctx(timeout).get(), cr, &resp);
  *container_id = resp.container_id();
  return s;
}

std::string RestartVmContainer(TestDaemon& d, const std::string& pod_id, const std::string& ctr,
                               const pb::PodSandboxConfig& sandbox, const std::string& image) {
  pb::StopContainerRequest stop;
  stop.set_container_id(ctr);
  stop.set_timeout(0);
  pb::StopContainerResponse stop_resp;
  grpc::Status s = d.runtime().StopContainer(Ctx(std::chrono::seconds(60)).get(), stop, &stop_resp);
  if (!s.ok()) {
    ADD_FAILURE() << "StopContainer: " << s.error_message();
    return "";
  }
  pb::ContainerConfig config = VmContainerConfig("vm", image);
  config.mutable_metadata()->set_attempt(1);
  config.set_log_path("vm/1.log");
  std::string id;
  s = CreateContainerIn(d, pod_id, sandbox, config, &id);
  if (!s.ok()) {
    ADD_FAILURE() << "CreateContainer: " << s.error_message();
    return "";
  }
  pb::StartContainerRequest start;
  start.set_container_id(id);
  pb::StartContainerResponse start_resp;
  s = d.runtime().StartContainer(Ctx(std::chrono::seconds(120)).get(), start, &start_resp);
  if (!s.ok()) {
    ADD_FAILURE() << "StartContainer: " << s.error_message();
    return "";
  }
  return id;
}

bool StartPodWithConfigs(TestDaemon& d, const pb::PodSandboxConfig& config, const pb::ContainerConfig& container,
                         std::string* pod_id, std::string* container_id, PodTimings* timings) {
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = config;
  run.set_runtime_handler("kubevirt");
  auto t0 = Clock::now();
  pb::RunPodSandboxResponse run_resp;
  grpc::Status s = d.runtime().RunPodSandbox(Ctx().get(), run, &run_resp);
  if (!s.ok()) {
    ADD_FAILURE() << "RunPodSandbox: " << s.error_message();
    return false;
  }
  *pod_id = run_resp.pod_sandbox_id();
  auto t1 = Clock::now();
  pb::CreateContainerRequest create;
  create.set_pod_sandbox_id(*pod_id);
  *create.mutable_config() = container;
  *create.mutable_sandbox_config() = run.config();
  pb::CreateContainerResponse create_resp;
  s = d.runtime().CreateContainer(Ctx().get(), create, &create_resp);
  if (!s.ok()) {
    ADD_FAILURE() << "CreateContainer: " << s.error_message();
    return false;
  }
  *container_id = create_resp.container_id();
  auto t2 = Clock::now();
  pb::StartContainerRequest start;
  start.set_container_id(*container_id);
  pb::StartContainerResponse start_resp;
  s = d.runtime().StartContainer(Ctx(std::chrono::seconds(120)).get(), start, &start_resp);
  if (!s.ok()) {
    ADD_FAILURE() << "StartContainer: " << s.error_message();
    return false;
  }
  auto t3 = Clock::now();
  if (timings != nullptr) {
    timings->run_sandbox_ms = Ms(t1 - t0);
    timings->create_ms = Ms(t2 - t1);
    timings->start_ms = Ms(t3 - t2);
    timings->total_ms = Ms(t3 - t0);
    pb::ContainerStatusResponse st = GetContainerStatus(d, *container_id);
    nlohmann::json ct = nlohmann::json::parse(st.info().count("timings") ? st.info().at("timings") : "{}", nullptr, false);
    if (ct.is_object()) timings->libvirt_create_ms = ct.value("libvirtCreateMs", 0.0);
    pb::PodSandboxStatusRequest sreq;
    sreq.set_pod_sandbox_id(*pod_id);
    sreq.set_verbose(true);
    pb::PodSandboxStatusResponse sresp;
    if (d.runtime().PodSandboxStatus(Ctx().get(), sreq, &sresp).ok() && sresp.info().count("timings")) {
      nlohmann::json st_j = nlohmann::json::parse(sresp.info().at("timings"), nullptr, false);
      if (st_j.is_object()) {
        timings->cni_plugins_ms = st_j.value("cniPluginsMs", 0.0);
        timings->wiring_ms = st_j.value("wiringMs", 0.0);
      }
    }
  }
  return true;
}

void RemovePod(TestDaemon& d, const std::string& pod_id) {
  pb::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod_id);
  pb::StopPodSandboxResponse stop_resp;
  grpc::Status s = d.runtime().StopPodSandbox(Ctx(std::chrono::seconds(120)).get(), stop, &stop_resp);
  EXPECT_TRUE(s.ok()) << "StopPodSandbox: " << s.error_message();
  pb::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(pod_id);
  pb::RemovePodSandboxResponse rm_resp;
  s = d.runtime().RemovePodSandbox(Ctx(std::chrono::seconds(120)).get(), rm, &rm_resp);
  EXPECT_TRUE(s.ok()) << "RemovePodSandbox: " << s.error_message();
}

bool WaitForFileContains(const std::filesystem::path& path, const std::string& needle,
                         std::chrono::seconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (ReadFileOrEmpty(path).find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

pb::ContainerStatusResponse GetContainerStatus(TestDaemon& d, const std::string& id) {
  pb::ContainerStatusRequest req;
  req.set_container_id(id);
  req.set_verbose(true);
  pb::ContainerStatusResponse resp;
  grpc::Status s = d.runtime().ContainerStatus(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << "ContainerStatus " << id << ": " << s.error_message();
  return resp;
}

bool WaitForContainerState(TestDaemon& d, const std::string& id, pb::ContainerState state,
                           std::chrono::seconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (GetContainerStatus(d, id).status().state() == state) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

}  // namespace kvcri::testing

namespace kvcri::testing {

void ImportGuestImages(TestDaemon& d) {
  for (const auto& [dir, ref] : {std::pair<std::string, std::string>{"oci-kernel", kKernelImage},
                                 {"oci-disk", kDiskImage}}) {
    std::string out;
    int rc = d.RunSubcommand({"images", "import", GuestImageDir(dir), ref}, &out);
    ASSERT_EQ(rc, 0) << "images import " << dir << ": " << out;
  }
}

std::vector<int> ProcessesMatching(const std::string& needle) {
  std::vector<int> pids;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmd = ReadFileOrEmpty(e.path() / "cmdline");
    for (char& ch : cmd) {
      if (ch == '\0') ch = ' ';
    }
    if (cmd.find(needle) != std::string::npos && std::stoi(name) != ::getpid()) pids.push_back(std::stoi(name));
  }
  return pids;
}

static std::vector<std::string> Entries(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) out.push_back(e.path().filename());
  return out;
}

void ExpectNoLeftovers(TestDaemon& d) {
  pb::ListPodSandboxResponse pods;
  ASSERT_TRUE(d.runtime().ListPodSandbox(Ctx().get(), pb::ListPodSandboxRequest(), &pods).ok());
  EXPECT_EQ(pods.items_size(), 0);
  pb::ListContainersResponse ctrs;
  ASSERT_TRUE(d.runtime().ListContainers(Ctx().get(), pb::ListContainersRequest(), &ctrs).ok());
  EXPECT_EQ(ctrs.containers_size(), 0);
  EXPECT_TRUE(Entries(d.root() / "containers").empty()) << "container dirs left";
  EXPECT_TRUE(Entries(d.state_dir() / "netns").empty()) << "network namespaces left";
  EXPECT_TRUE(Entries(d.state_dir() / "vm").empty()) << "VM socket dirs left";
  EXPECT_TRUE(Entries(d.root() / "pods").empty()) << "Pod micro-VM dirs left";
  // Pod network: no IP still allocated, no veth on the bridge, no cached ADD.
  for (const std::string& e : Entries(d.ipam_dir() / "kvcri-test")) {
    if (e != "lock" && e.rfind("last_reserved_ip", 0) != 0) ADD_FAILURE() << "IP still allocated: " << e;
  }
  if (!d.bridge().empty()) {
    for (const std::string& e : Entries(std::filesystem::path("/sys/class/net") / d.bridge() / "brif")) {
      ADD_FAILURE() << "veth left on bridge " << d.bridge() << ": " << e;
    }
  }
  for (const std::string& e : Entries(d.root() / "cni-cache" / "results")) ADD_FAILURE() << "CNI cache left: " << e;
  for (const std::string& e : Entries(d.root() / "sandboxes")) ADD_FAILURE() << "sandbox dir left: " << e;
  for (const std::string& e : Entries(d.root() / "libvirt" / "etc" / "qemu")) {
    if (e.rfind("kvcri-", 0) == 0) ADD_FAILURE() << "libvirt domain definition left: " << e;
  }
  // libvirt keeps each domain's QEMU log (stdio_handler "file") after undefine.
  for (const std::string& e : Entries(d.root() / "libvirt" / "log" / "qemu")) {
    if (e.rfind("kvcri-", 0) == 0) ADD_FAILURE() << "libvirt QEMU log left: " << e;
  }
  // VM cgroups below the default parent (Pods of tests have no cgroup_parent).
  if (!d.cgroup_parent().empty()) {
    for (const char* h : {"memory", "cpuacct", "pids", "cpuset", "cpu", ""}) {
      for (const std::string& e : Entries(std::filesystem::path("/sys/fs/cgroup") / h / d.cgroup_parent().substr(1))) {
        if (e.rfind("kvcri-", 0) == 0) ADD_FAILURE() << "cgroup left: " << h << d.cgroup_parent() << "/" << e;
      }
    }
  }
  // QEMU's command line names its monitor socket under the embed root.
  EXPECT_TRUE(ProcessesMatching((d.root() / "libvirt").string()).empty()) << "QEMU processes left";
}

int CountCriLogLines(const std::filesystem::path& log, const std::string& needle) {
  std::istringstream in(ReadFileOrEmpty(log));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (line.find(needle) == std::string::npos) continue;
    // 2026-11-29T00:00:00.123456789Z stdout F text
    size_t sp1 = line.find(' ');
    if (sp1 == std::string::npos || line[sp1 - 1] != 'Z' || line[4] != '-' || line[10] != 'T') continue;
    std::string rest = line.substr(sp1 + 1);
    if (rest.rfind("stdout F ", 0) != 0 && rest.rfind("stdout P ", 0) != 0) continue;
    ++n;
  }
  return n;
}

}  // namespace kvcri::testing
