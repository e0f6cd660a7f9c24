// SandboxDraftFromSpec and ParseResolvConf: containerd's sandbox spec as the orchestrator's draft (spec_drafts.h).
#include "shim/containerd/spec_drafts.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>

#include <nlohmann/json.hpp>

#include "config/base/str.h"
#include "config/base/unique_fd.h"
#include "shim/containerd/names.h"

namespace kvcri::shim::containerd {
namespace {

using nlohmann::json;

std::string StringAt(const json& obj, const std::string& key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// At most `limit` bytes of the file at `path`, without following a symlink
// at its last component; InvalidArgument past the limit.
absl::StatusOr<std::string> ReadBounded(const std::string& path, size_t limit, std::string_view what) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, base::StrCat(what, ": open \"", path, "\""));
  std::string out;
  char buf[8192];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, base::StrCat(what, ": read \"", path, "\""));
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > limit) {
      return absl::InvalidArgumentError(base::StrCat(what, " \"", path, "\" is over ", limit, " bytes"));
    }
  }
}

}  // namespace

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
  if (auto ns = linux.find("namespaces"); ns != linux.end() && ns->is_array()) {
    for (const json& n : *ns) {
      if (n.is_object() && StringAt(n, "type") == "network") r.netns_path = StringAt(n, "path");
    }
  }
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
      absl::StatusOr<std::string> text = ReadBounded(source, kMaxResolvConfBytes, "the Pod's resolv.conf");
      if (!text.ok()) return text.status();
      r.dns = ParseResolvConf(*text);
    }
  }
  return draft;
}

}  // namespace kvcri::shim::containerd
