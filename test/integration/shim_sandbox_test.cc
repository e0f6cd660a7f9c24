// containerd 1.6 runs a Pod sandbox through containerd-shim-kubevirt-v1: start, ttrpc Task calls, events, stop, remove, delete.
//
// Debian's real containerd (ContainerdFixture: private root, state, socket,
// CNI) with a `kubevirt` runtime handler whose shim is our binary, found on
// containerd's $PATH as an operator installs it. What this proves today:
// the shim v2 front door (the start/delete contract, the socket, ttrpc,
// events) and the sandbox task; container tasks are refused with a message
// that names the daemon path (docs/containerd-shim.md).

#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "shim/containerd/rootfs_image.h"
#include "test/client/containerd_fixture.h"
#include "test/client/host_util.h"
#include "test/client/pod_helpers.h"
#include "test/client/stream_client.h"
#include "test/client/test_daemon.h"
#include "test/fakes/shell.h"

namespace kvcri::testing {
namespace {

using ::testing::HasSubstr;

// Entries of containerd's shim socket directory.
std::vector<std::string> ShimSockets() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/run/containerd/s", ec)) out.push_back(e.path().string());
  return out;
}

// Pids whose /proc/<pid>/cmdline or comm contains `needle`.
std::vector<int> PidsMatching(const std::string& needle, bool comm) {
  std::vector<int> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string text = ReadFileOrEmpty(e.path() / (comm ? "comm" : "cmdline"));
    // The pause process is a fork of the shim: same cmdline, its own comm.
    if (!comm && ReadFileOrEmpty(e.path() / "comm").starts_with("kvcri-pause")) continue;
    // containerd's short-lived `start` and `delete` runs are not the shim server.
    if (!comm && (text.find(std::string("\0start", 6)) != std::string::npos ||
                  text.find(std::string("\0delete", 7)) != std::string::npos)) {
      continue;
    }
    if (text.find(needle) != std::string::npos) out.push_back(std::stoi(name));
  }
  return out;
}

template <typename Pred>
bool Eventually(Pred pred, std::chrono::seconds timeout = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return pred();
}

class ShimSandboxTest : public ::testing::Test {
 protected:
  void SetUp() override { Prepare(/*need_guest_images=*/false); }

  void Prepare(bool need_guest_images) {
    RequireIntegrationEnvironment(need_guest_images);
    // containerd looks the shim up on its $PATH, as it finds a .deb's /usr/bin.
    std::filesystem::create_directories(bin_.path());
    std::filesystem::create_symlink(KVCRI_SHIM_PATH, bin_.path() / "containerd-shim-kubevirt-v1");
    const char* path = ::getenv("PATH");
    ::setenv("PATH", (bin_.path().string() + ":" + (path ? path : "/usr/bin:/bin")).c_str(), 1);
    // The shims inherit containerd's environment: their node config (the
    // daemon's file format) keeps every Pod's state in this test's dirs.
    std::ofstream(state_.path() / "config.toml")
        << "root = \"" << (state_.path() / "root").string() << "\"\n"
        << "state_dir = \"" << (state_.path() / "run").string() << "\"\n";
    ::setenv("KVCRI_CONFIG", (state_.path() / "config.toml").c_str(), 1);
    ctrd_.AddRuntime("kubevirt", "io.containerd.kubevirt.v1");
    ctrd_.Start();
  }
  void TearDown() override { ::unsetenv("KVCRI_CONFIG"); }

  // The shims' per-Pod state dirs still there.
  std::vector<std::string> ShimStateLeft() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const char* d : {"root/shim", "run/shim"}) {
      for (const auto& e : std::filesystem::directory_iterator(state_.path() / d, ec)) out.push_back(e.path().string());
    }
    return out;
  }

  TempDir bin_;
  TempDir logs_;
  TempDir state_;
  ContainerdFixture ctrd_;
};

TEST_F(ShimSandboxTest, ASandboxRunsInItsShimAndLeavesNothingBehind) {
  ASSERT_FALSE(HasFatalFailure());
  const std::vector<std::string> sockets_before = ShimSockets();
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = SandboxConfig("shim-sb", logs_.path());
  run.set_runtime_handler("kubevirt");
  pb::RunPodSandboxResponse ran;
  grpc::Status s = ctrd_.runtime().RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &ran);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\ncontainerd:\n" << ctrd_.Log();
  const std::string pod = ran.pod_sandbox_id();

  // READY with the IP containerd's CNI gave, as containerd sees it from our
  // Create/Start replies and the TaskStart event.
  pb::PodSandboxStatusRequest sreq;
  sreq.set_pod_sandbox_id(pod);
  pb::PodSandboxStatusResponse status;
  ASSERT_TRUE(ctrd_.runtime().PodSandboxStatus(Ctx().get(), sreq, &status).ok());
  EXPECT_EQ(status.status().state(), pb::SANDBOX_READY);
  const std::string ip = status.status().network().ip();
  ASSERT_FALSE(ip.empty()) << ctrd_.Log();

  // One shim, one pause process, and the pause process sits in the Pod's
  // netns: /proc/<pid>/ns/net is what container specs get. The sandbox task
  // wired it for the VM: a tap beside eth0, and eth0's address moved off it
  // (the guest will hold it) and kept on record by the wiring.
  std::vector<int> shims = PidsMatching("containerd-shim-kubevirt-v1", /*comm=*/false);
  ASSERT_EQ(shims.size(), 1u) << ctrd_.Log();
  std::vector<int> pauses = PidsMatching("kvcri-pause", /*comm=*/true);
  ASSERT_EQ(pauses.size(), 1u);
  ShResult links = Sh("nsenter -t " + std::to_string(pauses[0]) + " -n ip -o link show");
  EXPECT_THAT(links.output, HasSubstr("tap0"));
  EXPECT_THAT(links.output, HasSubstr("eth0"));
  ShResult addrs = Sh("nsenter -t " + std::to_string(pauses[0]) + " -n ip -o addr show dev eth0");
  EXPECT_THAT(addrs.output, ::testing::Not(HasSubstr(ip + "/")));
  // Its socket is where containerd's rule puts it, for root only.
  std::vector<std::string> ours;
  for (const std::string& p : ShimSockets()) {
    if (std::find(sockets_before.begin(), sockets_before.end(), p) == sockets_before.end()) ours.push_back(p);
  }
  ASSERT_EQ(ours.size(), 1u);
  struct stat st {};
  ASSERT_EQ(::stat(ours[0].c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string shim_log = ReadFileOrEmpty(ctrd_.LogPath());
  EXPECT_THAT(shim_log, HasSubstr("shim serving")) << "the shim's stderr is containerd's log FIFO";

  // A container task joins the same shim (start finds its socket); a plain
  // container image is refused clearly.
  pb::PullImageRequest pull;
  pull.mutable_image()->set_image(ctrd_.BusyboxImage());
  pb::PullImageResponse pulled;
  ASSERT_TRUE(ctrd_.images().PullImage(Ctx(std::chrono::seconds(120)).get(), pull, &pulled).ok());
  pb::CreateContainerRequest create;
  create.set_pod_sandbox_id(pod);
  *create.mutable_sandbox_config() = run.config();
  create.mutable_config()->mutable_metadata()->set_name("c");
  create.mutable_config()->mutable_image()->set_image(ctrd_.BusyboxImage());
  create.mutable_config()->set_log_path("c/0.log");
  pb::CreateContainerResponse created;
  s = ctrd_.runtime().CreateContainer(Ctx().get(), create, &created);
  ASSERT_TRUE(s.ok()) << s.error_message();
  pb::StartContainerRequest start;
  start.set_container_id(created.container_id());
  pb::StartContainerResponse started;
  s = ctrd_.runtime().StartContainer(Ctx(std::chrono::seconds(60)).get(), start, &started);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.error_message(), HasSubstr("image \"" + ctrd_.BusyboxImage() + "\"")) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("it is a plain container image")) << s.error_message();
  EXPECT_EQ(PidsMatching("containerd-shim-kubevirt-v1", false).size(), 1u) << "one shim per Pod";
  pb::RemoveContainerRequest rmc;
  rmc.set_container_id(created.container_id());
  pb::RemoveContainerResponse rmced;
  EXPECT_TRUE(ctrd_.runtime().RemoveContainer(Ctx().get(), rmc, &rmced).ok());

  // Stop: containerd kills the sandbox task, waits for our TaskExit, deletes it.
  pb::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod);
  pb::StopPodSandboxResponse stopped;
  s = ctrd_.runtime().StopPodSandbox(Ctx(std::chrono::seconds(60)).get(), stop, &stopped);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << ctrd_.Log();
  ASSERT_TRUE(ctrd_.runtime().PodSandboxStatus(Ctx().get(), sreq, &status).ok());
  EXPECT_EQ(status.status().state(), pb::SANDBOX_NOTREADY);
  EXPECT_TRUE(Eventually([] { return PidsMatching("kvcri-pause", true).empty(); }));

  // Remove: the shim shuts down (no task left) and takes its socket with it.
  pb::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(pod);
  pb::RemovePodSandboxResponse removed;
  s = ctrd_.runtime().RemovePodSandbox(Ctx(std::chrono::seconds(60)).get(), rm, &removed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(Eventually([] { return PidsMatching("containerd-shim-kubevirt-v1", false).empty(); }))
      << ctrd_.Log();
  EXPECT_FALSE(std::filesystem::exists(ours[0])) << "the shim's socket outlived it";
  EXPECT_THAT(ctrd_.Log(), ::testing::Not(HasSubstr("level=error msg=\"failed to delete")));
}

// Shims outlive containerd: a restarted containerd reconnects through the
// bundle's address file and the sandbox is still READY. A shim killed with
// SIGKILL takes its pause process with it (PR_SET_PDEATHSIG); containerd
// notices the lost connection, runs `delete`, and reports the sandbox
// NOTREADY; removing it then leaves nothing.
TEST_F(ShimSandboxTest, ContainerdRestartKeepsTheSandboxAndAKilledShimEndsIt) {
  ASSERT_FALSE(HasFatalFailure());
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = SandboxConfig("shim-restart", logs_.path());
  run.set_runtime_handler("kubevirt");
  pb::RunPodSandboxResponse ran;
  grpc::Status s = ctrd_.runtime().RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &ran);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << ctrd_.Log();
  pb::PodSandboxStatusRequest sreq;
  sreq.set_pod_sandbox_id(ran.pod_sandbox_id());
  auto state = [&] {
    pb::PodSandboxStatusResponse status;
    grpc::Status st = ctrd_.runtime().PodSandboxStatus(Ctx().get(), sreq, &status);
    return st.ok() ? status.status().state() : pb::SANDBOX_NOTREADY;
  };

  ctrd_.Kill9();
  std::vector<int> shims = PidsMatching("containerd-shim-kubevirt-v1", false);
  ASSERT_EQ(shims.size(), 1u);
  ASSERT_EQ(PidsMatching("kvcri-pause", true).size(), 1u) << "the sandbox outlives containerd";
  ctrd_.Start();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(state(), pb::SANDBOX_READY) << ctrd_.Log();
  EXPECT_EQ(PidsMatching("containerd-shim-kubevirt-v1", false), shims) << "the same shim serves it";

  ASSERT_EQ(::kill(shims[0], SIGKILL), 0);
  EXPECT_TRUE(Eventually([] { return PidsMatching("kvcri-pause", true).empty(); }))
      << "the pause process dies with its shim";
  EXPECT_TRUE(Eventually([&] { return state() == pb::SANDBOX_NOTREADY; })) << ctrd_.Log();
  pb::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(ran.pod_sandbox_id());
  pb::RemovePodSandboxResponse removed;
  s = ctrd_.runtime().RemovePodSandbox(Ctx(std::chrono::seconds(60)).get(), rm, &removed);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(PidsMatching("containerd-shim-kubevirt-v1", false).empty());
}

// The acceptance path of the containerd runtime handler: a containerDisk
// Pod run through containerd's own CRI socket boots its VM in our shim, the
// guest has the Pod IP containerd's CNI gave, its console is the CRI log
// containerd writes, a stop is the guest's power-off (exit code 0), and
// removal leaves no shim, QEMU, tap or state; a runc Pod beside it works.
class ShimVmTest : public ShimSandboxTest {
 protected:
  void SetUp() override { Prepare(/*need_guest_images=*/true); }

  grpc::Status Start(const std::string& image, const pb::PodSandboxConfig& sandbox, std::string* pod,
                     std::string* ctr) {
    pb::RunPodSandboxRequest run;
    *run.mutable_config() = sandbox;
    run.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse ran;
    grpc::Status s = ctrd_.runtime().RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &ran);
    if (!s.ok()) return s;
    *pod = ran.pod_sandbox_id();
    pb::PullImageRequest pull;
    pull.mutable_image()->set_image(image);
    pb::PullImageResponse pulled;
    s = ctrd_.images().PullImage(Ctx(std::chrono::seconds(300)).get(), pull, &pulled);
    if (!s.ok()) return s;
    pb::CreateContainerRequest create;
    create.set_pod_sandbox_id(*pod);
    *create.mutable_sandbox_config() = sandbox;
    *create.mutable_config() = VmContainerConfig("vm", image);
    // containerd's CRI refuses a container with neither a command nor an
    // image Cmd, and containerDisks have none: the Pod names one, which the
    // VM ignores (docs/node.md "The other way in").
    create.mutable_config()->add_command("vm");
    pb::CreateContainerResponse created;
    s = ctrd_.runtime().CreateContainer(Ctx().get(), create, &created);
    if (!s.ok()) return s;
    *ctr = created.container_id();
    pb::StartContainerRequest start;
    start.set_container_id(*ctr);
    pb::StartContainerResponse started;
    return ctrd_.runtime().StartContainer(Ctx(std::chrono::seconds(180)).get(), start, &started);
  }

  pb::ContainerStatus Status(const std::string& ctr) {
    pb::ContainerStatusRequest req;
    req.set_container_id(ctr);
    pb::ContainerStatusResponse resp;
    grpc::Status s = ctrd_.runtime().ContainerStatus(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.status();
  }

  std::string PodIp(const std::string& pod) {
    pb::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(pod);
    pb::PodSandboxStatusResponse resp;
    EXPECT_TRUE(ctrd_.runtime().PodSandboxStatus(Ctx().get(), req, &resp).ok());
    return resp.status().network().ip();
  }

  void RemovePodThroughContainerd(const std::string& pod) {
    pb::StopPodSandboxRequest stop;
    stop.set_pod_sandbox_id(pod);
    pb::StopPodSandboxResponse stopped;
    grpc::Status s = ctrd_.runtime().StopPodSandbox(Ctx(std::chrono::seconds(120)).get(), stop, &stopped);
    EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << ctrd_.Log();
    pb::RemovePodSandboxRequest rm;
    rm.set_pod_sandbox_id(pod);
    pb::RemovePodSandboxResponse removed;
    s = ctrd_.runtime().RemovePodSandbox(Ctx(std::chrono::seconds(120)).get(), rm, &removed);
    EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << ctrd_.Log();
  }
};

TEST_F(ShimVmTest, AContainerDiskPodBootsThroughContainerdAndLeavesNothingBehind) {
  ASSERT_FALSE(HasFatalFailure());
  const std::string image = ctrd_.PushImage(GuestImageDir("oci-disk"), "vm:1");
  ASSERT_FALSE(HasFailure());
  const pb::PodSandboxConfig sandbox = SandboxConfig("shim-vm", logs_.path());
  std::string pod, ctr;
  grpc::Status s = Start(image, sandbox, &pod, &ctr);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\ncontainerd:\n" << ctrd_.Log();
  EXPECT_EQ(Status(ctr).state(), pb::CONTAINER_RUNNING);
  EXPECT_EQ(PidsMatching("containerd-shim-kubevirt-v1", false).size(), 1u) << "one shim per Pod";
  // libvirt's QEMU probe, saved for the next Pod's shim (its own libvirt root).
  std::vector<std::string> caps;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(state_.path() / "root/libvirt-caps-cache", ec)) {
    if (e.path().extension() == ".xml") caps.push_back(e.path().string());
  }
  EXPECT_EQ(caps.size(), 1u) << "QEMU capabilities not shared";

  // The guest configured the Pod IP containerd's CNI allocated (our DHCP
  // answers from the interface), printed on its console, which is the CRI
  // log containerd writes from the task's stdout.
  const std::string ip = PodIp(pod);
  ASSERT_FALSE(ip.empty());
  const std::filesystem::path log = std::filesystem::path(sandbox.log_directory()) / "vm/0.log";
  ASSERT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-IP eth0 " + ip + "/", std::chrono::seconds(300)))
      << ReadFileOrEmpty(log) << "\ncontainerd:\n" << ctrd_.Log();
  EXPECT_GE(CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-IP"), 1) << "containerd writes the CRI log format";
  EXPECT_TRUE(PingFromHost(ip));

  // ExecSync through containerd: Task Exec runs in the guest through its
  // agent (kvcri-agent here), output and exit code back through the FIFOs.
  pb::ExecSyncRequest ereq;
  ereq.set_container_id(ctr);
  ereq.add_cmd("sh");
  ereq.add_cmd("-c");
  ereq.add_cmd("echo hello-from-$(uname -s); echo oops >&2; exit 3");
  ereq.set_timeout(30);
  pb::ExecSyncResponse eresp;
  ASSERT_TRUE(Eventually(
      [&] {
        eresp.Clear();
        grpc::Status es = ctrd_.runtime().ExecSync(Ctx(std::chrono::seconds(60)).get(), ereq, &eresp);
        return es.ok() && eresp.exit_code() == 3;  // 126 while the guest's agent is not up yet
      },
      std::chrono::seconds(120)))
      << eresp.DebugString() << "\n" << ctrd_.Log();
  EXPECT_EQ(eresp.stdout(), "hello-from-Linux\n");
  EXPECT_EQ(eresp.stderr(), "oops\n");
  // Its timeout: containerd kills the exec (our Kill ends the guest process).
  pb::ExecSyncRequest slow;
  slow.set_container_id(ctr);
  slow.add_cmd("sleep");
  slow.add_cmd("60");
  slow.set_timeout(2);
  const auto t0 = std::chrono::steady_clock::now();
  s = ctrd_.runtime().ExecSync(Ctx(std::chrono::seconds(60)).get(), slow, &eresp);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  EXPECT_FALSE(s.ok() && eresp.exit_code() == 0) << "a sleep 60 with timeout 2 did not time out";
  EXPECT_EQ(ProcessesMatching("kvcri-" + ctr).size(), 1u);

  // PortForward through containerd's streaming server: containerd dials
  // 127.0.0.1:8080 in the Pod's netns; the shim's redirect takes it to the
  // guest (kvcri-agent to the guest's own localhost, where httpd listens).
  pb::PortForwardRequest pfreq;
  pfreq.set_pod_sandbox_id(pod);
  pfreq.add_port(8080);
  pb::PortForwardResponse pfresp;
  ASSERT_TRUE(ctrd_.runtime().PortForward(Ctx().get(), pfreq, &pfresp).ok());
  absl::StatusOr<std::unique_ptr<PortForwardClient>> pf = OpenSpdyPortForward(pfresp.url());
  ASSERT_TRUE(pf.ok()) << pf.status();
  absl::StatusOr<std::unique_ptr<ForwardedConnection>> conn = (*pf)->Connect(8080);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE((*conn)->Write("GET / HTTP/1.0\r\n\r\n").ok());
  std::string page;
  char buf[4096];
  while (page.find("kubevirt-cri-guest shim-vm") == std::string::npos) {
    absl::StatusOr<size_t> n = (*conn)->Read(buf, sizeof buf);
    ASSERT_TRUE(n.ok()) << n.status() << "\n" << ctrd_.Log();
    if (*n == 0) break;
    page.append(buf, *n);
  }
  EXPECT_THAT(page, HasSubstr("kubevirt-cri-guest shim-vm"));

  // ContainerStats through containerd: the VM's cgroup, as the daemon reads it.
  pb::ContainerStatsRequest sreq;
  sreq.set_container_id(ctr);
  pb::ContainerStatsResponse stats;
  s = ctrd_.runtime().ContainerStats(Ctx().get(), sreq, &stats);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << ctrd_.Log();
  EXPECT_GT(stats.stats().cpu().usage_core_nano_seconds().value(), 1'000'000u) << stats.DebugString();
  EXPECT_GT(stats.stats().memory().working_set_bytes().value(), 32u << 20) << "QEMU's memory" << stats.DebugString();

  // UpdateContainerResources through containerd: the daemon's resize (the
  // balloon below the boot memory), and its refusals with their reason.
  pb::UpdateContainerResourcesRequest ureq;
  ureq.set_container_id(ctr);
  ureq.mutable_linux()->set_memory_limit_in_bytes(192ll << 20);
  ureq.mutable_linux()->set_cpu_shares(512);
  pb::UpdateContainerResourcesResponse uresp;
  s = ctrd_.runtime().UpdateContainerResources(Ctx(std::chrono::seconds(60)).get(), ureq, &uresp);
  EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << ctrd_.Log();
  // (containerd passes swap on; hugepage limits it drops when its hugetlb
  // controller is off, as in this fixture.)
  ureq.mutable_linux()->set_memory_swap_limit_in_bytes(512ll << 20);
  s = ctrd_.runtime().UpdateContainerResources(Ctx(std::chrono::seconds(60)).get(), ureq, &uresp);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.error_message(), HasSubstr("gets no host swap")) << s.error_message();

  // Stop: the stop signal is the power button; the guest powers off: 0.
  pb::StopContainerRequest stop;
  stop.set_container_id(ctr);
  stop.set_timeout(120);
  pb::StopContainerResponse stopped;
  s = ctrd_.runtime().StopContainer(Ctx(std::chrono::seconds(150)).get(), stop, &stopped);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << ctrd_.Log();
  pb::ContainerStatus st = Status(ctr);
  EXPECT_EQ(st.state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 0) << st.reason();
  EXPECT_TRUE(ProcessesMatching("kvcri-" + ctr).empty()) << "QEMU outlived the stop";

  pb::RemoveContainerRequest rmc;
  rmc.set_container_id(ctr);
  pb::RemoveContainerResponse rmced;
  s = ctrd_.runtime().RemoveContainer(Ctx(std::chrono::seconds(60)).get(), rmc, &rmced);
  EXPECT_TRUE(s.ok()) << s.error_message();
  RemovePodThroughContainerd(pod);
  EXPECT_TRUE(Eventually([] { return PidsMatching("containerd-shim-kubevirt-v1", false).empty(); }))
      << ctrd_.Log();
  EXPECT_TRUE(ShimStateLeft().empty()) << ::testing::PrintToString(ShimStateLeft());
  // QEMU's command line names its monitor socket under the Pod's embed root.
  EXPECT_TRUE(ProcessesMatching((state_.path() / "root").string()).empty()) << "QEMU processes left";

  // A runc Pod on the same containerd.
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = SandboxConfig("shim-runc", logs_.path());
  pb::RunPodSandboxResponse ran;
  s = ctrd_.runtime().RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &ran);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << ctrd_.Log();
  pb::PullImageRequest pull;
  pull.mutable_image()->set_image(ctrd_.BusyboxImage());
  pb::PullImageResponse pulled;
  ASSERT_TRUE(ctrd_.images().PullImage(Ctx(std::chrono::seconds(120)).get(), pull, &pulled).ok());
  pb::CreateContainerRequest create;
  create.set_pod_sandbox_id(ran.pod_sandbox_id());
  *create.mutable_sandbox_config() = run.config();
  create.mutable_config()->mutable_metadata()->set_name("sleeper");
  create.mutable_config()->mutable_image()->set_image(ctrd_.BusyboxImage());
  create.mutable_config()->add_command("/bin/sleep");
  create.mutable_config()->add_args("3600");
  pb::CreateContainerResponse created;
  ASSERT_TRUE(ctrd_.runtime().CreateContainer(Ctx().get(), create, &created).ok());
  pb::StartContainerRequest start;
  start.set_container_id(created.container_id());
  pb::StartContainerResponse started;
  s = ctrd_.runtime().StartContainer(Ctx(std::chrono::seconds(60)).get(), start, &started);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Status(created.container_id()).state(), pb::CONTAINER_RUNNING);
  RemovePodThroughContainerd(ran.pod_sandbox_id());
}

// The shim outlives containerd: a restarted containerd finds the VM Pod
// RUNNING and reachable. A shim killed with SIGKILL: containerd runs our
// `delete` for each task, which reopens the Pod from its records, forces
// the VM off and removes it; containerd reports the container EXITED and
// removing the Pod leaves no QEMU and no state.
TEST_F(ShimVmTest, TheVmOutlivesContainerdAndAKilledShimsVmIsCleanedUp) {
  ASSERT_FALSE(HasFatalFailure());
  const std::string image = ctrd_.PushImage(GuestImageDir("oci-disk"), "vm:2");
  ASSERT_FALSE(HasFailure());
  const pb::PodSandboxConfig sandbox = SandboxConfig("shim-vm-kill", logs_.path());
  std::string pod, ctr;
  grpc::Status s = Start(image, sandbox, &pod, &ctr);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\ncontainerd:\n" << ctrd_.Log();
  const std::string ip = PodIp(pod);
  const std::filesystem::path log = std::filesystem::path(sandbox.log_directory()) / "vm/0.log";
  ASSERT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-IP eth0 " + ip + "/", std::chrono::seconds(300)))
      << ReadFileOrEmpty(log);

  ctrd_.Kill9();
  EXPECT_TRUE(PingFromHost(ip)) << "the VM runs on without containerd";
  ctrd_.Start();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(Status(ctr).state(), pb::CONTAINER_RUNNING) << ctrd_.Log();
  EXPECT_TRUE(PingFromHost(ip));

  std::vector<int> shims = PidsMatching("containerd-shim-kubevirt-v1", false);
  ASSERT_EQ(shims.size(), 1u);
  ASSERT_FALSE(ProcessesMatching("kvcri-" + ctr).empty());
  ASSERT_EQ(::kill(shims[0], SIGKILL), 0);
  EXPECT_TRUE(Eventually([&] { return Status(ctr).state() == pb::CONTAINER_EXITED; }, std::chrono::seconds(60)))
      << ctrd_.Log();
  // containerd's CRI ends the container when its open Wait breaks with the
  // shim's connection, before our `delete` answers: 255 is its "unknown"
  // exit code, the same for any shim that dies (runc's too).
  EXPECT_EQ(Status(ctr).exit_code(), 255) << ctrd_.Log();
  EXPECT_TRUE(Eventually([&] { return ProcessesMatching("kvcri-" + ctr).empty(); }, std::chrono::seconds(60)))
      << "the lost shim's VM was not cleaned up\n" << ctrd_.Log();
  RemovePodThroughContainerd(pod);
  EXPECT_TRUE(PidsMatching("containerd-shim-kubevirt-v1", false).empty());
  EXPECT_TRUE(ProcessesMatching((state_.path() / "root").string()).empty()) << "QEMU processes left";
  // containerd runs the deletes on its own when the shim's connection
  // drops; each reopens the Pod's libvirt root, which takes a moment.
  EXPECT_TRUE(Eventually([&] { return ShimStateLeft().empty(); }, std::chrono::seconds(60)))
      << ::testing::PrintToString(ShimStateLeft()) << "\n" << ctrd_.Log();
}

// A kernel image (/boot/vmlinuz + initrd) through containerd: its config's
// io.kubevirt-cri.cmdline label (console=ttyS0 ...) is read from containerd's
// image and content services, so the kernel's console is the CRI log.
TEST_F(ShimVmTest, AKernelImageBootsWithTheCmdlineLabelFromContainerdsImage) {
  ASSERT_FALSE(HasFatalFailure());
  const std::string image = ctrd_.PushImage(GuestImageDir("oci-kernel"), "kernel:1");
  ASSERT_FALSE(HasFailure());
  const pb::PodSandboxConfig sandbox = SandboxConfig("shim-kernel", logs_.path());
  std::string pod, ctr;
  grpc::Status s = Start(image, sandbox, &pod, &ctr);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\ncontainerd:\n" << ctrd_.Log();
  const std::string ip = PodIp(pod);
  const std::filesystem::path log = std::filesystem::path(sandbox.log_directory()) / "vm/0.log";
  EXPECT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-IP eth0 " + ip + "/", std::chrono::seconds(300)))
      << ReadFileOrEmpty(log) << "\ncontainerd:\n" << ctrd_.Log();
  EXPECT_THAT(ctrd_.Log(), ::testing::Not(HasSubstr("image labels unread")));
  RemovePodThroughContainerd(pod);
  EXPECT_TRUE(Eventually([&] { return ShimStateLeft().empty(); }));
}

// kubelet's StartContainer deadline passing while the VM is being created:
// containerd's CRI gives up, kills the created task and deletes it. The VM
// that comes up after that must not be left running, and the Pod's removal
// must end the shim (a task left behind would keep it alive).
TEST_F(ShimVmTest, AnAbandonedStartLeavesNoVmRunning) {
  ASSERT_FALSE(HasFatalFailure());
  const std::string image = ctrd_.PushImage(GuestImageDir("oci-disk"), "vm:3");
  ASSERT_FALSE(HasFailure());
  const pb::PodSandboxConfig sandbox = SandboxConfig("shim-vm-abandon", logs_.path());
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = sandbox;
  run.set_runtime_handler("kubevirt");
  pb::RunPodSandboxResponse ran;
  ASSERT_TRUE(ctrd_.runtime().RunPodSandbox(Ctx(std::chrono::seconds(120)).get(), run, &ran).ok());
  pb::PullImageRequest pull;
  pull.mutable_image()->set_image(image);
  pb::PullImageResponse pulled;
  ASSERT_TRUE(ctrd_.images().PullImage(Ctx(std::chrono::seconds(300)).get(), pull, &pulled).ok());
  pb::CreateContainerRequest create;
  create.set_pod_sandbox_id(ran.pod_sandbox_id());
  *create.mutable_sandbox_config() = sandbox;
  *create.mutable_config() = VmContainerConfig("vm", image);
  create.mutable_config()->add_command("vm");
  pb::CreateContainerResponse created;
  ASSERT_TRUE(ctrd_.runtime().CreateContainer(Ctx().get(), create, &created).ok());
  const std::string ctr = created.container_id();
  pb::StartContainerRequest start;
  start.set_container_id(ctr);
  pb::StartContainerResponse started;
  // Far shorter than a domain create (hundreds of ms even with a warm cache).
  grpc::ClientContext short_ctx;
  short_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(50));
  grpc::Status s = ctrd_.runtime().StartContainer(&short_ctx, start, &started);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  EXPECT_TRUE(Eventually([&] { return Status(ctr).state() == pb::CONTAINER_EXITED; }, std::chrono::seconds(60)))
      << pb::ContainerState_Name(Status(ctr).state()) << "\n" << ctrd_.Log();
  EXPECT_TRUE(Eventually([&] { return ProcessesMatching("kvcri-" + ctr).empty(); }, std::chrono::seconds(60)))
      << "the abandoned start's VM runs on\n" << ctrd_.Log();
  RemovePodThroughContainerd(ran.pod_sandbox_id());
  EXPECT_TRUE(Eventually([] { return PidsMatching("containerd-shim-kubevirt-v1", false).empty(); }))
      << "the shim outlived its Pod\n" << ctrd_.Log();
  EXPECT_TRUE(ShimStateLeft().empty()) << ::testing::PrintToString(ShimStateLeft());
}

// The container task's rootfs: containerd's overlayfs snapshot mounts (and
// the native snapshotter's bind mount) at the bundle's rootfs, always nodev.
TEST(ShimRootfs, SnapshotMountsAreMountedNodevAndUnmounted) {
  RequireIntegrationEnvironment(/*need_guest_images=*/false);
  TempDir dir;
  for (const char* d : {"lower/disk", "upper", "work", "target", "bindsrc"}) {
    std::filesystem::create_directories(dir.path() / d);
  }
  std::ofstream(dir.path() / "lower/disk/disk.img") << std::string(1024, '\0');
  shim::containerd::pb::Mount overlay;
  overlay.set_type("overlay");
  overlay.set_source("overlay");
  overlay.add_options("index=off");
  overlay.add_options("workdir=" + (dir.path() / "work").string());
  overlay.add_options("upperdir=" + (dir.path() / "upper").string());
  overlay.add_options("lowerdir=" + (dir.path() / "lower").string());
  const std::filesystem::path target = dir.path() / "target";
  absl::Status s = shim::containerd::MountRootfs({overlay}, target);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(std::filesystem::exists(target / "disk/disk.img"));
  absl::StatusOr<runtime::image::BootInfo> boot = shim::containerd::BootFromRootfs(target);
  ASSERT_TRUE(boot.ok()) << boot.status();
  EXPECT_EQ(boot->kind, runtime::image::BootKind::kDisk);
  struct statvfs vfs {};
  ASSERT_EQ(::statvfs(target.c_str(), &vfs), 0);
  EXPECT_TRUE(vfs.f_flag & ST_NODEV);
  std::ofstream(target / "written") << "x";
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "upper/written")) << "writes go to the snapshot's upper dir";
  ASSERT_TRUE(shim::containerd::UnmountRootfs(target).ok());
  EXPECT_FALSE(std::filesystem::exists(target / "disk"));
  EXPECT_TRUE(shim::containerd::UnmountRootfs(target).ok()) << "nothing mounted is fine";

  shim::containerd::pb::Mount bind;
  bind.set_type("bind");
  bind.set_source((dir.path() / "lower").string());
  bind.add_options("rbind");
  bind.add_options("ro");
  s = shim::containerd::MountRootfs({bind}, target);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(std::filesystem::exists(target / "disk/disk.img"));
  std::ofstream(target / "nope") << "x";
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "lower/nope")) << "a read-only bind stays read-only";
  ASSERT_TRUE(shim::containerd::UnmountRootfs(target).ok());

  shim::containerd::pb::Mount odd;
  odd.set_type("tmpfs");
  EXPECT_EQ(shim::containerd::MountRootfs({odd}, target).code(), absl::StatusCode::kInvalidArgument);
  overlay.add_options("xino=on");
  EXPECT_EQ(shim::containerd::MountRootfs({overlay}, target).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvcri::testing
