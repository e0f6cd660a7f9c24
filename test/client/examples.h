// docs/examples/ as tests read it: crictl JSON as CRI messages, manifests as YAML, the checks they imply.
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include "cri/proto/api.pb.h"

namespace kvcri::testing {

namespace examples {

namespace pb = ::runtime::v1;

// The image every crictl example boots: the test guest's containerDisk, as
// scripts/demo.sh imports it.
inline constexpr char kDemoImage[] = "localhost/kubevirt-cri/demo-disk:latest";
// The UEFI examples' image: the test guest's UEFI containerDisk (signed shim
// and GRUB), which scripts/demo.sh imports too.
inline constexpr char kDemoUefiImage[] = "localhost/kubevirt-cri/demo-disk-uefi:latest";

inline std::filesystem::path Dir() { return std::filesystem::path(KVCRI_SOURCE_DIR) / "docs" / "examples"; }

inline std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Example directories (those holding a pod.json), sorted by name.
inline std::vector<std::string> Names() {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(Dir())) {
    if (e.is_directory() && std::filesystem::exists(e.path() / "pod.json")) names.push_back(e.path().filename());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// crictl reads these files into the CRI's Go structs, whose JSON names are
// the proto field names (log_directory); protobuf's JSON parser accepts those
// too. Unknown fields are errors: a typo must not be silently dropped.
template <typename Msg>
bool ParseJson(const std::filesystem::path& path, Msg* out, std::string* error) {
  std::string text = ReadAll(path);
  if (text.empty()) {
    *error = "\"" + path.string() + "\" is missing or empty";
    return false;
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(text, out, options);
  if (!status.ok()) {
    *error = "\"" + path.string() + "\": " + status.ToString();
    return false;
  }
  return true;
}

// Every "kubevirt-cri.io/..." string literal in the daemon's sources: the
// annotations the code reads. The node label kubevirt-cri.io/enabled lives in
// config/runtimeclass.yaml, not in code, and is no annotation.
inline std::set<std::string> KnownAnnotations() {
  static const std::regex kLiteral("\"(kubevirt-cri\\.io/[A-Za-z0-9._-]+)\"");
  std::set<std::string> known;
  for (const char* dir : {"cri", "cni", "runtime", "sandbox", "shim", "config"}) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(std::filesystem::path(KVCRI_SOURCE_DIR) / dir)) {
      const std::string ext = e.path().extension();
      if (ext != ".cc" && ext != ".h") continue;
      const std::string text = ReadAll(e.path());
      for (std::sregex_iterator it(text.begin(), text.end(), kLiteral), end; it != end; ++it) known.insert((*it)[1]);
    }
  }
  return known;
}

// The Kubernetes objects of `name`/pod.yaml; the Pod is the one of kind Pod.
inline std::vector<YAML::Node> Manifests(const std::string& name) {
  return YAML::LoadAllFromFile((Dir() / name / "pod.yaml").string());
}

inline YAML::Node PodOf(const std::vector<YAML::Node>& docs) {
  for (const YAML::Node& d : docs) {
    if (d["kind"] && d["kind"].as<std::string>() == "Pod") return d;
  }
  return YAML::Node();
}

// An HTTP request the example says the guest answers: each containerPort
// ("/"), and each httpGet probe (its path and port).
struct HttpCheck {
  int port;
  std::string path;
  bool operator<(const HttpCheck& o) const { return std::tie(port, path) < std::tie(o.port, o.path); }
};

inline std::set<HttpCheck> HttpChecks(const std::string& name) {
  std::set<HttpCheck> checks;
  YAML::Node pod = PodOf(Manifests(name));
  if (!pod) return checks;
  for (const YAML::Node& c : pod["spec"]["containers"]) {
    for (const YAML::Node& p : c["ports"]) checks.insert({p["containerPort"].as<int>(), "/"});
    for (const char* probe : {"readinessProbe", "livenessProbe", "startupProbe"}) {
      if (!c[probe] || !c[probe]["httpGet"]) continue;
      const YAML::Node& g = c[probe]["httpGet"];
      checks.insert({g["port"].as<int>(), g["path"] ? g["path"].as<std::string>() : "/"});
    }
  }
  return checks;
}

}  // namespace examples
}  // namespace kvcri::testing
