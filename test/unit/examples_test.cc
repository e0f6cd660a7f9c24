// docs/examples/ cannot rot: every crictl JSON is a valid CRI message, every manifest a kubevirt VM Pod whose
// annotations the code knows and whose fields match its crictl JSON as kubelet would map them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cni/network_config.h"
#include "nlohmann/json.hpp"
#include "test/client/examples.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;
namespace ex = examples;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;

// Bytes of a Kubernetes memory quantity ("256Mi", "1Gi", "512M", "1000"); -1 if unparsable.
int64_t MemoryBytes(const std::string& q) {
  static const std::map<std::string, int64_t> kSuffix = {
      {"", 1},           {"Ki", 1ll << 10},  {"Mi", 1ll << 20},  {"Gi", 1ll << 30},  {"Ti", 1ll << 40},
      {"k", 1000},       {"M", 1000000},     {"G", 1000000000},  {"T", 1000000000000}};
  size_t end = q.find_first_not_of("0123456789");
  if (end == 0) return -1;
  auto it = kSuffix.find(q.substr(end == std::string::npos ? q.size() : end));
  if (it == kSuffix.end()) return -1;
  return std::stoll(q.substr(0, end)) * it->second;
}

// Millicores of a CPU quantity ("1", "500m", "2"); -1 if unparsable.
int64_t CpuMillis(const std::string& q) {
  if (q.empty() || q.find_first_not_of("0123456789m") != std::string::npos) return -1;
  if (q.back() == 'm') return std::stoll(q.substr(0, q.size() - 1));
  return std::stoll(q) * 1000;
}

std::string DemoScript() { return ex::ReadAll(fs::path(KVCRI_SOURCE_DIR) / "scripts" / "demo.sh"); }

TEST(Examples, ThereAreExamplesAndTheCodeKnowsTheUserDataAnnotation) {
  EXPECT_THAT(ex::Names(), IsSupersetOf({"vm-pod", "vm-volumes", "readiness-probe"}));
  // If the source scan found nothing, every annotation check below would fail for the wrong reason.
  EXPECT_THAT(ex::KnownAnnotations(), IsSupersetOf({"kubevirt-cri.io/user-data", "kubevirt-cri.io/kernel-cmdline",
                                                    "kubevirt-cri.io/firmware", "kubevirt-cri.io/tpm"}));
}

TEST(Examples, EveryCrictlJsonIsACriMessageWithOnlyKnownFieldsAnnotationsAndTheDemoImage) {
  const std::set<std::string> known = ex::KnownAnnotations();
  for (const std::string& name : ex::Names()) {
    SCOPED_TRACE(name);
    ex::pb::PodSandboxConfig pod;
    ex::pb::ContainerConfig ctr;
    std::string error;
    ASSERT_TRUE(ex::ParseJson(ex::Dir() / name / "pod.json", &pod, &error)) << error;
    ASSERT_TRUE(ex::ParseJson(ex::Dir() / name / "container.json", &ctr, &error)) << error;
    EXPECT_FALSE(pod.metadata().name().empty());
    EXPECT_FALSE(pod.metadata().uid().empty());
    EXPECT_FALSE(pod.log_directory().empty()) << "crictl logs needs log_directory";
    EXPECT_FALSE(ctr.log_path().empty()) << "crictl logs needs log_path";
    for (const auto& [key, value] : pod.annotations()) {
      if (key.rfind("kubevirt-cri.io/", 0) == 0) {
        EXPECT_TRUE(known.count(key)) << "unknown annotation " << key;
      }
    }
    for (const auto& [key, value] : ctr.annotations()) {
      EXPECT_NE(key.rfind("kubevirt-cri.io/", 0), 0u) << key << " is read from the Pod, not the container";
    }
    // An image scripts/demo.sh imports, so each example runs right after it.
    EXPECT_THAT(ctr.image().image(), ::testing::AnyOf(ex::kDemoImage, ex::kDemoUefiImage));
  }
  EXPECT_THAT(DemoScript(), HasSubstr(ex::kDemoImage));
  EXPECT_THAT(DemoScript(), HasSubstr(ex::kDemoUefiImage));
}

TEST(Examples, EveryManifestIsAKubevirtVmPodMatchingItsCrictlJson) {
  const std::set<std::string> known = ex::KnownAnnotations();
  for (const std::string& name : ex::Names()) {
    SCOPED_TRACE(name);
    std::vector<YAML::Node> docs;
    ASSERT_NO_THROW(docs = ex::Manifests(name));
    YAML::Node pod = ex::PodOf(docs);
    ASSERT_TRUE(pod) << "pod.yaml has no object of kind Pod";
    ex::pb::PodSandboxConfig pod_json;
    ex::pb::ContainerConfig ctr_json;
    std::string error;
    ASSERT_TRUE(ex::ParseJson(ex::Dir() / name / "pod.json", &pod_json, &error)) << error;
    ASSERT_TRUE(ex::ParseJson(ex::Dir() / name / "container.json", &ctr_json, &error)) << error;

    EXPECT_EQ(pod["apiVersion"].as<std::string>(), "v1");
    const YAML::Node spec = pod["spec"];
    ASSERT_TRUE(spec["runtimeClassName"]) << "no runtimeClassName: the Pod would run as a container";
    EXPECT_EQ(spec["runtimeClassName"].as<std::string>(), "kubevirt");
    EXPECT_FALSE(spec["hostNetwork"] && spec["hostNetwork"].as<bool>()) << "VM Pods cannot use the host network";
    EXPECT_FALSE(spec["initContainers"]) << "a VM Pod runs exactly one container";
    ASSERT_TRUE(spec["containers"] && spec["containers"].size() == 1) << "a VM Pod runs exactly one container";

    // kubelet: Pod name -> metadata.name and hostname; Pod annotations -> sandbox annotations.
    EXPECT_EQ(pod["metadata"]["name"].as<std::string>(), pod_json.metadata().name());
    EXPECT_EQ(pod_json.hostname(), pod_json.metadata().name());
    std::map<std::string, std::string> yaml_annotations;
    for (const auto& kv : pod["metadata"]["annotations"]) {
      yaml_annotations[kv.first.as<std::string>()] = kv.second.as<std::string>();
    }
    for (const auto& [key, value] : yaml_annotations) {
      if (key.rfind("kubevirt-cri.io/", 0) != 0) continue;
      EXPECT_TRUE(known.count(key)) << "annotation " << key << " is not read by any code";
      ASSERT_TRUE(pod_json.annotations().count(key)) << key << " missing from pod.json";
      EXPECT_EQ(pod_json.annotations().at(key), value) << key << " differs between pod.yaml and pod.json";
    }
    for (const auto& [key, value] : pod_json.annotations()) {
      EXPECT_TRUE(yaml_annotations.count(key)) << key << " in pod.json but not in pod.yaml";
    }

    const YAML::Node c = spec["containers"][0];
    EXPECT_EQ(c["name"].as<std::string>(), ctr_json.metadata().name());
    EXPECT_EQ(c["image"].as<std::string>(), ctr_json.image().image());
    // kubelet: limits.memory -> memory_limit_in_bytes; limits.cpu -> quota over a 100 ms period (CFS).
    const YAML::Node limits = c["resources"]["limits"];
    ASSERT_TRUE(limits && limits["memory"]) << "a VM needs a memory limit (its RAM)";
    EXPECT_EQ(MemoryBytes(limits["memory"].as<std::string>()), ctr_json.linux().resources().memory_limit_in_bytes());
    if (limits["cpu"]) {
      const int64_t millis = CpuMillis(limits["cpu"].as<std::string>());
      ASSERT_GT(millis, 0);
      EXPECT_EQ(ctr_json.linux().resources().cpu_period(), 100000);
      EXPECT_EQ(ctr_json.linux().resources().cpu_quota(), millis * 100);
      EXPECT_EQ(ctr_json.linux().resources().cpu_shares(), millis * 1024 / 1000);
    }
    // kubelet: containerPort -> sandbox port_mappings (container_port, no host port).
    std::set<int> yaml_ports, json_ports;
    for (const YAML::Node& p : c["ports"]) yaml_ports.insert(p["containerPort"].as<int>());
    for (const auto& pm : pod_json.port_mappings()) json_ports.insert(pm.container_port());
    EXPECT_EQ(yaml_ports, json_ports);
    // Probes run by kubelet over the network work; exec needs ExecSync, which is UNIMPLEMENTED.
    for (const char* probe : {"readinessProbe", "livenessProbe", "startupProbe"}) {
      if (c[probe]) {
        EXPECT_FALSE(c[probe]["exec"]) << probe << ".exec: ExecSync is not implemented";
      }
    }

    // volumeDevices -> CRI devices (a Block PVC); volumeMounts -> CRI mounts.
    std::map<std::string, std::string> claim_of_volume;
    for (const YAML::Node& v : spec["volumes"]) {
      if (v["persistentVolumeClaim"]) {
        claim_of_volume[v["name"].as<std::string>()] = v["persistentVolumeClaim"]["claimName"].as<std::string>();
      }
    }
    std::map<std::string, std::string> mode_of_claim;
    for (const YAML::Node& d : docs) {
      if (d["kind"].as<std::string>() != "PersistentVolumeClaim") continue;
      mode_of_claim[d["metadata"]["name"].as<std::string>()] =
          d["spec"]["volumeMode"] ? d["spec"]["volumeMode"].as<std::string>() : "Filesystem";
    }
    std::set<std::string> yaml_devices, json_devices, yaml_mounts, json_mounts;
    for (const YAML::Node& vd : c["volumeDevices"]) {
      yaml_devices.insert(vd["devicePath"].as<std::string>());
      const std::string claim = claim_of_volume[vd["name"].as<std::string>()];
      if (mode_of_claim.count(claim)) {
        EXPECT_EQ(mode_of_claim[claim], "Block") << claim;
      }
    }
    for (const YAML::Node& vm : c["volumeMounts"]) yaml_mounts.insert(vm["mountPath"].as<std::string>());
    for (const auto& d : ctr_json.devices()) json_devices.insert(d.container_path());
    for (const auto& m : ctr_json.mounts()) json_mounts.insert(m.container_path());
    EXPECT_EQ(yaml_devices, json_devices);
    EXPECT_EQ(yaml_mounts, json_mounts);
  }
}

TEST(Examples, EveryManifestOpensWithACommentSayingWhatItShowsAndNeeds) {
  for (const std::string& name : ex::Names()) {
    const std::string text = ex::ReadAll(ex::Dir() / name / "pod.yaml");
    EXPECT_EQ(text.rfind("# ", 0), 0u) << name << "/pod.yaml does not open with a comment";
    const std::string head = text.substr(0, text.find("\napiVersion:"));
    EXPECT_THAT(head, HasSubstr("# Shows:")) << name;
    EXPECT_THAT(head, HasSubstr("# Needs:")) << name;
  }
}

TEST(Examples, TheIndexAndTheQuickstartNameEveryExample) {
  const std::string index = ex::ReadAll(ex::Dir() / "README.md");
  for (const std::string& name : ex::Names()) EXPECT_THAT(index, HasSubstr("(" + name + "/)")) << name;
  const std::string readme = ex::ReadAll(fs::path(KVCRI_SOURCE_DIR) / "README.md");
  EXPECT_THAT(readme, HasSubstr("cd docs/examples/vm-pod\n"));
  EXPECT_THAT(readme, HasSubstr("runp --runtime kubevirt pod.json"));
  EXPECT_THAT(readme, HasSubstr("container.json pod.json"));
  EXPECT_THAT(readme, HasSubstr("scripts/demo.sh"));
}

TEST(Examples, TheSampleCniConflistIsAValidNetworkConfigThatDemoShInstalls) {
  const fs::path conflist = ex::Dir() / "cni" / "10-kubevirt-cri-demo.conflist";
  absl::StatusOr<cni::NetworkConfigList> parsed = cni::ParseNetworkConfig(ex::ReadAll(conflist), conflist);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->name, "kubevirt-cri-demo");
  EXPECT_THAT(DemoScript(), HasSubstr("docs/examples/cni/10-kubevirt-cri-demo.conflist"));
}

// extra-networks has no crictl files (one node has no Multus): its manifest
// is checked on its own. The attachment's config must be a CNI config the
// daemon would accept, and the Pod must ask for that attachment.
TEST(Examples, TheExtraNetworksManifestAttachesAValidCniNetworkToAVmPod) {
  const fs::path file = ex::Dir() / "extra-networks" / "pod.yaml";
  const std::string text = ex::ReadAll(file);
  EXPECT_EQ(text.rfind("# ", 0), 0u) << "pod.yaml does not open with a comment";
  std::vector<YAML::Node> docs;
  ASSERT_NO_THROW(docs = YAML::LoadAllFromFile(file.string()));
  YAML::Node pod = ex::PodOf(docs);
  ASSERT_TRUE(pod) << "pod.yaml has no object of kind Pod";
  EXPECT_EQ(pod["spec"]["runtimeClassName"].as<std::string>(), "kubevirt");
  ASSERT_TRUE(pod["spec"]["containers"] && pod["spec"]["containers"].size() == 1);
  EXPECT_TRUE(pod["spec"]["containers"][0]["resources"]["limits"]["memory"]);
  YAML::Node nad;
  for (const YAML::Node& d : docs) {
    if (d["kind"] && d["kind"].as<std::string>() == "NetworkAttachmentDefinition") nad = d;
  }
  ASSERT_TRUE(nad) << "pod.yaml has no NetworkAttachmentDefinition";
  const std::string name = nad["metadata"]["name"].as<std::string>();
  // A config with "plugins" is a list to Multus, as a .conflist file is to us.
  absl::StatusOr<cni::NetworkConfigList> parsed =
      cni::ParseNetworkConfig(nad["spec"]["config"].as<std::string>(), file.string() + ":spec.config.conflist");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->name, name);
  const std::string networks = pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"].as<std::string>();
  EXPECT_THAT(networks, HasSubstr("\"name\": \"" + name + "\""));
  EXPECT_THAT(networks, HasSubstr("\"interface\": \"net1\""));
  EXPECT_THAT(ex::ReadAll(ex::Dir() / "README.md"), HasSubstr("(extra-networks/)"));
}

// dual-stack has no crictl files either: its conflist must be one the daemon
// accepts with an IPv4 and an IPv6 range (dual_stack_test boots a VM on it),
// and its manifest a VM Pod behind a dual-stack Service.
TEST(Examples, TheDualStackExampleIsAValidDualStackConflistAndAVmPodBehindADualStackService) {
  const fs::path conflist = ex::Dir() / "dual-stack" / "10-kubevirt-cri-dual-stack.conflist";
  const std::string text = ex::ReadAll(conflist);
  absl::StatusOr<cni::NetworkConfigList> parsed = cni::ParseNetworkConfig(text, conflist);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  nlohmann::json conf = nlohmann::json::parse(text);
  const nlohmann::json& ranges = conf["plugins"][0]["ipam"]["ranges"];
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0][0]["subnet"].get<std::string>().find(':'), std::string::npos);
  EXPECT_NE(ranges[1][0]["subnet"].get<std::string>().find(':'), std::string::npos);

  const fs::path file = ex::Dir() / "dual-stack" / "pod.yaml";
  EXPECT_EQ(ex::ReadAll(file).rfind("# ", 0), 0u) << "pod.yaml does not open with a comment";
  std::vector<YAML::Node> docs;
  ASSERT_NO_THROW(docs = YAML::LoadAllFromFile(file.string()));
  YAML::Node pod = ex::PodOf(docs);
  ASSERT_TRUE(pod) << "pod.yaml has no object of kind Pod";
  EXPECT_EQ(pod["spec"]["runtimeClassName"].as<std::string>(), "kubevirt");
  YAML::Node svc;
  for (const YAML::Node& d : docs) {
    if (d["kind"] && d["kind"].as<std::string>() == "Service") svc = d;
  }
  ASSERT_TRUE(svc) << "pod.yaml has no Service";
  EXPECT_EQ(svc["spec"]["ipFamilyPolicy"].as<std::string>(), "RequireDualStack");
  EXPECT_EQ(svc["spec"]["selector"]["app"].as<std::string>(), pod["metadata"]["labels"]["app"].as<std::string>());
  EXPECT_THAT(ex::ReadAll(ex::Dir() / "README.md"), HasSubstr("(dual-stack/)"));
}

}  // namespace
}  // namespace kvcri::testing
