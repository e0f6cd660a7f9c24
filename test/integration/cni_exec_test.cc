// ExecCniRunner with the real bridge, host-local and portmap plugins.
//
// Everything happens inside two throw-away network namespaces: a "host"
// namespace where the runner's thread (and so every plugin) runs, holding the
// bridge and iptables rules, and a "pod" namespace that gets eth0. Nothing
// touches the machine's own namespace; deleting the two namespaces removes
// every device and rule the test made.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include "cni/exec_cni_runner.h"
#include "cni/netlink.h"
#include "cni/plugin_exec.h"
#include "cni/tap.h"
#include "config/base/file_util.h"
#include "config/base/netns_exec.h"

namespace kvcri::cni {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kRealBinDir[] = "/usr/lib/cni";

struct CmdResult {
  int rc = -1;
  std::string out;
};

CmdResult Sh(const std::string& cmd) {
  CmdResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Files in host-local's data dir that are IP allocations (not its lock or
// last_reserved_ip.* bookkeeping).
std::vector<std::string> Allocations(const fs::path& data_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(data_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (it->is_regular_file() && name != "lock" &&
        name.rfind("last_reserved_ip", 0) != 0) {
      out.push_back(name);
    }
  }
  return out;
}

class CniExecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u)
        << "cni_exec_test needs root: it creates network namespaces, a bridge "
           "and "
           "iptables rules (inside those namespaces only)";
    for (const char* p : {"bridge", "host-local", "portmap"}) {
      ASSERT_TRUE(fs::exists(fs::path(kRealBinDir) / p))
          << "CNI plugin " << p << " missing in " << kRealBinDir
          << " (install containernetworking-plugins)";
    }
    ASSERT_EQ(Sh("command -v ip").rc, 0) << "iproute2's `ip` is needed";
    std::random_device rd;
    octet_ = static_cast<int>(rd() % 250) + 1;
    absl::StatusOr<std::string> hex = base::RandomHex(3);
    ASSERT_TRUE(hex.ok());
    suffix_ = *hex;
    host_ns_ = "kvcri-cnit-h-" + suffix_;
    pod_ns_ = "kvcri-cnit-p-" + suffix_;
    bridge_ = "kvbr" + suffix_;
    char tmpl[] = "/tmp/kvcri-cni-it-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* d : {"conf", "cache", "ipam", "fakebin"})
      fs::create_directories(dir_ / d);
    CmdResult h = Sh("ip netns add " + host_ns_);
    ASSERT_EQ(h.rc, 0) << h.out;
    made_host_ = true;
    CmdResult p = Sh("ip netns add " + pod_ns_);
    ASSERT_EQ(p.rc, 0) << p.out;
    made_pod_ = true;
    ASSERT_EQ(Sh("ip -n " + host_ns_ + " link set lo up").rc, 0);
    WriteConflist(Conflist());
  }

  void TearDown() override {
    // Deleting the namespaces removes the bridge, veths and iptables rules.
    if (made_pod_) Sh("ip netns del " + pod_ns_);
    if (made_host_) Sh("ip netns del " + host_ns_);
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::string Subnet() const {
    return "10.251." + std::to_string(octet_) + ".0/24";
  }
  std::string SubnetPrefix() const {
    return "10.251." + std::to_string(octet_) + ".";
  }
  fs::path netns_path(const std::string& name) const {
    return fs::path("/run/netns") / name;
  }

  std::string Conflist(const std::string& extra_plugin = "") const {
    std::string s = R"({"cniVersion":"1.0.0","name":"kvcri-it","plugins":[
      {"type":"bridge","bridge":"BRIDGE","isGateway":true,"ipMasq":false,
       "ipam":{"type":"host-local","subnet":"SUBNET","dataDir":"DATADIR",
               "routes":[{"dst":"0.0.0.0/0"}]}},
      {"type":"portmap","capabilities":{"portMappings":true},"snat":true}EXTRA]})";
    auto sub = [&](const std::string& from, const std::string& to) {
      s.replace(s.find(from), from.size(), to);
    };
    sub("BRIDGE", bridge_);
    sub("SUBNET", Subnet());
    sub("DATADIR", (dir_ / "ipam").string());
    sub("EXTRA", extra_plugin);
    return s;
  }
  void WriteConflist(const std::string& text,
                     const std::string& file = "10-kvcri-it.conflist") {
    for (const auto& e : fs::directory_iterator(dir_ / "conf"))
      fs::remove(e.path());
    std::ofstream(dir_ / "conf" / file) << text;
  }

  ExecCniRunnerOptions Options() const {
    ExecCniRunnerOptions o;
    o.conf_dir = dir_ / "conf";
    o.bin_dirs = {kRealBinDir, dir_ / "fakebin"};
    o.cache_dir = dir_ / "cache";
    o.plugin_timeout = absl::Seconds(30);
    return o;
  }

  AttachSpec Spec() const {
    AttachSpec s;
    s.container_id = "it" + suffix_;
    s.netns = netns_path(pod_ns_).string();
    s.pod_namespace = "default";
    s.pod_name = "cni-it";
    s.pod_uid = "uid-" + suffix_;
    s.port_mappings = {{18080, 80, "tcp", ""}};
    return s;
  }

  // Runs `fn` on a thread inside the test's host namespace, so the plugins
  // it spawns run there too.
  absl::Status InHostNs(const std::function<absl::Status()>& fn) {
    return base::RunInNetns(netns_path(host_ns_), fn);
  }
  absl::StatusOr<CniResult> AddInHostNs(ExecCniRunner& runner,
                                        const AttachSpec& spec) {
    absl::StatusOr<CniResult> out = absl::UnknownError("not run");
    absl::Status s = InHostNs([&] {
      out = runner.Add(spec);
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return out;
  }

  int octet_ = 0;
  std::string suffix_, host_ns_, pod_ns_, bridge_;
  fs::path dir_;
  bool made_host_ = false, made_pod_ = false;
};

TEST_F(CniExecTest, AddGivesPodAnIpAndDelReleasesIt) {
  ExecCniRunner runner(Options());
  absl::StatusOr<CniResult> r = AddInHostNs(runner, Spec());
  ASSERT_TRUE(r.ok()) << r.status();

  std::vector<std::string> ips = PodIps(*r);
  ASSERT_EQ(ips.size(), 1u) << r->raw_json;
  const std::string ip = ips[0];
  EXPECT_EQ(ip.rfind(SubnetPrefix(), 0), 0u) << ip << " not in " << Subnet();
  CmdResult addr = Sh("ip -n " + pod_ns_ + " -o -4 addr show dev eth0");
  EXPECT_EQ(addr.rc, 0) << addr.out;
  EXPECT_THAT(addr.out, HasSubstr(ip + "/24"));
  EXPECT_TRUE(fs::exists(dir_ / "ipam" / "kvcri-it" / ip))
      << "host-local allocation file missing";
  CmdResult br = Sh("ip -n " + host_ns_ + " link show " + bridge_);
  EXPECT_EQ(br.rc, 0) << br.out;
  // The bridge lives in the test's host namespace, not the machine's.
  EXPECT_NE(Sh("ip link show " + bridge_).rc, 0);
  CmdResult nat = Sh("ip netns exec " + host_ns_ + " iptables -t nat -S");
  EXPECT_THAT(nat.out, HasSubstr("18080")) << "portmap got no portMappings";

  // After a "restart" the cached result still has the IP.
  ExecCniRunner restarted(Options());
  absl::StatusOr<CniResult> cached =
      restarted.GetCachedResult(Spec().container_id);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(PodIps(*cached), ips);

  ASSERT_TRUE(InHostNs([&] { return restarted.Del(Spec()); }).ok());
  EXPECT_FALSE(fs::exists(dir_ / "ipam" / "kvcri-it" / ip));
  EXPECT_TRUE(Allocations(dir_ / "ipam").empty());
  EXPECT_NE(Sh("ip -n " + pod_ns_ + " link show eth0").rc, 0)
      << "eth0 still exists after DEL";
  EXPECT_THAT(Sh("ip netns exec " + host_ns_ + " iptables -t nat -S").out,
              ::testing::Not(HasSubstr("18080")));
  EXPECT_TRUE(absl::IsNotFound(
      restarted.GetCachedResult(Spec().container_id).status()));

  // DEL is idempotent.
  EXPECT_TRUE(InHostNs([&] { return restarted.Del(Spec()); }).ok());
}

// Without portmap: its CHECK wrongly demands ip6tables rules for an IPv4-only
// Pod (containernetworking/plugins#819), which is the plugin's bug, not ours.
TEST_F(CniExecTest, CheckPassesWhenHealthyAndFailsWhenEth0IsGone) {
  std::string conf = Conflist();
  conf = conf.substr(0, conf.find(R"(,
      {"type":"portmap")")) +
         "]}";
  WriteConflist(conf);
  ExecCniRunner runner(Options());
  absl::StatusOr<CniResult> r = AddInHostNs(runner, Spec());
  ASSERT_TRUE(r.ok()) << r.status();
  absl::Status check = InHostNs([&] { return runner.Check(Spec()); });
  EXPECT_TRUE(check.ok()) << check;

  ASSERT_EQ(Sh("ip -n " + pod_ns_ + " link del eth0").rc, 0);
  check = InHostNs([&] { return runner.Check(Spec()); });
  EXPECT_FALSE(check.ok());
  EXPECT_THAT(std::string(check.message()), HasSubstr("\"bridge\""));
  EXPECT_TRUE(InHostNs([&] { return runner.Del(Spec()); }).ok());
  EXPECT_TRUE(Allocations(dir_ / "ipam").empty());
}

// bridge's ipMasq rules are found at DEL through the addresses on eth0,
// which the tap wiring gave the guest: Unwire hands them back first.
TEST_F(CniExecTest, IpMasqRulesGoWithDelAfterTheTapWasWiredAndUnwired) {
  std::string conf = Conflist();
  const std::string off = "\"ipMasq\":false";
  ASSERT_NE(conf.find(off), std::string::npos);
  conf.replace(conf.find(off), off.size(), "\"ipMasq\":true");
  WriteConflist(conf);
  ExecCniRunner runner(Options());
  absl::StatusOr<CniResult> r = AddInHostNs(runner, Spec());
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string ip = PodIps(*r).at(0);
  const std::string nat = "ip netns exec " + host_ns_ + " iptables -t nat -S POSTROUTING";
  EXPECT_THAT(Sh(nat).out, HasSubstr(ip + "/32")) << "ipMasq made no rule";
  const std::filesystem::path netns = Spec().netns;
  ASSERT_TRUE(WireTap(netns, "eth0", "tap0").ok());
  EXPECT_THAT(Sh("ip -n " + pod_ns_ + " -o -4 addr show dev eth0").out, ::testing::Not(HasSubstr(ip)));
  ASSERT_TRUE(Unwire(netns, "eth0", "tap0").ok());
  EXPECT_THAT(Sh("ip -n " + pod_ns_ + " -o -4 addr show dev eth0").out, HasSubstr(ip + "/24"));
  ASSERT_TRUE(InHostNs([&] { return runner.Del(Spec()); }).ok());
  EXPECT_THAT(Sh(nat).out, ::testing::Not(HasSubstr(ip + "/32"))) << "ipMasq rule left after DEL";
}

TEST_F(CniExecTest, DelAfterConflistChangedUsesCachedConfig) {
  ExecCniRunner runner(Options());
  absl::StatusOr<CniResult> r = AddInHostNs(runner, Spec());
  ASSERT_TRUE(r.ok()) << r.status();
  std::string ip = PodIps(*r).at(0);
  // The operator switched to a different network; DEL must still free the IP.
  WriteConflist(
      R"({"cniVersion":"1.0.0","name":"other","plugins":[{"type":"loopback"}]})");
  ExecCniRunner restarted(Options());
  ASSERT_TRUE(InHostNs([&] { return restarted.Del(Spec()); }).ok());
  EXPECT_FALSE(fs::exists(dir_ / "ipam" / "kvcri-it" / ip));
}

TEST_F(CniExecTest, FailingPluginAfterRealChainLeavesNoAllocation) {
  fs::path fake = dir_ / "fakebin" / "kvcri-fail";
  std::ofstream(fake)
      << "#!/bin/sh\ncat >/dev/null\n"
         "if [ \"$CNI_COMMAND\" = ADD ]; then\n"
         "  echo '{\"cniVersion\":\"1.0.0\",\"code\":100,\"msg\":\"injected "
         "failure\"}'\n"
         "  exit 1\n"
         "fi\n"
         "exit 0\n";
  fs::permissions(fake, fs::perms::owner_all);
  WriteConflist(Conflist(R"(,{"type":"kvcri-fail"})"));
  ExecCniRunner runner(Options());
  absl::StatusOr<CniResult> r = AddInHostNs(runner, Spec());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("injected failure"));
  EXPECT_TRUE(Allocations(dir_ / "ipam").empty())
      << "host-local kept an IP after the rolled-back ADD";
  EXPECT_NE(Sh("ip -n " + pod_ns_ + " link show eth0").rc, 0)
      << "eth0 left behind";
  EXPECT_TRUE(
      absl::IsNotFound(runner.GetCachedResult(Spec().container_id).status()));
}

TEST_F(CniExecTest, BrokenConflistAndMissingPluginGiveClearErrors) {
  ExecCniRunner runner(Options());
  WriteConflist(
      R"({"cniVersion":"1.0.0","name":"kvcri-it","plugins":[{"type":"bridge",)",
      "10-broken.conflist");
  absl::StatusOr<CniResult> r = AddInHostNs(runner, Spec());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("10-broken.conflist"));

  WriteConflist(Conflist(R"(,{"type":"kvcri-no-such-plugin"})"));
  r = AddInHostNs(runner, Spec());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("kvcri-no-such-plugin"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(kRealBinDir));
  EXPECT_TRUE(Allocations(dir_ / "ipam").empty());
}

TEST_F(CniExecTest, BringUpLoopbackSetsLoUp) {
  ASSERT_TRUE(BringUpLoopback(netns_path(pod_ns_)).ok());
  CmdResult lo = Sh("ip -n " + pod_ns_ + " -o link show lo");
  EXPECT_THAT(lo.out, HasSubstr(",UP")) << lo.out;
  EXPECT_TRUE(BringUpLoopback(netns_path(pod_ns_)).ok());  // idempotent
  EXPECT_FALSE(BringUpLoopback("/run/netns/kvcri-no-such-ns").ok());
}

}  // namespace
}  // namespace kvcri::cni
