// SandboxDraftFromSpec and ParseResolvConf: containerd's sandbox spec as the orchestrator's draft (spec_drafts.h).
#include "shim/containerd/spec_drafts.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "config/base/file_util.h"
#include "config/base/str.h"
#include "shim/containerd/names.h"

namespace kvcri::shim::containerd {
namespace {

using nlohmann::json;

std::string StringAt(const json& obj, const std::string& key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// linux.namespaces[type=network].path; "" when there is none.
std::string NetnsPathOf(const json& linux) {
  std::string path;
  if (auto ns = linux.find("namespaces"); ns != linux.end() && ns->is_array()) {
    for (const json& n : *ns) {
      if (n.is_object() && StringAt(n, "type") == "network") path = StringAt(n, "path");
    }
  }
  return path;
}

// An OCI LinuxResources object's CPU and memory (the parts a VM takes;
// ValidateLinuxResources judges the values) as CRI's message.
void FillLinuxResources(const json& resources, ::runtime::v1::LinuxContainerResources* r) {
  auto number = [](const json& obj, const char* a, const char* b) -> int64_t {
    auto o = obj.find(a);
    if (o == obj.end() || !o->is_object()) return 0;
    auto v = o->find(b);
    return v != o->end() && v->is_number_integer() ? v->get<int64_t>() : 0;
  };
  r->set_cpu_quota(number(resources, "cpu", "quota"));
  r->set_cpu_period(number(resources, "cpu", "period"));
  r->set_cpu_shares(number(resources, "cpu", "shares"));
  r->set_memory_limit_in_bytes(number(resources, "memory", "limit"));
  r->set_memory_swap_limit_in_bytes(number(resources, "memory", "swap"));
  if (auto cpu = resources.find("cpu"); cpu != resources.end() && cpu->is_object()) {
    r->set_cpuset_cpus(StringAt(*cpu, "cpus"));
    r->set_cpuset_mems(StringAt(*cpu, "mems"));
  }
  if (auto pages = resources.find("hugepageLimits"); pages != resources.end() && pages->is_array()) {
    for (const json& h : *pages) {
      if (!h.is_object()) continue;
      ::runtime::v1::HugepageLimit* out = r->add_hugepage_limits();
      out->set_page_size(StringAt(h, "pageSize"));
      auto limit = h.find("limit");
      out->set_limit(limit != h.end() && limit->is_number_integer() ? limit->get<uint64_t>() : 0);
    }
  }
  if (auto unified = resources.find("unified"); unified != resources.end() && unified->is_object()) {
    for (const auto& [key, value] : unified->items()) {
      if (value.is_string()) (*r->mutable_unified())[key] = value.get<std::string>();
    }
  }
}

}  // namespace

absl::StatusOr<::runtime::v1::LinuxContainerResources> LinuxResourcesFromOciJson(std::string_view text) {
  json resources = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!resources.is_object()) {
    return absl::InvalidArgumentError("UpdateTaskRequest.resources is not an OCI LinuxResources JSON object");
  }
  ::runtime::v1::LinuxContainerResources r;
  FillLinuxResources(resources, &r);
  return r;
}

absl::StatusOr<SpecFacts> ReadSpecFacts(std::string_view config_json) {
  json spec = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (!spec.is_object()) return absl::InvalidArgumentError("config.json is not a JSON object");
  SpecFacts facts;
  if (auto a = spec.find("annotations"); a != spec.end() && a->is_object()) {
    facts.container_type = StringAt(*a, std::string(kAnnotationContainerType));
    facts.sandbox_id = StringAt(*a, std::string(kAnnotationSandboxId));
  }
  if (auto linux = spec.find("linux"); linux != spec.end() && linux->is_object()) facts.netns = NetnsPathOf(*linux);
  return facts;
}

sandbox::DnsConfig ParseResolvConf(std::string_view text) {
  sandbox::DnsConfig dns;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key, word;
    if (!(words >> key) || key[0] == '#' || key[0] == ';') continue;
    if (key == "nameserver") {
      if (words >> word) dns.servers.push_back(word);
    } else if (key == "search") {
      dns.searches.clear();  // the last search line wins, as in the resolver
      while (words >> word) dns.searches.push_back(word);
    } else if (key == "options") {
      while (words >> word) dns.options.push_back(word);
    }
  }
  return dns;
}

absl::StatusOr<cri::SandboxDraft> SandboxDraftFromSpec(std::string_view config_json, std::string_view runtime_handler) {
  json spec = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (!spec.is_object()) return absl::InvalidArgumentError("the sandbox task's config.json is not a JSON object");
  const json empty = json::object();
  const json& annotations = spec.contains("annotations") && spec["annotations"].is_object() ? spec["annotations"] : empty;
  cri::SandboxDraft draft;
  draft.runtime_handler = std::string(runtime_handler);
  sandbox::SandboxRecord& r = draft.record;
  const std::pair<std::string_view, std::string*> required[] = {
      {kAnnotationSandboxName, &r.metadata.name},
      {kAnnotationSandboxNamespace, &r.metadata.namespace_},
      {kAnnotationSandboxUid, &r.metadata.uid},
  };
  for (const auto& [key, field] : required) {
    *field = StringAt(annotations, std::string(key));
    if (field->empty()) {
      return absl::InvalidArgumentError(
          base::StrCat("the sandbox task's OCI spec has no annotation ", key, ": not a sandbox of containerd's CRI"));
    }
  }
  r.log_directory = StringAt(annotations, std::string(kAnnotationSandboxLogDirectory));
  // The Pod's own annotations (containerd passes those its pod_annotations
  // patterns allow); containerd's bookkeeping ones stay out.
  for (const auto& [key, value] : annotations.items()) {
    if (value.is_string() && !key.starts_with("io.kubernetes.cri.")) r.annotations[key] = value.get<std::string>();
  }
  r.hostname = StringAt(spec, "hostname");
  const json& linux = spec.contains("linux") && spec["linux"].is_object() ? spec["linux"] : empty;
  r.netns_path = NetnsPathOf(linux);
  if (r.netns_path.empty()) {
    return absl::FailedPreconditionError(
        "the sandbox task's OCI spec names no network namespace (linux.namespaces): a kubevirt VM Pod cannot use "
        "host networking");
  }
  // cgroupfs: "<parent>/<id>"; systemd: "<slice>:<prefix>:<name>".
  const std::string cgroups = StringAt(linux, "cgroupsPath");
  if (cgroups.find(':') != std::string::npos) {
    r.cgroup_parent = cgroups.substr(0, cgroups.find(':'));
  } else if (size_t slash = cgroups.rfind('/'); slash != std::string::npos && slash > 0) {
    r.cgroup_parent = cgroups.substr(0, slash);
  }
  if (auto mounts = spec.find("mounts"); mounts != spec.end() && mounts->is_array()) {
    for (const json& m : *mounts) {
      if (!m.is_object() || StringAt(m, "destination") != "/etc/resolv.conf") continue;
      const std::string source = StringAt(m, "source");
      if (source.empty()) continue;
      absl::StatusOr<std::string> text = base::ReadFileAtMost(source, kMaxResolvConfBytes, /*follow_symlinks=*/false);
      if (!text.ok()) {
        return absl::Status(absl::IsOutOfRange(text.status()) ? absl::StatusCode::kInvalidArgument
                                                              : text.status().code(),
                            base::StrCat("the Pod's resolv.conf: ", text.status().message()));
      }
      r.dns = ParseResolvConf(*text);
    }
  }
  return draft;
}

absl::StatusOr<std::string> FindDeviceNode(char type, int64_t major, int64_t minor) {
  if (type != 'b' && type != 'c') {
    return absl::InvalidArgumentError(base::StrCat("device type \"", std::string(1, type), "\" is not b or c"));
  }
  const dev_t want = makedev(static_cast<unsigned>(major), static_cast<unsigned>(minor));
  auto matches = [&](const std::filesystem::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && (type == 'b' ? S_ISBLK(st.st_mode) : S_ISCHR(st.st_mode)) &&
           st.st_rdev == want;
  };
  const std::filesystem::path link =
      base::StrCat("/dev/", type == 'b' ? "block" : "char", "/", major, ":", minor);
  std::error_code ec;
  if (matches(link)) {
    std::filesystem::path target = std::filesystem::canonical(link, ec);
    return ec ? link.string() : target.string();
  }
  for (std::filesystem::recursive_directory_iterator it("/dev", std::filesystem::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    if (it->is_symlink(ec)) continue;
    if (matches(it->path())) return it->path().string();
  }
  return absl::NotFoundError(base::StrCat("no device node ", std::string(1, type), " ", major, ":", minor, " under /dev"));
}

absl::StatusOr<::runtime::v1::ContainerConfig> ContainerConfigFromSpec(std::string_view config_json,
                                                                       const DeviceNodeFinder& find_node) {
  namespace pb = ::runtime::v1;
  json spec = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (!spec.is_object()) return absl::InvalidArgumentError("the container task's config.json is not a JSON object");
  const json empty = json::object();
  const json& annotations = spec.contains("annotations") && spec["annotations"].is_object() ? spec["annotations"] : empty;
  pb::ContainerConfig c;
  c.mutable_metadata()->set_name(StringAt(annotations, std::string(kAnnotationContainerName)));
  if (c.metadata().name().empty()) {
    return absl::InvalidArgumentError(base::StrCat("the container task's OCI spec has no annotation ",
                                                   kAnnotationContainerName, ": not a container of containerd's CRI"));
  }
  c.mutable_image()->set_image(StringAt(annotations, std::string(kAnnotationImageName)));
  for (const auto& [key, value] : annotations.items()) {
    if (value.is_string() && !key.starts_with("io.kubernetes.cri.")) (*c.mutable_annotations())[key] = value.get<std::string>();
  }
  const json& linux = spec.contains("linux") && spec["linux"].is_object() ? spec["linux"] : empty;
  const json& resources = linux.contains("resources") && linux["resources"].is_object() ? linux["resources"] : empty;
  FillLinuxResources(resources, c.mutable_linux()->mutable_resources());
  if (auto mounts = spec.find("mounts"); mounts != spec.end() && mounts->is_array()) {
    for (const json& m : *mounts) {
      if (!m.is_object() || StringAt(m, "type") != "bind") continue;  // proc, tmpfs, sysfs...: the runtime's own
      const std::string source = StringAt(m, "source");
      if (source.find("/io.containerd.grpc.v1.cri/sandboxes/") != std::string::npos) continue;  // containerd's files
      pb::Mount* out = c.add_mounts();
      out->set_container_path(StringAt(m, "destination"));
      out->set_host_path(source);
      if (auto opts = m.find("options"); opts != m.end() && opts->is_array()) {
        for (const json& o : *opts) {
          if (!o.is_string()) continue;
          const std::string opt = o.get<std::string>();
          if (opt == "ro") out->set_readonly(true);
          if (opt == "rshared" || opt == "shared") out->set_propagation(pb::PROPAGATION_BIDIRECTIONAL);
          if (opt == "rslave" || opt == "slave") out->set_propagation(pb::PROPAGATION_HOST_TO_CONTAINER);
        }
      }
    }
  }
  if (auto devices = linux.find("devices"); devices != linux.end() && devices->is_array()) {
    for (const json& d : *devices) {
      if (!d.is_object()) continue;
      const std::string type = StringAt(d, "type");
      const int64_t major = d.value("major", int64_t{-1}), minor = d.value("minor", int64_t{-1});
      const std::string path = StringAt(d, "path");
      if (type.size() != 1 || major < 0 || minor < 0) {
        return absl::InvalidArgumentError(base::StrCat("linux.devices entry \"", path, "\" has no type, major or minor"));
      }
      absl::StatusOr<std::string> host = find_node(type[0], major, minor);
      if (!host.ok()) {
        return absl::Status(host.status().code(),
                            base::StrCat("linux.devices entry \"", path, "\": ", host.status().message()));
      }
      // The allow rule containerd wrote for it (the last match wins, as in the cgroup).
      std::string access;
      if (auto rules = resources.find("devices"); rules != resources.end() && rules->is_array()) {
        for (const json& rule : *rules) {
          if (!rule.is_object() || !rule.value("allow", false) || StringAt(rule, "type") != type) continue;
          if (rule.value("major", int64_t{-1}) == major && rule.value("minor", int64_t{-1}) == minor) {
            access = StringAt(rule, "access");
          }
        }
      }
      pb::Device* out = c.add_devices();
      out->set_container_path(path);
      out->set_host_path(*host);
      out->set_permissions(access.empty() ? "rwm" : access);
    }
  }
  return c;
}

}  // namespace kvcri::shim::containerd
