// ExecCniRunner: validates the spec, runs the plugin chain of the default network, caches results.
#include "cni/exec_cni_runner.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>

#include "cni/network_config.h"
#include "cni/plugin_exec.h"
#include "config/base/log.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"

extern char** environ;

namespace kvcri::cni {
namespace fs = std::filesystem;
using base::StrCat;
using nlohmann::json;

struct ExecCniRunner::Invocation {
  std::string command;
  // The network config list.
  std::string network;
  std::string cni_version;
  std::string source;
  json plugins;  // array of plugin config objects
  std::vector<fs::path> binaries;
  // The attachment.
  std::string container_id;
  std::string netns;
  std::string ifname;
  std::vector<std::pair<std::string, std::string>> cni_args;
  json capability_args;  // object
  // ADD: chained per plugin; DEL/CHECK: the cached ADD result for every plugin.
  std::optional<json> prev_result;
};

namespace {

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

absl::Status ValidateSpec(const AttachSpec& spec, bool need_netns) {
  // The spec's rules for CNI_CONTAINERID and CNI_IFNAME; they also keep
  // cache file names safe.
  if (spec.container_id.empty() ||
      !std::isalnum(static_cast<unsigned char>(spec.container_id[0]))) {
    return absl::InvalidArgumentError(
        StrCat("CNI container id \"", spec.container_id,
               "\" must start with a letter or digit"));
  }
  for (char c : spec.container_id) {
    if (!IsNameChar(c)) {
      return absl::InvalidArgumentError(
          StrCat("CNI container id \"", spec.container_id,
                 "\" has a character other than [A-Za-z0-9_.-]"));
    }
  }
  if (spec.ifname.empty() || spec.ifname.size() > 15 || spec.ifname == "." ||
      spec.ifname == "..") {
    return absl::InvalidArgumentError(StrCat(
        "CNI ifname \"", spec.ifname, "\" is not a valid interface name"));
  }
  for (char c : spec.ifname) {
    if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(StrCat(
          "CNI ifname \"", spec.ifname, "\" is not a valid interface name"));
    }
  }
  if (need_netns && spec.netns.empty())
    return absl::InvalidArgumentError("CNI netns path is empty");
  return absl::OkStatus();
}

json CapabilityArgs(const AttachSpec& spec) {
  json caps = json::object();
  json ports = json::array();
  for (const CniPortMapping& p : spec.port_mappings) {
    // containerd drops mappings without a host port.
    if (p.host_port <= 0) continue;
    json m = {{"hostPort", p.host_port},
              {"containerPort", p.container_port},
              {"protocol", p.protocol}};
    if (!p.host_ip.empty()) m["hostIP"] = p.host_ip;
    ports.push_back(std::move(m));
  }
  caps["portMappings"] = std::move(ports);
  if (!spec.bandwidth.empty()) {
    caps["bandwidth"] = {{"ingressRate", spec.bandwidth.ingress_rate},
                         {"ingressBurst", spec.bandwidth.ingress_burst},
                         {"egressRate", spec.bandwidth.egress_rate},
                         {"egressBurst", spec.bandwidth.egress_burst}};
  }
  if (!spec.dns.empty()) {
    caps["dns"] = {{"servers", spec.dns.servers},
                   {"searches", spec.dns.searches},
                   {"options", spec.dns.options}};
  }
  return caps;
}

// CNI_ARGS is "K1=V1;K2=V2" with no escaping (CNI spec): a ';' or '=' in a
// value would add a key of the caller's choosing (IP= for host-local), and a
// NUL would cut the environment string. Such values are refused, never
// passed on; cri/ validation refuses them already, this is the last line.
absl::StatusOr<std::string> JoinCniArgs(const std::vector<std::pair<std::string, std::string>>& args) {
  std::string out;
  for (const auto& [k, v] : args) {
    for (std::string_view part : {std::string_view(k), std::string_view(v)}) {
      for (unsigned char c : part) {
        if (c == ';' || c == '=' || c < 0x20 || c == 0x7f) {
          return absl::InvalidArgumentError(StrCat(
              "CNI_ARGS ", k, " \"", v, "\" contains ';', '=' or a control character, which CNI_ARGS cannot carry"));
        }
      }
    }
    if (!out.empty()) out += ';';
    out += StrCat(k, "=", v);
  }
  return out;
}

std::string JoinPaths(const std::vector<fs::path>& dirs) {
  std::string out;
  for (const fs::path& d : dirs) {
    if (!out.empty()) out += ':';
    out += d.string();
  }
  return out;
}

// No config at all is a node not ready for Pods, not a missing object.
absl::StatusOr<NetworkConfigList> DefaultNetwork(const fs::path& conf_dir) {
  absl::StatusOr<NetworkConfigList> list = FindDefaultNetwork(conf_dir);
  if (absl::IsNotFound(list.status()))
    return absl::FailedPreconditionError(list.status().message());
  return list;
}

absl::Status BadConfig(std::string_view source, std::string_view why) {
  return absl::InvalidArgumentError(
      StrCat("CNI config \"", source, "\": ", why));
}

}  // namespace

ExecCniRunnerOptions ExecCniRunnerOptions::FromConfig(
    const config::Config& config) {
  ExecCniRunnerOptions o;
  o.conf_dir = config.cni.conf_dir;
  o.bin_dirs = config.cni.bin_dirs;
  o.cache_dir = config.CniCacheDir();
  return o;
}

ExecCniRunner::ExecCniRunner(ExecCniRunnerOptions options)
    : options_(std::move(options)), cache_(options_.cache_dir) {}

namespace {

// Fills the network part of `inv` from a conflist document and resolves
// every plugin binary, so a missing plugin fails before anything ran.
absl::Status LoadNetwork(std::string_view config_json, std::string_view source,
                         const std::vector<fs::path>& bin_dirs,
                         std::string* network, std::string* version,
                         json* plugins, std::vector<fs::path>* binaries) {
  json doc = json::parse(config_json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return BadConfig(source, "not a JSON object");
  if (!doc.contains("name") || !doc["name"].is_string())
    return BadConfig(source, "missing \"name\"");
  *network = doc["name"].get<std::string>();
  *version = doc.contains("cniVersion") && doc["cniVersion"].is_string()
                 ? doc["cniVersion"].get<std::string>()
                 : std::string();
  if (!IsSupportedCniVersion(*version)) {
    return BadConfig(source,
                     StrCat("unsupported cniVersion \"", *version, "\""));
  }
  if (!doc.contains("plugins") || !doc["plugins"].is_array() ||
      doc["plugins"].empty()) {
    return BadConfig(source, "\"plugins\" is not a non-empty array");
  }
  *plugins = doc["plugins"];
  binaries->clear();
  for (const json& p : *plugins) {
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string()) {
      return BadConfig(source, "a plugin has no \"type\"");
    }
    ASSIGN_OR_RETURN(fs::path bin,
                     FindPlugin(p["type"].get<std::string>(), bin_dirs));
    binaries->push_back(std::move(bin));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ExecCniRunner::RunPlugin(const Invocation& inv,
                                                     size_t index) const {
  const json& plugin = inv.plugins[index];
  // stdin: the plugin's config plus the list's name and version, the
  // capability arguments it declared, and prevResult.
  json conf = plugin;
  conf["name"] = inv.network;
  conf["cniVersion"] = inv.cni_version;
  json runtime_config = json::object();
  if (auto caps = plugin.find("capabilities");
      caps != plugin.end() && caps->is_object()) {
    for (const auto& [cap, enabled] : caps->items()) {
      if (enabled.is_boolean() && enabled.get<bool>() &&
          inv.capability_args.contains(cap)) {
        runtime_config[cap] = inv.capability_args[cap];
      }
    }
  }
  if (!runtime_config.empty()) {
    conf["runtimeConfig"] = std::move(runtime_config);
  } else {
    conf.erase("runtimeConfig");
  }
  if (inv.prev_result) {
    conf["prevResult"] = *inv.prev_result;
  } else {
    conf.erase("prevResult");
  }

  PluginCall call;
  call.plugin = plugin["type"].get<std::string>();
  call.binary = inv.binaries[index];
  call.command = inv.command;
  call.stdin_data = conf.dump();
  call.timeout = options_.plugin_timeout;
  // The daemon's environment (PATH for iptables & co.) with our CNI_* set.
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, "CNI_", 4) != 0) call.env.emplace_back(*e);
  }
  call.env.push_back(StrCat("CNI_COMMAND=", inv.command));
  call.env.push_back(StrCat("CNI_CONTAINERID=", inv.container_id));
  call.env.push_back(StrCat("CNI_NETNS=", inv.netns));
  call.env.push_back(StrCat("CNI_IFNAME=", inv.ifname));
  absl::StatusOr<std::string> cni_args = JoinCniArgs(inv.cni_args);
  if (!cni_args.ok()) return cni_args.status();
  call.env.push_back(StrCat("CNI_ARGS=", *cni_args));
  call.env.push_back(StrCat("CNI_PATH=", JoinPaths(options_.bin_dirs)));
  return ExecPlugin(call);
}

absl::Status ExecCniRunner::DelChain(const Invocation& inv) const {
  absl::Status first;
  for (size_t i = inv.plugins.size(); i-- > 0;) {
    absl::StatusOr<std::string> out = RunPlugin(inv, i);
    if (out.ok()) continue;
    if (CniErrorCode(out.status()) == kCniErrUnknownContainer) {
      // The spec: "the runtime does not need to perform any container network
      // cleanup".
      base::LogInfo("CNI DEL: plugin knows no such container",
                    {{"id", inv.container_id},
                     {"plugin", inv.plugins[i]["type"].get<std::string>()}});
      continue;
    }
    base::LogWarn("CNI DEL failed",
                  {{"id", inv.container_id},
                   {"network", inv.network},
                   {"error", std::string(out.status().message())}});
    if (first.ok()) first = out.status();
  }
  return first;
}

absl::StatusOr<ExecCniRunner::Invocation> ExecCniRunner::NewInvocation(
    std::string_view command, const NetworkConfigList& list,
    const AttachSpec& spec) const {
  Invocation inv;
  inv.command = std::string(command);
  inv.source = list.source.string();
  RETURN_IF_ERROR(LoadNetwork(list.json, inv.source, options_.bin_dirs,
                              &inv.network, &inv.cni_version, &inv.plugins,
                              &inv.binaries));
  inv.container_id = spec.container_id;
  inv.netns = spec.netns;
  inv.ifname = spec.ifname;
  inv.cni_args = CniArgsFor(spec);
  inv.capability_args = CapabilityArgs(spec);
  return inv;
}

absl::StatusOr<CniResult> ExecCniRunner::Add(const AttachSpec& spec) {
  RETURN_IF_ERROR(ValidateSpec(spec, /*need_netns=*/true));
  ASSIGN_OR_RETURN(NetworkConfigList list, DefaultNetwork(options_.conf_dir));
  ASSIGN_OR_RETURN(Invocation inv, NewInvocation("ADD", list, spec));

  base::Rollback undo;
  // Registered before the first ADD: a plugin that fails half-way may
  // already hold an IP. The whole chain is DEL'd, as libcni/containerd do.
  undo.Add("CNI DEL after a failed ADD", [this, inv] {
    Invocation del = inv;
    del.command = "DEL";
    del.prev_result.reset();
    return DelChain(del);
  });
  for (size_t i = 0; i < inv.plugins.size(); ++i) {
    ASSIGN_OR_RETURN(std::string out, RunPlugin(inv, i));
    json result = json::parse(out, nullptr, false);
    if (result.is_discarded() || !result.is_object()) {
      return absl::InternalError(StrCat(
          "CNI plugin \"", inv.plugins[i]["type"].get<std::string>(),
          "\" ADD printed no valid result: \"", out.substr(0, 256), "\""));
    }
    inv.prev_result = std::move(result);
  }
  ASSIGN_OR_RETURN(CniResult result,
                   ParseCniResult(inv.prev_result->dump(), "ADD result"));

  CacheEntry entry;
  entry.network_name = inv.network;
  entry.container_id = inv.container_id;
  entry.ifname = inv.ifname;
  entry.netns = inv.netns;
  entry.config_source = inv.source;
  entry.config_json = list.json;
  entry.cni_args = inv.cni_args;
  entry.capability_args_json = inv.capability_args.dump();
  entry.result_json = result.raw_json;
  RETURN_IF_ERROR(cache_.Put(entry));
  undo.Dismiss();

  std::string ips;
  for (const CniIpConfig& ip : result.ips)
    ips += (ips.empty() ? "" : ",") + ip.address;
  base::LogInfo(
      "CNI ADD done",
      {{"id", spec.container_id}, {"network", inv.network}, {"ips", ips}});
  return result;
}

absl::Status ExecCniRunner::Check(const AttachSpec& spec) {
  RETURN_IF_ERROR(ValidateSpec(spec, /*need_netns=*/true));
  ASSIGN_OR_RETURN(NetworkConfigList list, DefaultNetwork(options_.conf_dir));
  ASSIGN_OR_RETURN(Invocation inv, NewInvocation("CHECK", list, spec));
  if (!CniVersionAtLeast(inv.cni_version, "0.4.0")) {
    return absl::FailedPreconditionError(
        StrCat("CNI network \"", inv.network, "\" has cniVersion \"",
               inv.cni_version, "\", which has no CHECK"));
  }
  json doc = json::parse(list.json, nullptr, false);
  if (auto d = doc.find("disableCheck");
      d != doc.end() && d->is_boolean() && d->get<bool>()) {
    return absl::OkStatus();
  }
  absl::StatusOr<CacheEntry> cached =
      cache_.Get(inv.network, spec.container_id, spec.ifname);
  if (absl::IsNotFound(cached.status())) {
    return absl::NotFoundError(StrCat(
        "no cached CNI result for network \"", inv.network, "\" container \"",
        spec.container_id, "\" ifname \"", spec.ifname, "\""));
  }
  if (!cached.ok()) return cached.status();
  inv.prev_result = json::parse(cached->result_json, nullptr, false);
  for (size_t i = 0; i < inv.plugins.size(); ++i) {
    RETURN_IF_ERROR(RunPlugin(inv, i).status());
  }
  return absl::OkStatus();
}

absl::Status ExecCniRunner::Del(const AttachSpec& spec) {
  RETURN_IF_ERROR(ValidateSpec(spec, /*need_netns=*/false));
  ASSIGN_OR_RETURN(std::vector<CacheEntry> cached,
                   cache_.FindByContainer(spec.container_id, spec.ifname));
  absl::Status first;
  for (const CacheEntry& entry : cached) {
    // The config the ADD used, not today's: DEL must undo what ADD did.
    Invocation inv;
    inv.command = "DEL";
    inv.source = StrCat("cache of ", entry.config_source);
    absl::Status loaded = LoadNetwork(
        entry.config_json, inv.source, options_.bin_dirs, &inv.network,
        &inv.cni_version, &inv.plugins, &inv.binaries);
    if (!loaded.ok()) {
      if (first.ok()) first = loaded;
      continue;
    }
    inv.container_id = entry.container_id;
    inv.netns = spec.netns;
    inv.ifname = entry.ifname;
    inv.cni_args = entry.cni_args;
    inv.capability_args = json::parse(entry.capability_args_json, nullptr, false);
    if (CniVersionAtLeast(inv.cni_version, "0.4.0"))
      inv.prev_result = json::parse(entry.result_json, nullptr, false);
    absl::Status del = DelChain(inv);
    if (del.ok())
      del = cache_.Remove(entry.network_name, entry.container_id, entry.ifname);
    if (del.ok()) {
      base::LogInfo("CNI DEL done",
                    {{"id", spec.container_id}, {"network", inv.network}});
    } else if (first.ok()) {
      first = del;
    }
  }
  if (!cached.empty()) return first;

  // Nothing cached: the ADD never finished (or never happened). DEL with
  // today's config in case a crash interrupted an ADD that allocated.
  absl::StatusOr<NetworkConfigList> list =
      FindDefaultNetwork(options_.conf_dir);
  if (!list.ok()) {
    base::LogWarn(
        "CNI DEL without cached result or usable config; nothing to tear down",
        {{"id", spec.container_id},
         {"error", std::string(list.status().message())}});
    return absl::OkStatus();
  }
  absl::StatusOr<Invocation> inv = NewInvocation("DEL", *list, spec);
  if (!inv.ok()) {
    // Today's config cannot run (a plugin binary is missing, the list is
    // invalid): an ADD with it failed before any plugin ran, since every
    // binary is resolved first, so there is nothing it could have allocated.
    base::LogWarn("CNI DEL without cached result; today's config cannot run, nothing to tear down",
                  {{"id", spec.container_id}, {"error", std::string(inv.status().message())}});
    return absl::OkStatus();
  }
  return DelChain(*inv);
}

absl::StatusOr<CniResult> ExecCniRunner::GetCachedResult(
    std::string_view container_id, std::string_view ifname) {
  ASSIGN_OR_RETURN(std::vector<CacheEntry> cached,
                   cache_.FindByContainer(container_id, ifname));
  if (cached.empty()) {
    return absl::NotFoundError(StrCat("no cached CNI result for container \"",
                                      container_id, "\" ifname \"", ifname,
                                      "\""));
  }
  return ParseCniResult(cached.front().result_json, "cached result");
}

}  // namespace kvcri::cni
