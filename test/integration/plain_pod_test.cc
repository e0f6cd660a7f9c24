// Plain OCI images under the kubevirt RuntimeClass: busybox containers run by crun in the Pod micro-VM, through the real daemon's CRI calls.
//
// One daemon and one Pod (one micro-VM boot, ≈ 10 s under TCG) serve the
// tests of the suite in order, as kubelet would: containers come and go in
// the running Pod. The last tests kill -9 the daemon and remove the Pod.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "test/client/exec_helpers.h"
#include "test/client/host_util.h"
#include "test/client/oci_layout.h"
#include "test/client/pod_helpers.h"
#include "test/client/test_daemon.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

const fs::path kMicroVmDir = KVCRI_MICROVM_DIR;
constexpr char kBusybox[] = "kvcri.test/busybox:1";

class PlainPodTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RequireIntegrationEnvironment(/*need_guest_images=*/false);
    TestDaemon::Options o;
    o.extra_config = "[microvm]\nkernel = \"" + (kMicroVmDir / "vmlinuz").string() + "\"\ninitramfs = \"" +
                     (kMicroVmDir / "initramfs.img").string() + "\"\n";
    daemon_ = new TestDaemon(o);
    daemon_->Start();
    const fs::path layout = daemon_->dir() / "busybox-layout";
    WriteLayout(layout, {BusyboxLayer(), Tar({{.name = "etc/motd", .data = "from the top layer\n"}})});
    std::string out;
    ASSERT_EQ(daemon_->RunSubcommand({"images", "import", layout.string(), kBusybox}, &out), 0) << out;
    sandbox_ = new pb::PodSandboxConfig(SandboxConfig("plain", daemon_->log_dir()));
    sandbox_->mutable_dns_config()->add_servers("10.96.0.10");
    sandbox_->mutable_dns_config()->add_searches("default.svc.cluster.local");
    sandbox_->mutable_dns_config()->add_options("ndots:5");
    (*sandbox_->mutable_linux()->mutable_sysctls())["net.ipv4.ip_unprivileged_port_start"] = "80";
    host_port_ = 30000 + ::getpid() % 20000;
    pb::PortMapping* pm = sandbox_->add_port_mappings();
    pm->set_protocol(pb::TCP);
    pm->set_container_port(8082);
    pm->set_host_port(host_port_);
    (*sandbox_->mutable_linux()->mutable_sysctls())["net.ipv4.ip_local_port_range"] = "20000 30000";
    pb::RunPodSandboxRequest req;
    *req.mutable_config() = *sandbox_;
    req.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse resp;
    grpc::Status s = daemon_->runtime().RunPodSandbox(Ctx(std::chrono::seconds(60)).get(), req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    pod_ = new std::string(resp.pod_sandbox_id());
  }
  static void TearDownTestSuite() {
    delete sandbox_;
    delete pod_;
    delete daemon_;
  }
  void SetUp() override {
    ASSERT_NE(daemon_, nullptr);
    ASSERT_NE(pod_, nullptr);
  }

  TestDaemon& d() { return *daemon_; }

  static pb::ContainerConfig Config(const std::string& name, const std::vector<std::string>& command) {
    pb::ContainerConfig c;
    c.mutable_metadata()->set_name(name);
    c.mutable_image()->set_image(kBusybox);
    c.set_log_path(name + "/0.log");
    for (const std::string& a : command) c.add_command(a);
    return c;
  }
  // CreateContainer + StartContainer; the id ("" with a failure).
  std::string Run(const pb::ContainerConfig& c) {
    std::string id;
    grpc::Status s = CreateContainerIn(d(), *pod_, *sandbox_, c, &id, std::chrono::seconds(240));
    EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << d().DaemonLog();
    if (!s.ok()) return "";
    pb::StartContainerRequest start;
    start.set_container_id(id);
    pb::StartContainerResponse resp;
    s = d().runtime().StartContainer(Ctx(std::chrono::seconds(60)).get(), start, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return s.ok() ? id : "";
  }
  // Runs `c` to its exit; its status.
  pb::ContainerStatus RunToExit(const pb::ContainerConfig& c) {
    const std::string id = Run(c);
    if (id.empty()) return {};
    EXPECT_TRUE(WaitForContainerState(d(), id, pb::CONTAINER_EXITED, std::chrono::seconds(90)));
    return GetContainerStatus(d(), id).status();
  }
  fs::path LogOf(const std::string& name) {
    return fs::path(sandbox_->log_directory()) / (name + "/0.log");
  }
  std::string Log(const std::string& name) { return ReadFileOrEmpty(LogOf(name)); }
  void Remove(const std::string& id) {
    pb::RemoveContainerRequest r;
    r.set_container_id(id);
    pb::RemoveContainerResponse resp;
    grpc::Status s = d().runtime().RemoveContainer(Ctx().get(), r, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  void Stop(const std::string& id, int64_t timeout) {
    pb::StopContainerRequest r;
    r.set_container_id(id);
    r.set_timeout(timeout);
    pb::StopContainerResponse resp;
    grpc::Status s = d().runtime().StopContainer(Ctx(std::chrono::seconds(timeout + 60)).get(), r, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }

  static TestDaemon* daemon_;
  static pb::PodSandboxConfig* sandbox_;
  static std::string* pod_;
  static int host_port_;
};
int PlainPodTest::host_port_ = 0;
TestDaemon* PlainPodTest::daemon_ = nullptr;
pb::PodSandboxConfig* PlainPodTest::sandbox_ = nullptr;
std::string* PlainPodTest::pod_ = nullptr;

TEST_F(PlainPodTest, EchoGoesToTheCriLogAsStdoutAndExitsZero) {
  pb::ContainerStatus st = RunToExit(Config("echo", {"/bin/sh", "-c", "echo hello-plain; echo oops >&2"}));
  EXPECT_EQ(st.exit_code(), 0);
  EXPECT_EQ(st.reason(), "Completed");
  EXPECT_EQ(CountCriLogLines(LogOf("echo"), "hello-plain"), 1) << Log("echo");
  EXPECT_THAT(Log("echo"), HasSubstr(" stdout F hello-plain\n"));
  EXPECT_THAT(Log("echo"), HasSubstr(" stderr F oops\n"));
  Remove(st.id());
}

TEST_F(PlainPodTest, ANonZeroExitIsAnError) {
  pb::ContainerStatus st = RunToExit(Config("exit3", {"/bin/sh", "-c", "exit 3"}));
  EXPECT_EQ(st.exit_code(), 3);
  EXPECT_EQ(st.reason(), "Error");
  Remove(st.id());
}

TEST_F(PlainPodTest, EnvWorkingDirAndTheImagesFiles) {
  pb::ContainerConfig c = Config("env", {"/bin/sh", "-c", "echo \"v=$GREETING cwd=$(pwd)\"; cat /etc/motd"});
  auto* kv = c.add_envs();
  kv->set_key("GREETING");
  kv->set_value("hi there");
  c.set_working_dir("/tmp");
  pb::ContainerStatus st = RunToExit(c);
  EXPECT_EQ(st.exit_code(), 0) << Log("env");
  EXPECT_THAT(Log("env"), HasSubstr("v=hi there cwd=/tmp"));
  EXPECT_THAT(Log("env"), HasSubstr("from the top layer"));
  Remove(st.id());
}

TEST_F(PlainPodTest, UserGroupsAndAUsernameFromTheImage) {
  pb::ContainerConfig c = Config("ids", {"/bin/sh", "-c", "id"});
  auto* sc = c.mutable_linux()->mutable_security_context();
  sc->mutable_run_as_user()->set_value(1234);
  sc->mutable_run_as_group()->set_value(2345);
  sc->add_supplemental_groups(3456);
  pb::ContainerStatus st = RunToExit(c);
  EXPECT_THAT(Log("ids"), HasSubstr("uid=1234 gid=2345"));
  EXPECT_THAT(Log("ids"), HasSubstr("3456"));
  Remove(st.id());

  pb::ContainerConfig byname = Config("byname", {"/bin/sh", "-c", "id"});
  byname.mutable_linux()->mutable_security_context()->set_run_as_username("app");
  st = RunToExit(byname);
  EXPECT_THAT(Log("byname"), HasSubstr("uid=1000(app) gid=1000(app)"));
  EXPECT_THAT(Log("byname"), HasSubstr("50(staff)"));
  Remove(st.id());
}

TEST_F(PlainPodTest, AReadOnlyRootRefusesWritesAndCapabilitiesAreAsAsked) {
  pb::ContainerConfig c = Config("ro", {"/bin/sh", "-c",
                                        "touch /x && echo wrote || echo refused; grep CapEff /proc/self/status"});
  auto* sc = c.mutable_linux()->mutable_security_context();
  sc->set_readonly_rootfs(true);
  sc->mutable_capabilities()->add_drop_capabilities("ALL");
  sc->mutable_capabilities()->add_add_capabilities("NET_ADMIN");
  pb::ContainerStatus st = RunToExit(c);
  EXPECT_THAT(Log("ro"), HasSubstr("refused"));
  // CAP_NET_ADMIN is bit 12 alone.
  EXPECT_THAT(Log("ro"), HasSubstr("CapEff:\t0000000000001000"));
  Remove(st.id());
}

TEST_F(PlainPodTest, DnsConfigHostnameHostsAndSysctls) {
  pb::ContainerStatus st =
      RunToExit(Config("dns", {"/bin/sh", "-c",
                               "cat /etc/resolv.conf; echo host=$(hostname); cat /etc/hosts; "
                               "echo unpriv=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start); "
                               "echo range=$(cat /proc/sys/net/ipv4/ip_local_port_range)"}));
  const std::string log = Log("dns");
  EXPECT_THAT(log, HasSubstr("nameserver 10.96.0.10"));
  EXPECT_THAT(log, HasSubstr("search default.svc.cluster.local"));
  EXPECT_THAT(log, HasSubstr("options ndots:5"));
  EXPECT_THAT(log, HasSubstr("host=plain"));
  EXPECT_THAT(log, HasSubstr("localhost"));
  // The Pod's sysctls, applied in the micro-VM before its first container.
  EXPECT_THAT(log, HasSubstr("unpriv=80"));
  EXPECT_THAT(log, ::testing::ContainsRegex("range=20000[ \t]+30000"));
  Remove(st.id());
}

TEST_F(PlainPodTest, AHostDirectoryIsMountedReadWrite) {
  const fs::path host = d().dir() / "hostdir";
  fs::create_directories(host);
  std::ofstream(host / "in.txt") << "from-the-host\n";
  pb::ContainerConfig c = Config("mnt", {"/bin/sh", "-c", "cat /data/in.txt; echo from-the-container > /data/out.txt"});
  auto* m = c.add_mounts();
  m->set_container_path("/data");
  m->set_host_path(host.string());
  pb::ContainerStatus st = RunToExit(c);
  EXPECT_EQ(st.exit_code(), 0) << Log("mnt");
  EXPECT_THAT(Log("mnt"), HasSubstr("from-the-host"));
  EXPECT_EQ(ReadFileOrEmpty(host / "out.txt"), "from-the-container\n");
  Remove(st.id());
}

TEST_F(PlainPodTest, SidecarsShareLocalhost) {
  const std::string server = Run(Config(
      "server", {"/bin/sh", "-c", "mkdir -p /www && echo served-over-localhost > /www/index.html && "
                                  "httpd -f -p 127.0.0.1:8080 -h /www"}));
  ASSERT_FALSE(server.empty());
  pb::ContainerStatus st = RunToExit(Config(
      "client", {"/bin/sh", "-c", "for i in $(seq 60); do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 1; done; "
                                  "exit 1"}));
  EXPECT_EQ(st.exit_code(), 0) << Log("client");
  EXPECT_THAT(Log("client"), HasSubstr("served-over-localhost"));
  Stop(server, 10);
  Remove(server);
  Remove(st.id());
}

TEST_F(PlainPodTest, TheHostReachesAContainerAtThePodIpAndThroughItsHostPort) {
  const std::string server = Run(Config(
      "web", {"/bin/sh", "-c", "mkdir -p /www && echo plain-web-answer > /www/index.html && httpd -f -p 8082 -h /www"}));
  ASSERT_FALSE(server.empty());
  pb::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(*pod_);
  pb::PodSandboxStatusResponse resp;
  ASSERT_TRUE(d().runtime().PodSandboxStatus(Ctx().get(), req, &resp).ok());
  const std::string ip = resp.status().network().ip();
  ASSERT_FALSE(ip.empty());
  EXPECT_THAT(HttpGetUntil(ip, 8082, "/", "plain-web-answer"), HasSubstr("plain-web-answer"));
  // portmap's DNAT, through the host's address on the Pod bridge (".1").
  const std::string gateway = d().subnet().substr(0, d().subnet().rfind('.') + 1) + "1";
  EXPECT_THAT(HttpGetUntil(gateway, host_port_, "/", "plain-web-answer"), HasSubstr("plain-web-answer"));
  Stop(server, 5);
  Remove(server);
}

TEST_F(PlainPodTest, StopIsSigtermThenSigkillAfterTheTimeout) {
  const std::string polite =
      Run(Config("polite", {"/bin/sh", "-c", "trap 'echo got-term; exit 0' TERM; echo up; while :; do sleep 1; done"}));
  ASSERT_TRUE(WaitForFileContains(LogOf("polite"), "up", std::chrono::seconds(60)));
  Stop(polite, 30);
  pb::ContainerStatus st = GetContainerStatus(d(), polite).status();
  EXPECT_EQ(st.state(), pb::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 0);
  EXPECT_TRUE(WaitForFileContains(LogOf("polite"), "got-term", std::chrono::seconds(10))) << Log("polite");
  Remove(polite);

  const std::string stubborn = Run(Config("stubborn", {"/bin/sh", "-c", "trap '' TERM; echo up; while :; do sleep 1; done"}));
  ASSERT_TRUE(WaitForFileContains(LogOf("stubborn"), "up", std::chrono::seconds(60)));
  const auto t0 = std::chrono::steady_clock::now();
  Stop(stubborn, 2);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  st = GetContainerStatus(d(), stubborn).status();
  EXPECT_EQ(st.exit_code(), 137);
  Remove(stubborn);
}

TEST_F(PlainPodTest, AContainerOverItsMemoryLimitIsOomKilled) {
  pb::ContainerConfig c = Config("oom", {"/bin/sh", "-c", "x=a; while :; do x=$x$x$x$x; done"});
  c.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(32ll << 20);
  pb::ContainerStatus st = RunToExit(c);
  EXPECT_EQ(st.exit_code(), 137);
  EXPECT_EQ(st.reason(), "OOMKilled");
  Remove(st.id());
}

TEST_F(PlainPodTest, AnExitedContainerIsReplacedInTheSameSandbox) {
  pb::ContainerConfig c = Config("again", {"/bin/sh", "-c", "echo attempt-run"});
  pb::ContainerStatus first = RunToExit(c);
  EXPECT_EQ(first.exit_code(), 0);
  c.mutable_metadata()->set_attempt(1);
  c.set_log_path("again/1.log");
  pb::ContainerStatus second = RunToExit(c);
  EXPECT_EQ(second.exit_code(), 0);
  EXPECT_NE(first.id(), second.id());
  EXPECT_THAT(ReadFileOrEmpty(fs::path(sandbox_->log_directory()) / "again/1.log"), HasSubstr("attempt-run"));
  Remove(first.id());
  Remove(second.id());
}

TEST_F(PlainPodTest, ExecRunsInTheContainerAndPortForwardReachesItsLocalhost) {
  pb::ContainerConfig c = Config("shell", {"/bin/sh", "-c",
                                           "echo in-container > /tmp/marker; mkdir -p /tmp/www; echo pf-ok > /tmp/www/index.html; "
                                           "exec httpd -f -p 127.0.0.1:8081 -h /tmp/www"});
  c.mutable_linux()->mutable_security_context()->set_run_as_username("app");
  const std::string id = Run(c);
  ASSERT_FALSE(id.empty());
  // At once: StartContainer returns once crun runs the process, as an exec
  // probe or postStart hook right after it expects.
  absl::StatusOr<pb::ExecSyncResponse> first = ExecSync(d(), id, {"true"});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->exit_code(), 0) << first->stderr();
  absl::Status ready = WaitForExec(d(), id, std::chrono::seconds(60));
  ASSERT_TRUE(ready.ok()) << ready;
  // ExecSync: the container's root (its /tmp), user and PID namespace.
  absl::StatusOr<pb::ExecSyncResponse> r =
      ExecSync(d(), id, {"/bin/sh", "-c", "cat /tmp/marker; id -un; echo to-err >&2; exit 4"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout(), "in-container\napp\n");
  EXPECT_EQ(r->stderr(), "to-err\n");
  EXPECT_EQ(r->exit_code(), 4);
  // A timeout kills the command and returns.
  const auto t0 = std::chrono::steady_clock::now();
  r = ExecSync(d(), id, {"sleep", "30"}, 2);
  EXPECT_FALSE(r.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(15));
  absl::StatusOr<pb::ExecSyncResponse> ps = ExecSync(d(), id, {"ps"});
  ASSERT_TRUE(ps.ok()) << ps.status();
  EXPECT_THAT(ps->stdout(), Not(HasSubstr("sleep 30")));
  // A tty exec sees its window size.
  for (Transport t : {Transport::kSpdy, Transport::kWebSocket}) {
    SCOPED_TRACE(TransportName(t));
    auto sh = OpenExec(d(), t, MakeExecRequest(id, {"/bin/sh"}, /*tty=*/true, /*stdin=*/true));
    ASSERT_TRUE(sh.ok()) << sh.status();
    ASSERT_TRUE((*sh)->Resize(120, 33).ok());
    absl::StatusOr<std::string> got = absl::DeadlineExceededError("no try");
    for (int i = 0; i < 10 && !got.ok(); ++i) {
      ASSERT_TRUE((*sh)->WriteStdin("stty size\n").ok());
      got = (*sh)->ReadStdoutUntil("33 120\r\n", absl::Seconds(3));
    }
    EXPECT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE((*sh)->WriteStdin("exit 6\n").ok());
    absl::StatusOr<RemoteCommandResult> end = (*sh)->Wait(absl::Seconds(30));
    ASSERT_TRUE(end.ok()) << end.status();
    EXPECT_EQ(end->exit_code, 6) << end->error_text;
  }
  // Port-forward: the micro-VM's 127.0.0.1, which its containers share.
  absl::StatusOr<std::string> url = PortForwardUrl(d(), *pod_, {8081});
  ASSERT_TRUE(url.ok()) << url.status();
  absl::StatusOr<std::unique_ptr<PortForwardClient>> pf = OpenSpdyPortForward(*url);
  ASSERT_TRUE(pf.ok()) << pf.status();
  absl::StatusOr<std::unique_ptr<ForwardedConnection>> conn = (*pf)->Connect(8081);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE((*conn)->Write("GET /index.html HTTP/1.0\r\n\r\n").ok());
  std::string answer;
  char buf[4096];
  for (;;) {
    absl::StatusOr<size_t> n = (*conn)->Read(buf, sizeof buf);
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0) break;  // the server closed first: the stream still ends
    answer.append(buf, *n);
  }
  EXPECT_THAT(answer, HasSubstr("pf-ok"));
  // Attach is refused with a reason.
  pb::AttachRequest attach;
  attach.set_container_id(id);
  attach.set_stdout(true);
  EXPECT_EQ(AttachUrl(d(), attach).status().code(), absl::StatusCode::kUnimplemented);
  Stop(id, 5);
  Remove(id);
}

TEST_F(PlainPodTest, TwoRunningContainersSurviveAKill9OfTheDaemon) {
  const std::string a = Run(Config("tick-a", {"/bin/sh", "-c", "i=0; while :; do echo tick-a-$i; i=$((i+1)); sleep 1; done"}));
  const std::string b = Run(Config("tick-b", {"/bin/sh", "-c", "i=0; while :; do echo tick-b-$i; i=$((i+1)); sleep 1; done"}));
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  ASSERT_TRUE(WaitForFileContains(LogOf("tick-a"), "tick-a-2", std::chrono::seconds(60)));
  d().Kill9();
  std::this_thread::sleep_for(std::chrono::seconds(3));  // they keep writing meanwhile
  d().Start();
  EXPECT_EQ(GetContainerStatus(d(), a).status().state(), pb::CONTAINER_RUNNING);
  EXPECT_EQ(GetContainerStatus(d(), b).status().state(), pb::CONTAINER_RUNNING);
  // What they wrote while the daemon was down, and after, reaches the logs.
  EXPECT_TRUE(WaitForFileContains(LogOf("tick-a"), "tick-a-9", std::chrono::seconds(60))) << Log("tick-a");
  EXPECT_TRUE(WaitForFileContains(LogOf("tick-b"), "tick-b-9", std::chrono::seconds(60))) << Log("tick-b");
  Stop(a, 0);
  Stop(b, 0);
  EXPECT_EQ(GetContainerStatus(d(), a).status().exit_code(), 137);
  Remove(a);
  Remove(b);
}

TEST_F(PlainPodTest, ZzRemovingThePodLeavesNothing) {
  const std::string running = Run(Config("left-running", {"/bin/sh", "-c", "sleep 1000"}));
  ASSERT_FALSE(running.empty());
  RemovePod(d(), *pod_);
  ExpectNoLeftovers(d());
  EXPECT_FALSE(fs::exists(d().root() / "pods" / *pod_));
  EXPECT_THAT(ReadFileOrEmpty("/proc/self/mountinfo"), Not(HasSubstr(d().root().string()))) << "mounts left";
}

}  // namespace
}  // namespace kvcri::testing
