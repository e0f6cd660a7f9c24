// Unit tests of the micro-VM container's OCI runtime spec: CRI request + image config → config.json, as containerd's CRI plugin would make it.
#include "runtime/microvm/runtime_spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace kvcri::runtime::microvm {
namespace {

using json = nlohmann::json;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const UserDb kUsers = ParseUserDb(
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "app:x:1000:1001:App:/home/app:/bin/sh\n"
    "broken line\n"
    "bad:x:notanumber:1::/:/bin/sh\n",
    "root:x:0:\n"
    "appgroup:x:1001:\n"
    "video:x:44:app,daemon\n"
    "audio:x:29:app\n"
    "wheel:x:10:root\n");

ContainerRequest Request() {
  ContainerRequest r;
  r.id = "c1";
  r.hostname = "pod-a";
  return r;
}

json Build(const ContainerRequest& r, const ImageProcess& image = {.cmd = {"/bin/sh"}}) {
  absl::StatusOr<json> spec = BuildRuntimeSpec(r, image, kUsers);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : json();
}

std::string BuildError(const ContainerRequest& r, const ImageProcess& image = {.cmd = {"/bin/sh"}}) {
  absl::StatusOr<json> spec = BuildRuntimeSpec(r, image, kUsers);
  EXPECT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(spec.status().message());
}

TEST(MicroVmRuntimeSpec, ArgumentsMergeCommandArgsAndTheImageAsContainerdDoes) {
  const ImageProcess image{.entrypoint = {"/entry"}, .cmd = {"default-arg"}};
  ContainerRequest r = Request();
  EXPECT_EQ(Build(r, image)["process"]["args"], json({"/entry", "default-arg"}));
  r.args = {"mine"};
  EXPECT_EQ(Build(r, image)["process"]["args"], json({"/entry", "mine"})) << "args replace Cmd, keep Entrypoint";
  r.command = {"/bin/echo"};
  EXPECT_EQ(Build(r, image)["process"]["args"], json({"/bin/echo", "mine"}));
  r.args.clear();
  EXPECT_EQ(Build(r, image)["process"]["args"], json({"/bin/echo"})) << "a command drops the image's Cmd";
  EXPECT_THAT(BuildError(Request(), ImageProcess{}), HasSubstr("command"));
}

TEST(MicroVmRuntimeSpec, EnvironmentLayersDefaultsImageAndRequest) {
  ContainerRequest r = Request();
  r.env = {{"B", "from-request"}, {"C", "c"}};
  json env = Build(r, {.env = {"PATH=/image/bin", "A=a", "B=from-image"}, .cmd = {"x"}})["process"]["env"];
  EXPECT_EQ(env, json({"PATH=/image/bin", "HOSTNAME=pod-a", "A=a", "B=from-request", "C=c"}));
}

TEST(MicroVmRuntimeSpec, WorkingDirFromRequestElseImageElseRoot) {
  ContainerRequest r = Request();
  EXPECT_EQ(Build(r)["process"]["cwd"], "/");
  EXPECT_EQ(Build(r, {.cmd = {"x"}, .working_dir = "/srv"})["process"]["cwd"], "/srv");
  r.working_dir = "/work";
  EXPECT_EQ(Build(r, {.cmd = {"x"}, .working_dir = "/srv"})["process"]["cwd"], "/work");
}

TEST(MicroVmRuntimeSpec, UsersAndGroupsResolveInTheContainersOwnDatabase) {
  ContainerRequest r = Request();
  EXPECT_EQ(Build(r)["process"]["user"], json({{"uid", 0}, {"gid", 0}, {"additionalGids", {10}}}))
      << "root, and root's membership of wheel";
  r.run_as_user = 1000;
  json u = Build(r)["process"]["user"];
  EXPECT_EQ(u["uid"], 1000);
  EXPECT_EQ(u["gid"], 1001) << "the primary group from /etc/passwd";
  EXPECT_EQ(u["additionalGids"], json({29, 44}));
  r.run_as_group = 5;
  r.supplemental_groups = {44, 3000};
  u = Build(r)["process"]["user"];
  EXPECT_EQ(u["gid"], 5);
  EXPECT_EQ(u["additionalGids"], json({29, 44, 3000}));
  // A uid the image does not know runs with gid 0, as under runc.
  ContainerRequest unknown = Request();
  unknown.run_as_user = 4242;
  EXPECT_EQ(Build(unknown)["process"]["user"], json({{"uid", 4242}, {"gid", 0}}));
  ContainerRequest named = Request();
  named.run_as_username = "daemon";
  EXPECT_EQ(Build(named)["process"]["user"], json({{"uid", 1}, {"gid", 1}, {"additionalGids", {44}}}));
  named.run_as_username = "nobody";
  EXPECT_THAT(BuildError(named), HasSubstr("user \"nobody\" is not in the image's /etc/passwd"));
  ContainerRequest group_only = Request();
  group_only.run_as_group = 7;
  EXPECT_THAT(BuildError(group_only), HasSubstr("run_as_group"));
}

TEST(MicroVmRuntimeSpec, TheImagesUserIsUsedWhenTheRequestNamesNone) {
  ContainerRequest r = Request();
  EXPECT_EQ(Build(r, {.user = "app", .cmd = {"x"}})["process"]["user"]["uid"], 1000);
  json u = Build(r, {.user = "app:audio", .cmd = {"x"}})["process"]["user"];
  EXPECT_EQ(u["uid"], 1000);
  EXPECT_EQ(u["gid"], 29);
  u = Build(r, {.user = "123:456", .cmd = {"x"}})["process"]["user"];
  EXPECT_EQ(u["uid"], 123);
  EXPECT_EQ(u["gid"], 456);
  EXPECT_THAT(BuildError(r, {.user = "app:nogroup", .cmd = {"x"}}),
              HasSubstr("image config User: group \"nogroup\" is not in the image's /etc/group"));
  EXPECT_THAT(BuildError(r, {.user = "a:b:c", .cmd = {"x"}}), HasSubstr("not user[:group]"));
  r.run_as_user = 1;
  EXPECT_EQ(Build(r, {.user = "app", .cmd = {"x"}})["process"]["user"]["uid"], 1) << "the request wins";
}

TEST(MicroVmRuntimeSpec, CapabilitiesAddAndDropWithAllAsContainerd) {
  ContainerRequest r = Request();
  json caps = Build(r)["process"]["capabilities"];
  EXPECT_EQ(caps["bounding"].size(), DefaultCapabilities().size());
  EXPECT_EQ(caps["bounding"], caps["effective"]);
  EXPECT_EQ(caps["bounding"], caps["permitted"]);
  EXPECT_FALSE(caps.contains("inheritable"));
  EXPECT_FALSE(caps.contains("ambient"));
  r.add_capabilities = {"net_admin"};
  r.drop_capabilities = {"NET_RAW", "CAP_KILL"};
  caps = Build(r)["process"]["capabilities"]["effective"];
  EXPECT_THAT(caps, Contains("CAP_NET_ADMIN"));
  EXPECT_THAT(caps, Not(Contains("CAP_NET_RAW")));
  EXPECT_THAT(caps, Not(Contains("CAP_KILL")));
  ContainerRequest none = Request();
  none.drop_capabilities = {"ALL"};
  none.add_capabilities = {"CHOWN"};
  EXPECT_EQ(Build(none)["process"]["capabilities"]["effective"], json({"CAP_CHOWN"}));
  ContainerRequest all = Request();
  all.add_capabilities = {"ALL"};
  all.drop_capabilities = {"SYS_ADMIN"};
  caps = Build(all)["process"]["capabilities"]["effective"];
  EXPECT_EQ(caps.size(), AllCapabilities().size() - 1);
  EXPECT_THAT(caps, Not(Contains("CAP_SYS_ADMIN")));
  ContainerRequest bad = Request();
  bad.add_capabilities = {"FLY"};
  EXPECT_THAT(BuildError(bad), HasSubstr("capabilities.add_capabilities: unknown capability \"FLY\""));
}

TEST(MicroVmRuntimeSpec, PrivilegedHasEveryCapabilityNoMasksNoSeccompAndTheGuestsDevices) {
  ContainerRequest r = Request();
  r.privileged = true;
  r.seccomp = SeccompKind::kRuntimeDefault;
  r.masked_paths = std::vector<std::string>{"/proc/kcore"};
  json spec = Build(r);
  EXPECT_EQ(spec["process"]["capabilities"]["effective"].size(), AllCapabilities().size());
  EXPECT_FALSE(spec["linux"].contains("maskedPaths"));
  EXPECT_FALSE(spec["linux"].contains("readonlyPaths"));
  EXPECT_FALSE(spec["linux"].contains("seccomp"));
  EXPECT_EQ(spec["linux"]["resources"]["devices"], json::array({{{"allow", true}, {"access", "rwm"}}}));
  for (const json& m : spec["mounts"]) {
    if (m["destination"] == "/dev") EXPECT_EQ(m["type"], "bind");
  }
}

TEST(MicroVmRuntimeSpec, MaskedAndReadonlyPathsAsGivenElseContainerdsDefaults) {
  ContainerRequest r = Request();
  json linux = Build(r)["linux"];
  EXPECT_THAT(linux["maskedPaths"], Contains("/proc/kcore"));
  EXPECT_THAT(linux["readonlyPaths"], Contains("/proc/sys"));
  r.masked_paths = std::vector<std::string>{"/proc/acpi"};
  r.readonly_paths = std::vector<std::string>{};
  linux = Build(r)["linux"];
  EXPECT_EQ(linux["maskedPaths"], json({"/proc/acpi"}));
  EXPECT_EQ(linux["readonlyPaths"], json::array());
}

TEST(MicroVmRuntimeSpec, NamespacesAreTheContainersOwnExceptWhatTheVmSharesAsThePod) {
  ContainerRequest r = Request();
  json ns = Build(r)["linux"]["namespaces"];
  EXPECT_EQ(ns, json::array({{{"type", "mount"}}, {{"type", "cgroup"}}, {{"type", "pid"}}}))
      << "network, IPC and UTS are the guest's: the Pod's";
  r.pid = PidMode::kPod;
  EXPECT_THAT(BuildError(r), HasSubstr("namespace_options.pid"));
  r.pod_pid_namespace = "/proc/7/ns/pid";
  EXPECT_THAT(Build(r)["linux"]["namespaces"], Contains(json{{"type", "pid"}, {"path", "/proc/7/ns/pid"}}));
  r.pid = PidMode::kNode;
  EXPECT_EQ(Build(r)["linux"]["namespaces"].size(), 2u);
  EXPECT_EQ(Build(r)["linux"]["cgroupsPath"], "/kvcri/c1/ctr");
  EXPECT_EQ(GuestCgroupParent("c1"), "/sys/fs/cgroup/kvcri/c1");
}

TEST(MicroVmRuntimeSpec, MountsReplaceDefaultsAtTheSameDestinationAndKeepTheirMode) {
  ContainerRequest r = Request();
  r.readonly_rootfs = true;
  r.mounts = {{"/run/kvcri/pod/c1/mounts/0", "/data", false}, {"/run/kvcri/pod/c1/mounts/1", "/dev/shm", true}};
  json spec = Build(r);
  EXPECT_EQ(spec["root"], json({{"path", "rootfs"}, {"readonly", true}}));
  int shm = 0;
  for (const json& m : spec["mounts"]) {
    if (m["destination"] == "/dev/shm") {
      ++shm;
      EXPECT_EQ(m["source"], "/run/kvcri/pod/c1/mounts/1");
      EXPECT_THAT(m["options"], Contains("ro"));
    }
    if (m["destination"] == "/data") EXPECT_THAT(m["options"], Contains("rw"));
  }
  EXPECT_EQ(shm, 1);
}

TEST(MicroVmRuntimeSpec, ResourcesBecomeTheContainersCgroupInTheGuest) {
  ContainerRequest r = Request();
  r.resources = {.cpu_period = 100000, .cpu_quota = 50000, .cpu_shares = 512, .memory_limit_bytes = 64 << 20,
                 .oom_score_adj = 900};
  json spec = Build(r);
  EXPECT_EQ(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
  EXPECT_EQ(spec["linux"]["resources"]["cpu"], json({{"period", 100000}, {"quota", 50000}, {"shares", 512}}));
  EXPECT_EQ(spec["process"]["oomScoreAdj"], 900);
}

TEST(MicroVmRuntimeSpec, RuntimeDefaultSeccompRefusesWhatTheCapabilitiesDoNotGrant) {
  ContainerRequest r = Request();
  r.seccomp = SeccompKind::kRuntimeDefault;
  json sc = Build(r)["linux"]["seccomp"];
  EXPECT_EQ(sc["defaultAction"], "SCMP_ACT_ALLOW");
  EXPECT_THAT(sc["syscalls"][0]["names"], Contains("mount"));
  EXPECT_THAT(sc["syscalls"][0]["names"], Contains("kexec_load"));
  EXPECT_THAT(sc["syscalls"][0]["names"], Not(Contains("sethostname")));
  r.add_capabilities = {"SYS_ADMIN"};
  sc = Build(r)["linux"]["seccomp"];
  EXPECT_THAT(sc["syscalls"][0]["names"], Not(Contains("mount")));
  EXPECT_THAT(sc["syscalls"][0]["names"], Contains("kexec_load")) << "never granted";
  EXPECT_EQ(sc["syscalls"].size(), 1u) << "no clone namespace rules with CAP_SYS_ADMIN";
}

TEST(MicroVmRuntimeSpec, LocalhostSeccompProfilesAreCheckedAndConverted) {
  ContainerRequest r = Request();
  r.seccomp = SeccompKind::kLocalhost;
  r.seccomp_localhost_json = R"({"defaultAction":"SCMP_ACT_ALLOW","archMap":[],
      "syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO","comment":"x"}]})";
  json sc = Build(r)["linux"]["seccomp"];
  EXPECT_EQ(sc, json({{"defaultAction", "SCMP_ACT_ALLOW"},
                      {"syscalls", {{{"action", "SCMP_ACT_ERRNO"}, {"names", {"sethostname"}}}}}}));
  r.seccomp_localhost_json = "[1,2]";
  EXPECT_THAT(BuildError(r), HasSubstr("seccomp.localhost_ref: the profile is not a seccomp profile"));
  r.seccomp_localhost_json = R"({"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"]}]})";
  EXPECT_THAT(BuildError(r), HasSubstr("no \"action\""));
}

TEST(MicroVmRuntimeSpec, TheUserDatabaseIsReadInsideTheImagesRoot) {
  char tmpl[] = "/tmp/kvrs-XXXXXX";
  const std::filesystem::path dir = ::mkdtemp(tmpl);
  const std::filesystem::path root = dir / "rootfs";
  std::filesystem::create_directories(root / "etc");
  std::filesystem::create_directories(dir / "outside/etc");
  std::ofstream(dir / "outside/etc/passwd") << "host:x:5:5::/:/bin/sh\n";
  // An absolute symlink out of the root resolves inside it (missing there).
  std::filesystem::create_symlink(dir / "outside/etc/passwd", root / "etc/passwd");
  std::ofstream(root / "etc/group") << "g:x:9:u\n";
  absl::StatusOr<UserDb> db = ReadUserDb(root);
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_TRUE(db->users.empty()) << "followed a symlink out of the image's root";
  ASSERT_EQ(db->groups.size(), 1u);
  EXPECT_THAT(db->groups[0].members, ElementsAre("u"));
  // Inside the root, a symlink works.
  std::filesystem::remove(root / "etc/passwd");
  std::ofstream(root / "etc/passwd.real") << "u:x:7:9::/:/bin/sh\n";
  std::filesystem::create_symlink("/etc/passwd.real", root / "etc/passwd");
  db = ReadUserDb(root);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_EQ(db->users.size(), 1u);
  EXPECT_EQ(db->users[0].uid, 7u);
  // A FIFO is never opened for reading.
  std::filesystem::remove(root / "etc/group");
  ASSERT_EQ(::mkfifo((root / "etc/group").c_str(), 0644), 0);
  EXPECT_FALSE(ReadUserDb(root).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvcri::runtime::microvm
