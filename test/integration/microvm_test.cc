// The Pod micro-VM boots its kernel and initramfs (runtime/microvm/build-microvm.sh) to kvcri-agent as init, which runs an OCI bundle from the Pod's virtio-fs share under crun.
//
// Drives LibvirtHypervisor on this test's own embedded-driver root, as
// guest_agent_test does: the boot files and the in-guest runtime are what is
// tested here, the CRI path is tested where it uses them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/time/clock.h"
#include "runtime/accelerator.h"
#include "runtime/agent/agent_client.h"
#include "runtime/agent/agent_protocol.h"
#include "runtime/image/image_store.h"
#include "runtime/libvirt_hypervisor.h"
#include "runtime/microvm/container_root.h"
#include "runtime/microvm/container_runner.h"
#include "runtime/microvm/runtime_spec.h"
#include "test/client/oci_layout.h"
#include "test/client/pod_helpers.h"

namespace kvcri::runtime {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kMicroVmDir = KVCRI_MICROVM_DIR;

struct Ran {
  int exit_code = -1;
  std::string out, err;
};

// Runs `argv` in the guest through kvcri-agent and collects both outputs.
absl::StatusOr<Ran> RunInGuest(agent::AgentClient& client, std::vector<std::string> argv) {
  agent::ExecOptions opts;
  opts.argv = std::move(argv);
  absl::StatusOr<std::unique_ptr<agent::Process>> p = client.Exec(opts);
  if (!p.ok()) return p.status();
  Ran r;
  char buf[4096];
  for (auto [which, into] : {std::pair{agent::Output::kStdout, &r.out}, std::pair{agent::Output::kStderr, &r.err}}) {
    for (;;) {
      absl::StatusOr<size_t> n = (*p)->Read(which, buf, sizeof buf);
      if (!n.ok()) return n.status();
      if (*n == 0) break;
      into->append(buf, *n);
    }
  }
  absl::StatusOr<int> code = (*p)->Wait(absl::Now() + absl::Seconds(60));
  if (!code.ok()) return code.status();
  r.exit_code = *code;
  return r;
}

// A bundle as the host will write one per container: busybox-static as the
// root's only program, and a minimal runtime spec.
void WriteBundle(const fs::path& bundle, const std::vector<std::string>& args) {
  fs::create_directories(bundle / "rootfs/bin");
  fs::copy_file("/bin/busybox", bundle / "rootfs/bin/busybox", fs::copy_options::overwrite_existing);
  fs::create_symlink("busybox", bundle / "rootfs/bin/sh");
  for (const char* d : {"proc", "dev", "sys", "tmp", "etc"}) fs::create_directories(bundle / "rootfs" / d);
  nlohmann::json spec = {
      {"ociVersion", "1.0.2"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", 0}, {"gid", 0}}},
        {"args", args},
        {"env", {"PATH=/bin"}},
        {"cwd", "/"}}},
      {"root", {{"path", "rootfs"}, {"readonly", false}}},
      {"hostname", "microvm-c1"},
      {"mounts",
       {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
        {{"destination", "/dev"},
         {"type", "tmpfs"},
         {"source", "tmpfs"},
         {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}}}},
      {"linux", {{"namespaces", {{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}}}}},
  };
  std::ofstream(bundle / "config.json") << spec.dump();
}

TEST(MicroVm, BootsToItsAgentAndRunsABundleFromThePodShareUnderCrun) {
  testing::RequireIntegrationEnvironment(/*need_guest_images=*/false);
  for (const char* f : {"vmlinuz", "initramfs.img"}) {
    ASSERT_TRUE(fs::exists(kMicroVmDir / f))
        << kMicroVmDir / f << " missing: run runtime/microvm/build-microvm.sh " << kMicroVmDir;
  }
  char tmpl[] = "/tmp/kvmv-XXXXXX";  // short: sockets live below it
  const fs::path root = ::mkdtemp(tmpl);
  auto hv = LibvirtHypervisor::Open(LibvirtHypervisorOptions{"qemu:///embed?root=" + (root / "lv").string()});
  ASSERT_TRUE(hv.ok()) << hv.status();
  const fs::path share = root / "pod";
  WriteBundle(share / "c1", {"/bin/sh", "-c", "echo hello-from-$(hostname) pid $$; echo oops >&2; exit 3"});

  VmSpec spec;
  spec.name = "kvcri-microvm1";
  spec.pod_id = "pod-microvm1";
  spec.container_id = "microvm1";
  spec.pod_namespace = "default";
  spec.pod_name = "microvm-test";
  spec.memory_mib = 256;
  auto accel = ChooseAccelerator(config::Accelerator::kAuto, HostProbe());
  spec.accel = accel.ok() ? accel->accel : config::Accelerator::kTcg;
  spec.kernel = kMicroVmDir / "vmlinuz";
  spec.initrd = kMicroVmDir / "initramfs.img";
  // The Pod network the way the daemon will hand it over: a NIC on a tap,
  // and the CNI result's address on the kernel command line (the guest
  // has no DHCP client). Here the host end of the tap is the "gateway".
  const std::string tap = "kvmvt" + std::to_string(::getpid() % 100000);
  const std::string subnet = "10.251." + std::to_string(::getpid() % 200 + 1);
  const std::string subnet6 = "fd77:" + std::to_string(::getpid() % 9000 + 1) + "::";
  ASSERT_EQ(std::system(("ip tuntap add dev " + tap + " mode tap && ip addr add " + subnet + ".1/24 dev " + tap +
                         " && ip -6 addr add " + subnet6 + "1/64 dev " + tap + " nodad && ip link set " + tap + " up")
                            .c_str()),
            0);
  struct TapGone {
    std::string tap;
    ~TapGone() { (void)std::system(("ip link del " + tap + " 2>/dev/null").c_str()); }
  } tap_gone{tap};
  spec.nics.push_back(NicSpec{tap, "52:54:00:7a:00:01", 1400});
  spec.cmdline = "console=ttyS0 panic=-1 quiet kvcri.hostname=microvm-pod kvcri.ip=eth0," + subnet + ".2/24," +
                 subnet + ".1,1400 kvcri.ip=eth0," + subnet6 + "2/64," + subnet6 + "1";
  spec.console_log = root / "console.log";
  spec.agent_socket = root / "agent.sock";
  // As the daemon will: the share is a shared mount point before QEMU (and
  // virtiofsd) start, so container roots mounted below it later reach the guest.
  ASSERT_TRUE(microvm::MountPodShare(share).ok());
  FilesystemSpec fsx;
  fsx.source_dir = share;
  fsx.tag = "kvcri-pod";
  spec.filesystems.push_back(fsx);
  const absl::Time t0 = absl::Now();
  absl::Status created = (*hv)->Create(spec);
  ASSERT_TRUE(created.ok()) << created;

  // Ready = the agent answers HELLO on its channel.
  absl::StatusOr<std::unique_ptr<agent::AgentClient>> client;
  for (absl::Time deadline = absl::Now() + absl::Minutes(3); absl::Now() < deadline;) {
    client = agent::ConnectAgent(spec.agent_socket, agent::AgentLimits{});
    if (client.ok()) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_TRUE(client.ok()) << client.status() << "\nconsole:\n" << testing::ReadFileOrEmpty(spec.console_log);
  std::printf("micro-VM agent ready after %.1f s\n", absl::ToDoubleSeconds(absl::Now() - t0));
  EXPECT_THAT((*client)->AgentVersion(), HasSubstr("kvcri-agent"));
  const std::string console = testing::ReadFileOrEmpty(spec.console_log);
  EXPECT_THAT(console, HasSubstr("kvcri-agent init: guest ready"));
  // Every set-up step worked: the only line init printed is its last.
  size_t init_lines = 0;
  for (size_t at = console.find("kvcri-agent init:"); at != std::string::npos;
       at = console.find("kvcri-agent init:", at + 1)) {
    ++init_lines;
  }
  EXPECT_EQ(init_lines, 1u) << console;

  // The guest took its address, gateway and MTU from the command line.
  EXPECT_TRUE(testing::PingFromHost(subnet + ".2")) << testing::ReadFileOrEmpty(spec.console_log);
  EXPECT_TRUE(testing::PingFromHost(subnet6 + "2")) << testing::ReadFileOrEmpty(spec.console_log);

  absl::StatusOr<Ran> version = RunInGuest(**client, {"crun", "--version"});
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(version->exit_code, 0) << version->err;
  EXPECT_THAT(version->out, HasSubstr("crun version"));

  // The bundle on the host's share, run by crun in the guest: its output
  // and exit code come back through the agent's session.
  absl::StatusOr<Ran> ran = RunInGuest(**client, {"crun", "run", "--bundle", "/run/kvcri/pod/c1", "c1"});
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(ran->exit_code, 3) << ran->out << ran->err << "\nconsole:\n"
                               << testing::ReadFileOrEmpty(spec.console_log);
  EXPECT_EQ(ran->out, "hello-from-microvm-c1 pid 1\n");
  EXPECT_EQ(ran->err, "oops\n");

  // A container as the daemon will run it: crun SPAWNed detached, its
  // output appended to files on the share, its exit status in a file; it
  // keeps running while the host's connection is replaced (a daemon
  // restart), and what it wrote meanwhile is there.
  WriteBundle(share / "c2", {"/bin/sh", "-c", "echo before; sleep 3; echo after; echo to-stderr >&2; exit 4"});
  agent::SpawnOptions so;
  so.argv = {"crun", "run", "--bundle", "/run/kvcri/pod/c2", "c2"};
  so.stdout_path = "/run/kvcri/pod/c2/stdout";
  so.stderr_path = "/run/kvcri/pod/c2/stderr";
  so.exit_path = "/run/kvcri/pod/c2/exit";
  absl::StatusOr<uint32_t> pid = (*client)->Spawn(so);
  ASSERT_TRUE(pid.ok()) << pid.status();
  client->reset();
  absl::StatusOr<std::unique_ptr<agent::AgentClient>> again;
  for (absl::Time deadline = absl::Now() + absl::Seconds(20); absl::Now() < deadline;) {
    again = agent::ConnectAgent(spec.agent_socket, agent::AgentLimits{});
    if (again.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(again.ok()) << again.status();
  std::string exit_text;
  for (absl::Time deadline = absl::Now() + absl::Seconds(60); absl::Now() < deadline && exit_text.empty();) {
    exit_text = testing::ReadFileOrEmpty(share / "c2/exit");
    if (exit_text.empty()) absl::SleepFor(absl::Milliseconds(100));
  }
  agent::ExitFile exit;
  ASSERT_TRUE(agent::ParseExitFile(exit_text, &exit)) << "exit file: \"" << exit_text << "\"\nstderr: "
                                                      << testing::ReadFileOrEmpty(share / "c2/stderr");
  EXPECT_FALSE(exit.signaled);
  EXPECT_EQ(exit.value, 4u);
  EXPECT_EQ(testing::ReadFileOrEmpty(share / "c2/stdout"), "before\nafter\n");
  EXPECT_EQ(testing::ReadFileOrEmpty(share / "c2/stderr"), "to-stderr\n");

  // Specs from the production generator, run by the guest's crun: a memory
  // limit the container exceeds (137, and the OOM kill counted), and a
  // Localhost seccomp profile plus the default masked paths.
  auto generated = [&](const std::string& id, microvm::ContainerRequest req) {
    WriteBundle(share / id, {"true"});
    req.id = id;
    req.hostname = "microvm-pod";
    absl::StatusOr<nlohmann::json> cfg = microvm::BuildRuntimeSpec(req, {}, microvm::UserDb{});
    EXPECT_TRUE(cfg.ok()) << cfg.status();
    std::ofstream(share / id / "config.json") << cfg.value_or(nlohmann::json()).dump();
    agent::SpawnOptions o;
    o.argv = {"crun", "run", "--bundle", "/run/kvcri/pod/" + id, id};
    o.stdout_path = "/run/kvcri/pod/" + id + "/stdout";
    o.stderr_path = "/run/kvcri/pod/" + id + "/stderr";
    o.exit_path = "/run/kvcri/pod/" + id + "/exit";
    o.oom_cgroup = microvm::GuestCgroupParent(id);
    absl::StatusOr<uint32_t> spawned = (*again)->Spawn(o);
    EXPECT_TRUE(spawned.ok()) << spawned.status();
    agent::ExitFile e;
    std::string text;
    for (absl::Time deadline = absl::Now() + absl::Seconds(60); absl::Now() < deadline && text.empty();) {
      text = testing::ReadFileOrEmpty(share / id / "exit");
      if (text.empty()) absl::SleepFor(absl::Milliseconds(100));
    }
    EXPECT_TRUE(agent::ParseExitFile(text, &e)) << id << " exit file: \"" << text << "\"\nstderr: "
                                                << testing::ReadFileOrEmpty(share / id / "stderr");
    return e;
  };
  microvm::ContainerRequest hog;
  hog.command = {"/bin/sh", "-c", "a=aaaaaaaaaaaaaaaa; while :; do a=$a$a; done"};
  hog.resources.memory_limit_bytes = 32 << 20;
  hog.seccomp = microvm::SeccompKind::kRuntimeDefault;
  agent::ExitFile oom = generated("c3", hog);
  EXPECT_EQ(oom.code(), 137) << testing::ReadFileOrEmpty(share / "c3/stderr");
  EXPECT_GE(oom.oom_kills, 1u);

  microvm::ContainerRequest confined;
  confined.command = {"/bin/sh", "-c", "wc -c < /proc/kcore; mkdir /tmp/x || echo mkdir-refused; exit 0"};
  confined.seccomp = microvm::SeccompKind::kLocalhost;
  confined.seccomp_localhost_json =
      R"({"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]})";
  agent::ExitFile ok = generated("c4", confined);
  EXPECT_EQ(ok.code(), 0);
  EXPECT_EQ(ok.oom_kills, 0u);
  EXPECT_EQ(testing::ReadFileOrEmpty(share / "c4/stdout"), "0\nmkdir-refused\n") << testing::ReadFileOrEmpty(share / "c4/stderr");

  // ContainerRunner, the host side the daemon uses: graceful stop by the
  // stop signal, SIGKILL after the grace, once-only start, delete.
  std::shared_ptr<agent::AgentClient> shared = std::move(*again);
  microvm::ContainerRunner runner([&]() -> absl::StatusOr<std::shared_ptr<agent::AgentClient>> { return shared; });
  auto started = [&](const std::string& id, const std::string& script) {
    WriteBundle(share / id, {"true"});
    microvm::ContainerRequest req;
    req.id = id;
    req.command = {"/bin/sh", "-c", script};
    absl::StatusOr<nlohmann::json> cfg = microvm::BuildRuntimeSpec(req, {}, microvm::UserDb{});
    EXPECT_TRUE(cfg.ok()) << cfg.status();
    const microvm::Bundle b = microvm::BundleFor(share, id);
    EXPECT_TRUE(runner.WriteSpec(b, *cfg).ok());
    absl::StatusOr<uint32_t> pid = runner.Start(b);
    EXPECT_TRUE(pid.ok()) << pid.status();
    EXPECT_TRUE(testing::WaitForFileContains(share / id / "stdout", "up", std::chrono::seconds(60)))
        << testing::ReadFileOrEmpty(share / id / "stderr");
    return b;
  };
  const microvm::Bundle polite = started("c5", "trap 'echo got-term; exit 7' TERM; echo up; while :; do sleep 1; done");
  absl::StatusOr<std::optional<agent::ExitFile>> running = runner.Exited(polite);
  ASSERT_TRUE(running.ok());
  EXPECT_FALSE(running->has_value());
  absl::StatusOr<agent::ExitFile> stopped = runner.Stop(polite, absl::Seconds(20));
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->code(), 7);
  EXPECT_EQ(testing::ReadFileOrEmpty(share / "c5/stdout"), "up\ngot-term\n");
  EXPECT_EQ(runner.Start(polite).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(runner.Delete(polite).ok());
  const microvm::Bundle stubborn = started("c6", "trap '' TERM; echo up; while :; do sleep 1; done");
  const absl::Time t_stop = absl::Now();
  stopped = runner.Stop(stubborn, absl::Seconds(2));
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->code(), 137);
  EXPECT_GE(absl::Now() - t_stop, absl::Seconds(2)) << "SIGKILL before the grace ended";
  EXPECT_TRUE(runner.Delete(stubborn).ok());
  EXPECT_TRUE(runner.Delete(stubborn).ok()) << "a second delete is fine";

  // A root from the layer store: a busybox image imported into an image
  // store, its layers unpacked there, mounted as the container's overlay
  // below the share; the user named by the request is looked up in that
  // root's /etc/passwd, and what the container writes lands in its upper
  // directory on the host.
  testing::WriteLayout(root / "busybox-layout",
                       {testing::BusyboxLayer(), testing::Tar({{.name = "etc/motd", .data = "from the top layer\n"}})});
  absl::StatusOr<std::unique_ptr<image::LocalImageStore>> images = image::LocalImageStore::Open(root / "images", {});
  ASSERT_TRUE(images.ok()) << images.status();
  absl::StatusOr<image::ImageInfo> busybox = (*images)->Import(root / "busybox-layout", "test/busybox:1", "");
  ASSERT_TRUE(busybox.ok()) << busybox.status();
  ASSERT_EQ(busybox->layer_dirs.size(), 2u);
  const microvm::Bundle layered = microvm::BundleFor(share, "c7");
  fs::create_directories(layered.host_dir / "rootfs");
  ASSERT_TRUE(microvm::MountContainerRoot(busybox->layer_dirs, root / "c7-upper", root / "c7-work",
                                          layered.host_dir / "rootfs")
                  .ok());
  absl::StatusOr<microvm::UserDb> users = microvm::ReadUserDb(layered.host_dir / "rootfs");
  ASSERT_TRUE(users.ok()) << users.status();
  microvm::ContainerRequest as_app;
  as_app.id = "c7";
  as_app.command = {"/bin/sh", "-c", "id; echo data > /tmp/f; cat /etc/motd"};
  as_app.run_as_username = "app";
  as_app.supplemental_groups = {2000};
  microvm::ImageProcess from_image{.env = {"PATH=/bin"}, .cmd = busybox->cmd};
  absl::StatusOr<nlohmann::json> app_spec = microvm::BuildRuntimeSpec(as_app, from_image, *users);
  ASSERT_TRUE(app_spec.ok()) << app_spec.status();
  ASSERT_TRUE(runner.WriteSpec(layered, *app_spec).ok());
  ASSERT_TRUE(runner.Start(layered).ok());
  absl::StatusOr<std::optional<agent::ExitFile>> app_exit = runner.WaitExit(layered, absl::Now() + absl::Seconds(60));
  ASSERT_TRUE(app_exit.ok() && app_exit->has_value()) << app_exit.status();
  EXPECT_EQ((*app_exit)->code(), 0) << testing::ReadFileOrEmpty(share / "c7/stderr");
  const std::string app_out = testing::ReadFileOrEmpty(share / "c7/stdout");
  EXPECT_THAT(app_out, HasSubstr("uid=1000(app) gid=1000(app)"));
  EXPECT_THAT(app_out, HasSubstr("50(staff)"));
  EXPECT_THAT(app_out, HasSubstr("2000"));
  EXPECT_THAT(app_out, HasSubstr("from the top layer"));
  EXPECT_EQ(testing::ReadFileOrEmpty(root / "c7-upper/tmp/f"), "data\n") << "the container's write is in its upper dir";
  EXPECT_FALSE(fs::exists(busybox->layer_dirs[0] / "tmp/f")) << "the layer itself is never written";

  EXPECT_TRUE((*hv)->Destroy(spec.name).ok());
  EXPECT_TRUE((*hv)->Remove(spec.name).ok());
  EXPECT_TRUE(microvm::UnmountContainerRoot(layered.host_dir / "rootfs").ok());
  EXPECT_TRUE(microvm::UnmountPodShare(share).ok());
  fs::remove_all(root);
}

}  // namespace
}  // namespace kvcri::runtime
