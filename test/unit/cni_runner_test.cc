// ExecCniRunner against fake plugins: bash scripts that record their stdin
// and CNI_* environment and print canned results or errors.
#include "cni/cni_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cni/cache.h"
#include "cni/exec_cni_runner.h"
#include "cni/plugin_exec.h"
#include "cni/result.h"

namespace kvcri::cni {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Spit(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
}

class CniRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kvcri-cni-unit-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    for (const char* d : {"bin", "bin2", "conf", "cache", "ctl"})
      fs::create_directories(root_ / d);
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path ctl() const { return root_ / "ctl"; }

  // A fake plugin named `name` in bin/ (or bin2/).
  void WritePlugin(const std::string& name, const std::string& dir = "bin") {
    fs::path p = root_ / dir / name;
    std::string script = R"SH(#!/bin/bash
ctl=CTL
name=NAME
input=$(cat)
i=$(( $(cat "$ctl/counter" 2>/dev/null || echo 0) + 1 ))
echo $i > "$ctl/counter"
echo "$name $CNI_COMMAND" >> "$ctl/calls.log"
printf '%s' "$input" > "$ctl/$i.stdin"
env | grep '^CNI_' | sort > "$ctl/$i.env"
base="$ctl/$name.$CNI_COMMAND"
if [ -f "$base.sleep" ]; then
  sleep "$(cat "$base.sleep")" &
  echo $! > "$ctl/$name.sleeper"
  wait
fi
if [ -f "$base.out" ]; then
  cat "$base.out"
elif [ "$CNI_COMMAND" = ADD ]; then
  printf '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:0%s","sandbox":"%s"}],"ips":[{"address":"10.99.0.%s/24","gateway":"10.99.0.1","interface":0}],"dns":{"nameservers":["10.99.0.%s"]}}' "$i" "$CNI_NETNS" "$i" "$i"
fi
if [ -f "$base.rc" ]; then exit "$(cat "$base.rc")"; fi
exit 0
)SH";
    script.replace(script.find("CTL"), 3, ctl().string());
    script.replace(script.find("NAME"), 4, name);
    Spit(p, script);
    fs::permissions(p, fs::perms::owner_all);
  }
  // Canned behaviour for `name` on `command`.
  void SetOutput(const std::string& name, const std::string& command,
                 const std::string& out, int rc = 0) {
    Spit(ctl() / (name + "." + command + ".out"), out);
    Spit(ctl() / (name + "." + command + ".rc"), std::to_string(rc));
  }

  void WriteConflist(const std::string& text,
                     const std::string& file = "10-test.conflist") {
    for (const auto& e : fs::directory_iterator(root_ / "conf"))
      fs::remove(e.path());
    Spit(root_ / "conf" / file, text);
  }
  // A conflist of fake plugins; `extra` is spliced into each plugin object.
  void WriteChain(const std::vector<std::string>& plugins,
                  const std::string& version = "1.0.0",
                  const std::string& name = "testnet") {
    json list = {
        {"cniVersion", version}, {"name", name}, {"plugins", json::array()}};
    for (const std::string& p : plugins) {
      WritePlugin(p);
      list["plugins"].push_back({{"type", p}, {"marker", p + "-config"}});
    }
    WriteConflist(list.dump());
  }

  ExecCniRunnerOptions Options() const {
    ExecCniRunnerOptions o;
    o.conf_dir = root_ / "conf";
    o.bin_dirs = {root_ / "bin", root_ / "bin2"};
    o.cache_dir = root_ / "cache";
    o.plugin_timeout = absl::Seconds(20);
    return o;
  }

  AttachSpec Spec() const {
    AttachSpec s;
    s.container_id = "0123abcd";
    s.netns = "/run/netns/fake-0123abcd";
    s.pod_namespace = "default";
    s.pod_name = "web";
    s.pod_uid = "uid-1";
    return s;
  }

  std::vector<std::string> Calls() const {
    std::vector<std::string> out;
    std::ifstream in(ctl() / "calls.log");
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }
  json Stdin(int call) const {
    return json::parse(Slurp(ctl() / (std::to_string(call) + ".stdin")));
  }
  std::map<std::string, std::string> Env(int call) const {
    std::map<std::string, std::string> out;
    std::ifstream in(ctl() / (std::to_string(call) + ".env"));
    for (std::string line; std::getline(in, line);) {
      size_t eq = line.find('=');
      out[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return out;
  }
  std::vector<fs::path> CacheFiles() const {
    std::vector<fs::path> out;
    if (!fs::exists(root_ / "cache" / "results")) return out;
    for (const auto& e : fs::directory_iterator(root_ / "cache" / "results"))
      out.push_back(e.path());
    return out;
  }

  fs::path root_;
};

TEST_F(CniRunnerTest, AddPassesCniEnvironmentAndPluginConfig) {
  WriteChain({"fake-a"});
  ExecCniRunner runner(Options());
  absl::StatusOr<CniResult> r = runner.Add(Spec());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(Calls(), ElementsAre("fake-a ADD"));
  std::map<std::string, std::string> env = Env(1);
  EXPECT_EQ(env["CNI_COMMAND"], "ADD");
  EXPECT_EQ(env["CNI_CONTAINERID"], "0123abcd");
  EXPECT_EQ(env["CNI_NETNS"], "/run/netns/fake-0123abcd");
  EXPECT_EQ(env["CNI_IFNAME"], "eth0");
  EXPECT_EQ(env["CNI_ARGS"],
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
            "K8S_POD_INFRA_CONTAINER_ID=0123abcd;K8S_POD_UID=uid-1");
  EXPECT_EQ(env["CNI_PATH"],
            (root_ / "bin").string() + ":" + (root_ / "bin2").string());
  json in = Stdin(1);
  EXPECT_EQ(in["name"], "testnet");
  EXPECT_EQ(in["cniVersion"], "1.0.0");
  EXPECT_EQ(in["type"], "fake-a");
  EXPECT_EQ(in["marker"], "fake-a-config");
  EXPECT_FALSE(in.contains("prevResult"));
  EXPECT_FALSE(in.contains("runtimeConfig"));
  EXPECT_THAT(PodIps(*r), ElementsAre("10.99.0.1"));
}

// CNI_ARGS has no escaping: a ';' or '=' in a name would add a key such as
// IP= (host-local hands out that address). No plugin runs with such a value.
TEST_F(CniRunnerTest, ArgsThatWouldInjectIntoCniArgsAreRefusedBeforeAnyPluginRuns) {
  WriteChain({"fake-a"});
  ExecCniRunner runner(Options());
  for (const std::string& bad :
       std::vector<std::string>{"web;IP=10.0.0.99", "web=x", "web\nIP=1", std::string("w\0b", 3)}) {
    AttachSpec spec = Spec();
    spec.pod_name = bad;
    absl::StatusOr<CniResult> r = runner.Add(spec);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("K8S_POD_NAME")) << bad;
    AttachSpec ns = Spec();
    ns.pod_namespace = bad;
    EXPECT_FALSE(runner.Add(ns).ok()) << bad;
  }
  EXPECT_THAT(Calls(), ElementsAre());
}

TEST_F(CniRunnerTest, PluginIsFoundInLaterBinDir) {
  WriteChain({"fake-a"});
  fs::rename(root_ / "bin" / "fake-a", root_ / "bin2" / "fake-a");
  ExecCniRunner runner(Options());
  ASSERT_TRUE(runner.Add(Spec()).ok());
  EXPECT_THAT(Calls(), ElementsAre("fake-a ADD"));
}

TEST_F(CniRunnerTest, AddChainsPrevResultAndReturnsLastResult) {
  WriteChain({"fake-a", "fake-b", "fake-c"});
  ExecCniRunner runner(Options());
  absl::StatusOr<CniResult> r = runner.Add(Spec());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(Calls(), ElementsAre("fake-a ADD", "fake-b ADD", "fake-c ADD"));
  EXPECT_FALSE(Stdin(1).contains("prevResult"));
  EXPECT_EQ(Stdin(2)["prevResult"]["ips"][0]["address"], "10.99.0.1/24");
  EXPECT_EQ(Stdin(3)["prevResult"]["ips"][0]["address"], "10.99.0.2/24");
  ASSERT_EQ(r->ips.size(), 1u);
  EXPECT_EQ(r->ips[0].address, "10.99.0.3/24");
  EXPECT_EQ(r->ips[0].gateway, "10.99.0.1");
  ASSERT_EQ(r->interfaces.size(), 1u);
  EXPECT_EQ(r->interfaces[0].sandbox, "/run/netns/fake-0123abcd");
  EXPECT_THAT(r->dns.nameservers, ElementsAre("10.99.0.3"));
}

TEST_F(CniRunnerTest, CapabilityArgumentsGoOnlyToPluginsThatDeclareThem) {
  for (const char* p : {"ports", "shaper", "plain", "refuses"}) WritePlugin(p);
  WriteConflist(R"({"cniVersion":"1.0.0","name":"capnet","plugins":[
    {"type":"ports","capabilities":{"portMappings":true}},
    {"type":"shaper","capabilities":{"bandwidth":true,"dns":true}},
    {"type":"plain"},
    {"type":"refuses","capabilities":{"portMappings":false,"io.example/unknown":true}}]})");
  AttachSpec spec = Spec();
  spec.port_mappings = {{8080, 80, "tcp", ""},
                        {5353, 53, "udp", "127.0.0.1"},
                        {0, 9000, "tcp", ""}};
  spec.bandwidth = {1000000, 4294967295u, 2000000, 4294967295u};
  spec.dns = {{"10.96.0.10"}, {"default.svc.cluster.local"}, {"ndots:5"}};
  ExecCniRunner runner(Options());
  ASSERT_TRUE(runner.Add(spec).ok());
  ASSERT_EQ(Calls().size(), 4u);

  json ports = Stdin(1)["runtimeConfig"];
  EXPECT_EQ(ports, json::parse(R"({"portMappings":[
      {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
      {"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"}]})"));
  json shaper = Stdin(2)["runtimeConfig"];
  EXPECT_EQ(shaper, json::parse(R"({
      "bandwidth":{"ingressRate":1000000,"ingressBurst":4294967295,"egressRate":2000000,"egressBurst":4294967295},
      "dns":{"servers":["10.96.0.10"],"searches":["default.svc.cluster.local"],"options":["ndots:5"]}})"));
  EXPECT_FALSE(Stdin(3).contains("runtimeConfig"));
  EXPECT_FALSE(Stdin(4).contains("runtimeConfig"));
}

TEST_F(CniRunnerTest, UnsetBandwidthAndDnsAreNotInjected) {
  WritePlugin("shaper");
  WriteConflist(R"({"cniVersion":"1.0.0","name":"capnet","plugins":[
    {"type":"shaper","capabilities":{"bandwidth":true,"dns":true,"portMappings":true}}]})");
  ExecCniRunner runner(Options());
  ASSERT_TRUE(runner.Add(Spec()).ok());
  // containerd always offers portMappings, possibly empty.
  EXPECT_EQ(Stdin(1)["runtimeConfig"], json::parse(R"({"portMappings":[]})"));
}

TEST_F(CniRunnerTest, DelRunsPluginsInReverseWithCachedResultAndDropsCache) {
  WriteChain({"fake-a", "fake-b", "fake-c"});
  ExecCniRunner runner(Options());
  absl::StatusOr<CniResult> added = runner.Add(Spec());
  ASSERT_TRUE(added.ok());
  ASSERT_EQ(CacheFiles().size(), 1u);
  EXPECT_EQ(CacheFiles()[0].filename(), "testnet-0123abcd-eth0");

  ASSERT_TRUE(runner.Del(Spec()).ok());
  EXPECT_THAT(Calls(), ElementsAre("fake-a ADD", "fake-b ADD", "fake-c ADD",
                                   "fake-c DEL", "fake-b DEL", "fake-a DEL"));
  for (int call : {4, 5, 6}) {
    EXPECT_EQ(Env(call)["CNI_COMMAND"], "DEL");
    EXPECT_EQ(Stdin(call)["prevResult"], json::parse(added->raw_json))
        << "call " << call;
  }
  EXPECT_THAT(CacheFiles(), IsEmpty());
  EXPECT_TRUE(absl::IsNotFound(runner.GetCachedResult("0123abcd").status()));
}

TEST_F(CniRunnerTest, DelOfPre040NetworkSendsNoPrevResult) {
  WriteChain({"fake-a"}, "0.3.1");
  SetOutput(
      "fake-a", "ADD",
      R"({"cniVersion":"0.3.1","interfaces":[{"name":"eth0","sandbox":"/x"}],
                "ips":[{"version":"4","address":"10.5.0.7/16","gateway":"10.5.0.1","interface":0}]})");
  ExecCniRunner runner(Options());
  absl::StatusOr<CniResult> r = runner.Add(Spec());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->cni_version, "0.3.1");
  EXPECT_THAT(PodIps(*r), ElementsAre("10.5.0.7"));
  ASSERT_TRUE(runner.Del(Spec()).ok());
  EXPECT_FALSE(Stdin(2).contains("prevResult"));
}

TEST_F(CniRunnerTest, PluginErrorObjectBecomesStatusWithCodeMsgAndDetails) {
  WriteChain({"fake-a", "fake-b"});
  SetOutput(
      "fake-b", "ADD",
      R"({"cniVersion":"1.0.0","code":7,"msg":"invalid network config","details":"field \"subnet\" missing"})",
      1);
  ExecCniRunner runner(Options());
  absl::StatusOr<CniResult> r = runner.Add(Spec());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"fake-b\""));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("code=7"));
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("invalid network config"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("subnet"));
  EXPECT_EQ(CniErrorCode(r.status()), 7);
}

TEST_F(CniRunnerTest, TryAgainLaterIsUnavailable) {
  WriteChain({"fake-a"});
  SetOutput("fake-a", "ADD", R"({"cniVersion":"1.0.0","code":11,"msg":"busy"})",
            1);
  ExecCniRunner runner(Options());
  EXPECT_EQ(runner.Add(Spec()).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(CniRunnerTest, PluginCrashWithoutErrorObjectReportsStderr) {
  WriteChain({"fake-a"});
  WritePlugin("fake-a");
  Spit(root_ / "bin" / "fake-a",
       "#!/bin/bash\ncat >/dev/null\necho 'panic: boom' >&2\nexit 2\n");
  ExecCniRunner runner(Options());
  absl::Status s = runner.Add(Spec()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(s.message()), HasSubstr("exited with status 2"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("panic: boom"));
}

TEST_F(CniRunnerTest, MissingPluginIsFailedPreconditionNamingPluginAndDirs) {
  WriteChain({"fake-a"});
  WriteConflist(
      R"({"cniVersion":"1.0.0","name":"testnet","plugins":[{"type":"fake-a"},{"type":"nonesuch"}]})");
  ExecCniRunner runner(Options());
  absl::Status s = runner.Add(Spec()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("\"nonesuch\""));
  EXPECT_THAT(std::string(s.message()), HasSubstr((root_ / "bin").string()));
  EXPECT_THAT(std::string(s.message()), HasSubstr((root_ / "bin2").string()));
  EXPECT_THAT(Calls(), IsEmpty());  // nothing ran, nothing to undo
}

TEST_F(CniRunnerTest, PluginTypeWithSlashIsRejected) {
  WriteConflist(
      R"({"cniVersion":"1.0.0","name":"testnet","plugins":[{"type":"../../bin/sh"}]})");
  ExecCniRunner runner(Options());
  EXPECT_EQ(runner.Add(Spec()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CniRunnerTest, BrokenConflistIsInvalidArgumentNamingTheFile) {
  WriteConflist("{ not json", "10-broken.conflist");
  ExecCniRunner runner(Options());
  absl::Status s = runner.Add(Spec()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("10-broken.conflist"));

  WriteConflist(
      R"({"cniVersion":"0.2.0","name":"old","plugins":[{"type":"x"}]})",
      "20-old.conflist");
  s = runner.Add(Spec()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("20-old.conflist"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("0.2.0"));
}

TEST_F(CniRunnerTest, WrongTypesInConfigAreErrorsNotCrashes) {
  ExecCniRunner runner(Options());
  for (const char* text :
       {R"({"cniVersion":1,"name":"n","plugins":[{"type":"x"}]})",
        R"({"cniVersion":"1.0.0","name":"bad/name","plugins":[{"type":"x"}]})",
        R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":7}]})",
        R"({"cniVersion":"1.0.0","name":"n","plugins":{}})"}) {
    WriteConflist(text);
    EXPECT_EQ(runner.Add(Spec()).status().code(),
              absl::StatusCode::kInvalidArgument)
        << text;
  }
  WriteConflist(R"({"cniVersion":2,"name":"n","type":"x"})", "10-single.conf");
  EXPECT_EQ(runner.Add(Spec()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CniRunnerTest, DisableCheckSkipsPlugins) {
  WritePlugin("fake-a");
  WriteConflist(
      R"({"cniVersion":"1.0.0","name":"n","disableCheck":true,"plugins":[{"type":"fake-a"}]})");
  ExecCniRunner runner(Options());
  ASSERT_TRUE(runner.Add(Spec()).ok());
  EXPECT_TRUE(runner.Check(Spec()).ok());
  EXPECT_THAT(Calls(), ElementsAre("fake-a ADD"));
}

TEST_F(CniRunnerTest, NoConfigAtAllIsFailedPrecondition) {
  ExecCniRunner runner(Options());
  EXPECT_EQ(runner.Add(Spec()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(CniRunnerTest, InvalidSpecIsRejectedBeforeAnyPluginRuns) {
  WriteChain({"fake-a"});
  ExecCniRunner runner(Options());
  AttachSpec s = Spec();
  s.container_id = "../etc";
  EXPECT_EQ(runner.Add(s).status().code(), absl::StatusCode::kInvalidArgument);
  s = Spec();
  s.ifname = "eth0/../x";
  EXPECT_EQ(runner.Add(s).status().code(), absl::StatusCode::kInvalidArgument);
  s = Spec();
  s.netns = "";
  EXPECT_EQ(runner.Add(s).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Calls(), IsEmpty());
}

TEST_F(CniRunnerTest, TimeoutKillsPluginAndItsChildren) {
  WriteChain({"fake-a"});
  Spit(ctl() / "fake-a.ADD.sleep", "30");
  ExecCniRunnerOptions o = Options();
  o.plugin_timeout = absl::Milliseconds(500);
  ExecCniRunner runner(o);
  auto start = std::chrono::steady_clock::now();
  absl::Status s = runner.Add(Spec()).status();
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(s.message()), HasSubstr("\"fake-a\""));
  EXPECT_LT(took, std::chrono::seconds(10));
  // The plugin's own child (sleep 30) is gone too: dead or a zombie.
  pid_t sleeper = std::stoi(Slurp(ctl() / "fake-a.sleeper"));
  std::string stat = Slurp("/proc/" + std::to_string(sleeper) + "/stat");
  if (!stat.empty()) {
    EXPECT_THAT(stat.substr(stat.rfind(')') + 2, 1), ::testing::AnyOf("Z", "X"))
        << stat;
  }
  // And the timed-out ADD was rolled back.
  EXPECT_THAT(Calls(), ElementsAre("fake-a ADD", "fake-a DEL"));
  EXPECT_THAT(CacheFiles(), IsEmpty());
}

TEST_F(CniRunnerTest, FailingSecondPluginRollsBackWholeChainAndCachesNothing) {
  WriteChain({"fake-a", "fake-b", "fake-c"});
  SetOutput("fake-b", "ADD",
            R"({"cniVersion":"1.0.0","code":100,"msg":"no more IPs"})", 1);
  ExecCniRunner runner(Options());
  absl::Status s = runner.Add(Spec()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(s.message()), HasSubstr("no more IPs"));
  EXPECT_THAT(Calls(), ElementsAre("fake-a ADD", "fake-b ADD", "fake-c DEL",
                                   "fake-b DEL", "fake-a DEL"));
  EXPECT_FALSE(Stdin(3).contains("prevResult"));
  EXPECT_THAT(CacheFiles(), IsEmpty());
  EXPECT_TRUE(absl::IsNotFound(runner.GetCachedResult("0123abcd").status()));
}

TEST_F(CniRunnerTest, InvalidResultFailsAddAndRollsBack) {
  WriteChain({"fake-a"});
  SetOutput("fake-a", "ADD", "this is not json");
  ExecCniRunner runner(Options());
  EXPECT_EQ(runner.Add(Spec()).status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(Calls(), ElementsAre("fake-a ADD", "fake-a DEL"));
  EXPECT_THAT(CacheFiles(), IsEmpty());
}

TEST_F(CniRunnerTest,
       CachedResultSurvivesRestartAndDelUsesCachedConfigAfterConflistChanged) {
  WriteChain({"fake-a", "fake-b"});
  AttachSpec spec = Spec();
  spec.port_mappings = {{8080, 80, "tcp", ""}};
  absl::StatusOr<CniResult> added;
  {
    ExecCniRunner first(Options());
    added = first.Add(spec);
    ASSERT_TRUE(added.ok());
  }
  // "Restart": a new runner, and the operator replaced the network config.
  WritePlugin("fake-x");
  WriteConflist(
      R"({"cniVersion":"1.0.0","name":"othernet","plugins":[{"type":"fake-x"}]})");
  ExecCniRunner second(Options());
  absl::StatusOr<CniResult> cached = second.GetCachedResult("0123abcd");
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(*cached, *added);

  AttachSpec bare;  // what a recovering caller may know: id and netns only
  bare.container_id = spec.container_id;
  bare.netns = spec.netns;
  ASSERT_TRUE(second.Del(bare).ok());
  EXPECT_THAT(Calls(), ElementsAre("fake-a ADD", "fake-b ADD", "fake-b DEL",
                                   "fake-a DEL"));
  json del_b = Stdin(3);
  EXPECT_EQ(del_b["name"], "testnet");
  EXPECT_EQ(del_b["marker"], "fake-b-config");
  EXPECT_EQ(Env(3)["CNI_ARGS"],
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
            "K8S_POD_INFRA_CONTAINER_ID=0123abcd;K8S_POD_UID=uid-1");
  EXPECT_THAT(CacheFiles(), IsEmpty());
}

TEST_F(CniRunnerTest, DelOfNeverAddedContainerSucceeds) {
  WriteChain({"fake-a"});
  SetOutput("fake-a", "DEL",
            R"({"cniVersion":"1.0.0","code":3,"msg":"container unknown"})", 1);
  ExecCniRunner runner(Options());
  EXPECT_TRUE(runner.Del(Spec()).ok());
  EXPECT_TRUE(runner.Del(Spec()).ok());
  EXPECT_THAT(Calls(), ElementsAre("fake-a DEL", "fake-a DEL"));
}

TEST_F(CniRunnerTest, DelWithoutCacheOrConfigIsOk) {
  ExecCniRunner runner(Options());
  EXPECT_TRUE(runner.Del(Spec()).ok());
}

TEST_F(CniRunnerTest, DelWithoutCacheWhenTodaysConfigNamesAMissingPluginIsOk) {
  // ADD with this config fails before any plugin runs: nothing to tear down,
  // so the sandbox of the failed RunPodSandbox need not be kept.
  WriteChain({"fake-a"});
  WriteConflist(R"({"cniVersion":"1.0.0","name":"testnet","plugins":[{"type":"fake-a"},{"type":"no-such-plugin"}]})");
  ExecCniRunner runner(Options());
  EXPECT_FALSE(runner.Add(Spec()).ok());
  EXPECT_TRUE(runner.Del(Spec()).ok());
  EXPECT_THAT(Calls(), IsEmpty());
}

TEST_F(CniRunnerTest, FailedDelContinuesKeepsCacheAndCanBeRetried) {
  WriteChain({"fake-a", "fake-b"});
  ExecCniRunner runner(Options());
  ASSERT_TRUE(runner.Add(Spec()).ok());
  SetOutput("fake-b", "DEL",
            R"({"cniVersion":"1.0.0","code":5,"msg":"iptables locked"})", 1);
  absl::Status s = runner.Del(Spec());
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(s.message()), HasSubstr("iptables locked"));
  EXPECT_THAT(Calls(), ElementsAre("fake-a ADD", "fake-b ADD", "fake-b DEL",
                                   "fake-a DEL"));
  EXPECT_EQ(CacheFiles().size(), 1u);

  fs::remove(ctl() / "fake-b.DEL.out");
  fs::remove(ctl() / "fake-b.DEL.rc");
  EXPECT_TRUE(runner.Del(Spec()).ok());
  EXPECT_THAT(CacheFiles(), IsEmpty());
}

TEST_F(CniRunnerTest, CheckSendsCachedResultToEveryPluginInOrder) {
  WriteChain({"fake-a", "fake-b"});
  ExecCniRunner runner(Options());
  absl::StatusOr<CniResult> added = runner.Add(Spec());
  ASSERT_TRUE(added.ok());
  ASSERT_TRUE(runner.Check(Spec()).ok());
  EXPECT_THAT(Calls(), ElementsAre("fake-a ADD", "fake-b ADD", "fake-a CHECK",
                                   "fake-b CHECK"));
  EXPECT_EQ(Stdin(3)["prevResult"], json::parse(added->raw_json));
  EXPECT_EQ(Stdin(4)["prevResult"], json::parse(added->raw_json));

  SetOutput("fake-b", "CHECK",
            R"({"cniVersion":"1.0.0","code":100,"msg":"eth0 has no IP"})", 1);
  absl::Status s = runner.Check(Spec());
  EXPECT_THAT(std::string(s.message()), HasSubstr("eth0 has no IP"));
}

TEST_F(CniRunnerTest, CheckNeedsCacheAndVersion040) {
  WriteChain({"fake-a"});
  ExecCniRunner runner(Options());
  EXPECT_TRUE(absl::IsNotFound(runner.Check(Spec())));
  WriteChain({"fake-a"}, "0.3.1");
  ASSERT_TRUE(runner.Add(Spec()).ok());
  EXPECT_EQ(runner.Check(Spec()).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CniRunnerTest, LargeConfigIsFedThroughStdin) {
  WritePlugin("fake-a");
  json list = {
      {"cniVersion", "1.0.0"},
      {"name", "big"},
      {"plugins", json::array({{{"type", "fake-a"},
                                {"blob", std::string(300000, 'x')}}})}};
  WriteConflist(list.dump());
  ExecCniRunner runner(Options());
  ASSERT_TRUE(runner.Add(Spec()).ok());
  EXPECT_EQ(Stdin(1)["blob"].get<std::string>().size(), 300000u);
}

TEST_F(CniRunnerTest, SingleConfFileIsWrappedAsList) {
  WritePlugin("fake-a");
  WriteConflist(
      R"({"cniVersion":"0.4.0","name":"single","type":"fake-a","marker":"m"})",
      "10-single.conf");
  ExecCniRunner runner(Options());
  ASSERT_TRUE(runner.Add(Spec()).ok());
  EXPECT_EQ(Stdin(1)["marker"], "m");
  EXPECT_EQ(Stdin(1)["cniVersion"], "0.4.0");
}

TEST(CniCache, EntryRoundTripsAndRejectsUnknownKind) {
  CacheEntry e;
  e.network_name = "net";
  e.container_id = "abc";
  e.ifname = "eth0";
  e.netns = "/run/netns/x";
  e.config_source = "/etc/cni/net.d/10.conflist";
  e.config_json =
      R"({"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge"}]})";
  e.cni_args = {{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", "web"}};
  e.capability_args_json = R"({"portMappings":[]})";
  e.result_json = R"({"cniVersion":"1.0.0","ips":[]})";
  absl::StatusOr<CacheEntry> back = CacheEntry::FromJson(e.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, e);
  json doc = json::parse(e.ToJson());
  doc["kind"] = "cniCacheV9";
  EXPECT_EQ(CacheEntry::FromJson(doc.dump()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CacheEntry::FromJson("{").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CniResultParse, ConvertsEveryVersionToOneShape) {
  absl::StatusOr<CniResult> v1 = ParseCniResult(R"({"cniVersion":"1.0.0",
    "interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:ff"},{"name":"eth0","mac":"02:42:00:00:00:01","mtu":1450,"sandbox":"/run/netns/p"}],
    "ips":[{"address":"fd00::5/64","interface":1},{"address":"10.1.0.5/24","gateway":"10.1.0.1","interface":1},{"address":"10.9.9.9/24","interface":0}],
    "routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}],
    "dns":{"nameservers":["10.96.0.10"],"domain":"cluster.local","search":["svc.cluster.local"],"options":["ndots:5"]}})");
  ASSERT_TRUE(v1.ok()) << v1.status();
  ASSERT_EQ(v1->interfaces.size(), 2u);
  EXPECT_EQ(v1->interfaces[1].mtu, 1450);
  EXPECT_EQ(v1->interfaces[0].mtu, std::nullopt);
  EXPECT_THAT(
      PodIps(*v1),
      ElementsAre("10.1.0.5", "fd00::5"));  // host-side cni0 IP excluded
  ASSERT_EQ(v1->routes.size(), 1u);
  EXPECT_EQ(v1->routes[0].gw, "10.1.0.1");
  EXPECT_EQ(v1->dns.domain, "cluster.local");
  EXPECT_THAT(v1->dns.options, ElementsAre("ndots:5"));

  absl::StatusOr<CniResult> v04 = ParseCniResult(
      R"({"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.2.0.3/16","gateway":"10.2.0.1"}]})");
  ASSERT_TRUE(v04.ok());
  EXPECT_THAT(PodIps(*v04), ElementsAre("10.2.0.3"));

  absl::StatusOr<CniResult> v02 = ParseCniResult(
      R"({"cniVersion":"0.2.0","ip4":{"ip":"10.3.0.4/24","gateway":"10.3.0.1","routes":[{"dst":"0.0.0.0/0"}]}})");
  ASSERT_TRUE(v02.ok());
  EXPECT_THAT(PodIps(*v02), ElementsAre("10.3.0.4"));
  EXPECT_EQ(v02->routes.size(), 1u);

  EXPECT_EQ(ParseCniResult("[]").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      ParseCniResult(R"({"ips":[{"gateway":"1.2.3.4"}]})").status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(CniResultParse, MultusStyleResultNamesEverySandboxInterfaceInOrder) {
  // What a Multus-like meta-plugin prints: the delegates' interfaces one
  // after the other (host-side bridges and veths without "sandbox"), "ips"
  // re-indexed into the merged list.
  absl::StatusOr<CniResult> r = ParseCniResult(R"({"cniVersion":"1.0.0",
    "interfaces":[{"name":"kvcri-a0","mac":"aa:00:00:00:00:01"},
                  {"name":"veth1","mac":"aa:00:00:00:00:02"},
                  {"name":"eth0","mac":"0a:58:0a:00:00:02","sandbox":"/run/netns/p"},
                  {"name":"kvcri-b0","mac":"aa:00:00:00:00:03"},
                  {"name":"net1","mac":"0a:58:0a:01:00:05","mtu":1400,"sandbox":"/run/netns/p"},
                  {"name":"net2","mac":"0a:58:0a:02:00:07","sandbox":"/run/netns/p"},
                  {"name":"eth0","mac":"0a:58:0a:00:00:02","sandbox":"/run/netns/p"},
                  {"name":"lo9","sandbox":"/run/netns/other"}],
    "ips":[{"address":"10.0.0.2/24","gateway":"10.0.0.1","interface":2},
           {"address":"10.1.0.5/24","gateway":"10.1.0.1","interface":4}],
    "routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"}]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(SandboxInterfaces(*r, "/run/netns/p"), ElementsAre("eth0", "net1", "net2"));
  EXPECT_EQ(r->interfaces[4].mtu, 1400);
  EXPECT_EQ(r->ips[1].interface, 4);
  // The Pod IPs are eth0's; net1's address is not one.
  EXPECT_THAT(PodIps(*r), ElementsAre("10.0.0.2"));
  EXPECT_THAT(PodIps(*r, "net1"), ElementsAre("10.1.0.5"));

  // A result naming no sandbox interface is the default one.
  absl::StatusOr<CniResult> bare = ParseCniResult(R"({"cniVersion":"0.4.0","ips":[{"address":"10.2.0.3/16"}]})");
  ASSERT_TRUE(bare.ok());
  EXPECT_THAT(SandboxInterfaces(*bare, "/run/netns/p"), ElementsAre("eth0"));
}

TEST(CniVersion, ComparesAndKnowsSupportedVersions) {
  EXPECT_TRUE(CniVersionAtLeast("1.0.0", "0.4.0"));
  EXPECT_TRUE(CniVersionAtLeast("0.4.0", "0.4.0"));
  EXPECT_FALSE(CniVersionAtLeast("0.3.1", "0.4.0"));
  EXPECT_FALSE(CniVersionAtLeast("garbage", "0.4.0"));
  EXPECT_TRUE(IsSupportedCniVersion("0.3.0"));
  EXPECT_TRUE(IsSupportedCniVersion("1.0.0"));
  EXPECT_FALSE(IsSupportedCniVersion("0.2.0"));
  EXPECT_FALSE(IsSupportedCniVersion(""));
}

TEST(CniQuantity, ParsesLikeKubernetes) {
  EXPECT_EQ(*ParseQuantity("10M"), 10000000);
  EXPECT_EQ(*ParseQuantity("1.5Gi"), 1610612736);
  EXPECT_EQ(*ParseQuantity("100k"), 100000);
  EXPECT_EQ(*ParseQuantity("1Ki"), 1024);
  EXPECT_EQ(*ParseQuantity("1e6"), 1000000);
  EXPECT_EQ(*ParseQuantity("1E3"), 1000);
  EXPECT_EQ(*ParseQuantity("2500m"), 3);  // rounds up
  EXPECT_EQ(*ParseQuantity("123"), 123);
  EXPECT_EQ(*ParseQuantity(".5k"), 500);
  EXPECT_EQ(*ParseQuantity("1P"), 1000000000000000LL);
  for (const char* bad :
       {"", "M", "10X", "1.2.3", "10 M", "1Qi", "9999999999999999999999E"}) {
    EXPECT_FALSE(ParseQuantity(bad).ok()) << bad;
  }
}

TEST(CniBandwidth, FromAnnotationsLikeContainerd) {
  absl::StatusOr<CniBandwidth> bw =
      BandwidthFromAnnotations({{"kubernetes.io/ingress-bandwidth", "10M"},
                                {"kubernetes.io/egress-bandwidth", "1G"},
                                {"other", "x"}});
  ASSERT_TRUE(bw.ok()) << bw.status();
  EXPECT_EQ(bw->ingress_rate, 10000000u);
  EXPECT_EQ(bw->egress_rate, 1000000000u);
  EXPECT_EQ(bw->ingress_burst, 4294967295u);
  EXPECT_EQ(bw->egress_burst, 4294967295u);

  bw = BandwidthFromAnnotations({{"kubernetes.io/egress-bandwidth", "5M"}});
  ASSERT_TRUE(bw.ok());
  EXPECT_EQ(bw->ingress_rate, 0u);
  EXPECT_EQ(bw->ingress_burst, 0u);

  EXPECT_TRUE(BandwidthFromAnnotations({})->empty());
  absl::Status small =
      BandwidthFromAnnotations({{"kubernetes.io/ingress-bandwidth", "10"}})
          .status();
  EXPECT_EQ(small.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(small.message()),
              HasSubstr("kubernetes.io/ingress-bandwidth"));
  EXPECT_FALSE(
      BandwidthFromAnnotations({{"kubernetes.io/egress-bandwidth", "2P"}})
          .ok());
  EXPECT_FALSE(
      BandwidthFromAnnotations({{"kubernetes.io/egress-bandwidth", "fast"}})
          .ok());
}

TEST(CniArgs, ContainerdOrderWithIgnoreUnknownFirst) {
  AttachSpec s;
  s.container_id = "c1";
  s.pod_namespace = "ns";
  s.pod_name = "p";
  s.pod_uid = "u";
  using P = std::pair<std::string, std::string>;
  EXPECT_THAT(
      CniArgsFor(s),
      ElementsAre(P{"IgnoreUnknown", "1"}, P{"K8S_POD_NAMESPACE", "ns"},
                  P{"K8S_POD_NAME", "p"}, P{"K8S_POD_INFRA_CONTAINER_ID", "c1"},
                  P{"K8S_POD_UID", "u"}));
}

TEST(PluginExec, RunProcessCapturesOutputAndExitCode) {
  absl::StatusOr<ProcessOutput> out =
      RunProcess("/bin/sh", {"sh", "-c", "cat; echo err >&2; exit 3"}, {},
                 "hello", absl::Seconds(10));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->exit_code, 3);
  EXPECT_EQ(out->stdout_data, "hello");
  EXPECT_EQ(out->stderr_data, "err\n");
}

TEST(PluginExec, PluginThatIgnoresStdinDoesNotKillUsWithSigpipe) {
  std::string big(1 << 20, 'x');
  absl::StatusOr<ProcessOutput> out =
      RunProcess("/bin/sh", {"sh", "-c", "exit 0"}, {}, big, absl::Seconds(10));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->exit_code, 0);
}

}  // namespace
}  // namespace kvcri::cni
