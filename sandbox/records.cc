// Sandbox and container records to and from versioned JSON; IDs and CRI names.
#include "sandbox/records.h"

#include <limits>
#include <optional>
#include <utility>

#include "config/base/file_util.h"
#include "config/base/str.h"
#include "nlohmann/json.hpp"

namespace kvcri::sandbox {
namespace {

using json = nlohmann::json;

constexpr std::pair<std::string_view, Phase> kPhases[] = {
    {"creating", Phase::kCreating}, {"ready", Phase::kReady}, {"removing", Phase::kRemoving}};
constexpr std::pair<std::string_view, SandboxState> kSandboxStates[] = {
    {"ready", SandboxState::kReady}, {"notready", SandboxState::kNotReady}};
constexpr std::pair<std::string_view, ContainerState> kContainerStates[] = {
    {"created", ContainerState::kCreated},
    {"running", ContainerState::kRunning},
    {"exited", ContainerState::kExited},
    {"unknown", ContainerState::kUnknown}};
constexpr std::pair<std::string_view, Protocol> kProtocols[] = {
    {"tcp", Protocol::kTcp}, {"udp", Protocol::kUdp}, {"sctp", Protocol::kSctp}};
constexpr std::pair<std::string_view, BootKind> kBootKinds[] = {
    {"", BootKind::kUnset}, {"kernel", BootKind::kKernel}, {"disk", BootKind::kDisk}, {"device", BootKind::kDevice},
    {"microvm", BootKind::kMicroVm}};

template <typename E, size_t N>
std::string_view NameOf(const std::pair<std::string_view, E> (&table)[N], E value) {
  for (const auto& [name, v] : table) {
    if (v == value) return name;
  }
  return "invalid";
}

// Typed, non-throwing access to one JSON object. The first error is kept in
// *status and names the field by its dotted path; later calls are no-ops.
class ObjectReader {
 public:
  ObjectReader(const json& obj, std::string prefix, absl::Status* status)
      : obj_(obj), prefix_(std::move(prefix)), status_(status) {}

  bool ok() const { return status_->ok(); }

  // The member `key`, or nullptr when absent (an error when `required`).
  const json* Get(std::string_view key, bool required) {
    if (!ok()) return nullptr;
    auto it = obj_.find(std::string(key));
    if (it == obj_.end()) {
      if (required) Fail(key, "is missing");
      return nullptr;
    }
    return &*it;
  }

  void Str(std::string_view key, std::string* out, bool required = false) {
    const json* v = Get(key, required);
    if (v == nullptr) return;
    if (!v->is_string()) return Fail(key, "is not a string");
    *out = v->get_ref<const std::string&>();
  }

  void Bool(std::string_view key, bool* out) {
    const json* v = Get(key, false);
    if (v == nullptr) return;
    if (!v->is_boolean()) return Fail(key, "is not a boolean");
    *out = v->get<bool>();
  }

  template <typename T>
  void Int(std::string_view key, T* out, bool required = false) {
    const json* v = Get(key, required);
    if (v == nullptr) return;
    if (v->is_number_unsigned()) {
      uint64_t u = v->get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
        return Fail(key, "is out of range");
      }
      *out = static_cast<T>(u);
    } else if (v->is_number_integer()) {
      int64_t i = v->get<int64_t>();
      if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          (i > 0 && static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max()))) {
        return Fail(key, "is out of range");
      }
      *out = static_cast<T>(i);
    } else {
      Fail(key, "is not an integer");
    }
  }

  template <typename E, size_t N>
  void Enum(std::string_view key, const std::pair<std::string_view, E> (&table)[N], E* out,
            bool required = false) {
    const json* v = Get(key, required);
    if (v == nullptr) return;
    if (!v->is_string()) return Fail(key, "is not a string");
    const std::string& s = v->get_ref<const std::string&>();
    for (const auto& [name, value] : table) {
      if (name == s) {
        *out = value;
        return;
      }
    }
    Fail(key, base::StrCat("has unknown value \"", s, "\""));
  }

  void StrList(std::string_view key, std::vector<std::string>* out) {
    const json* v = Get(key, false);
    if (v == nullptr) return;
    if (!v->is_array()) return Fail(key, "is not an array");
    out->clear();
    for (const json& e : *v) {
      if (!e.is_string()) return Fail(key, "has a non-string element");
      out->push_back(e.get<std::string>());
    }
  }

  void StrMap(std::string_view key, std::map<std::string, std::string>* out) {
    const json* v = Get(key, false);
    if (v == nullptr) return;
    if (!v->is_object()) return Fail(key, "is not an object");
    out->clear();
    for (auto it = v->begin(); it != v->end(); ++it) {
      if (!it->is_string()) return Fail(key, base::StrCat("has a non-string value at \"", it.key(), "\""));
      out->emplace(it.key(), it->get<std::string>());
    }
  }

  // A nested object reader, or nullopt when absent or not an object.
  std::optional<ObjectReader> Object(std::string_view key, bool required = false) {
    const json* v = Get(key, required);
    if (v == nullptr) return std::nullopt;
    if (!v->is_object()) {
      Fail(key, "is not an object");
      return std::nullopt;
    }
    return ObjectReader(*v, Path(key), status_);
  }

  // Calls fn(ObjectReader) for each element of an array of objects.
  template <typename Fn>
  void Objects(std::string_view key, Fn fn) {
    const json* v = Get(key, false);
    if (v == nullptr) return;
    if (!v->is_array()) return Fail(key, "is not an array");
    size_t i = 0;
    for (const json& e : *v) {
      std::string path = base::StrCat(Path(key), "[", i++, "]");
      if (!e.is_object()) {
        *status_ = absl::InvalidArgumentError(base::StrCat("field \"", path, "\" is not an object"));
        return;
      }
      ObjectReader r(e, path, status_);
      fn(r);
      if (!ok()) return;
    }
  }

 private:
  std::string Path(std::string_view key) const {
    return prefix_.empty() ? std::string(key) : base::StrCat(prefix_, ".", key);
  }
  void Fail(std::string_view key, std::string_view what) {
    if (ok()) {
      *status_ = absl::InvalidArgumentError(base::StrCat("field \"", Path(key), "\" ", what));
    }
  }

  const json& obj_;
  std::string prefix_;
  absl::Status* status_;
};

// Parses `text` and checks "version"; the caller reads the fields.
absl::StatusOr<json> ParseVersioned(std::string_view text, std::string_view what) {
  json doc = json::parse(text.begin(), text.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return absl::InvalidArgumentError(base::StrCat(what, " is not valid JSON"));
  }
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(base::StrCat(what, " is not a JSON object"));
  }
  auto it = doc.find("version");
  if (it == doc.end() || !it->is_number_integer()) {
    return absl::InvalidArgumentError(base::StrCat(what, " has no integer \"version\""));
  }
  if (int64_t v = it->get<int64_t>(); v != kRecordVersion) {
    return absl::InvalidArgumentError(base::StrCat(what, " has unsupported version ", v,
                                                   " (this build reads version ", kRecordVersion, ")"));
  }
  return doc;
}

absl::Status Annotate(absl::Status s, std::string_view what) {
  if (s.ok()) return s;
  return absl::InvalidArgumentError(base::StrCat(what, ": ", base::Sv(s.message())));
}

json NicJson(const GuestNic& nic) {
  json routes = json::array();
  for (const GuestRoute& r : nic.routes) routes.push_back({{"dst", r.dst}, {"gateway", r.gateway}});
  json out = {{"cni_ifname", nic.cni_ifname}, {"tap_name", nic.tap_name}, {"mac", nic.mac},
          {"mtu", nic.mtu},           {"addresses", nic.addresses}, {"gateway4", nic.gateway4},
          {"gateway6", nic.gateway6}, {"routes", std::move(routes)}};
  if (!nic.gateway6_mac.empty()) out["gateway6_mac"] = nic.gateway6_mac;  // records before it lack it
  return out;
}

void ReadNic(ObjectReader& in, GuestNic* nic) {
  in.Str("cni_ifname", &nic->cni_ifname);
  in.Str("tap_name", &nic->tap_name);
  in.Str("mac", &nic->mac);
  in.Int("mtu", &nic->mtu);
  in.StrList("addresses", &nic->addresses);
  in.Str("gateway4", &nic->gateway4);
  in.Str("gateway6", &nic->gateway6);
  in.Str("gateway6_mac", &nic->gateway6_mac);
  in.Objects("routes", [&](ObjectReader& r) {
    GuestRoute route;
    r.Str("dst", &route.dst);
    r.Str("gateway", &route.gateway);
    nic->routes.push_back(std::move(route));
  });
}

json NetworkJson(const NetworkStatus& network) {
  json nics = json::array();
  for (const GuestNic& nic : network.nics) nics.push_back(NicJson(nic));
  return {{"ip", network.ip},
          {"additional_ips", network.additional_ips},
          {"nic", NicJson(network.nics.empty() ? GuestNic{} : network.nics.front())},
          {"nics", std::move(nics)}};
}

// Keeps in *status an error naming `field` when `value` is not a record ID.
void CheckIdField(std::string_view field, const std::string& value, absl::Status* status) {
  if (status->ok() && !IsValidId(value)) {
    *status = absl::InvalidArgumentError(base::StrCat("field \"", field, "\" value \"", value, "\" is not ",
                                                      kIdLength, " lowercase hex characters"));
  }
}

std::string Dump(const json& j) {
  // replace: invalid UTF-8 must not throw; CRI strings are UTF-8 already.
  return j.dump(1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

std::string_view PhaseName(Phase p) { return NameOf(kPhases, p); }
std::string_view SandboxStateName(SandboxState s) { return NameOf(kSandboxStates, s); }
std::string_view ContainerStateName(ContainerState s) { return NameOf(kContainerStates, s); }
std::string_view ProtocolName(Protocol p) { return NameOf(kProtocols, p); }
std::string_view BootKindName(BootKind k) { return NameOf(kBootKinds, k); }

bool IsValidId(std::string_view id) { return base::IsLowerHex(id, kIdLength); }

std::string SandboxName(const SandboxMetadata& m) {
  return base::StrCat(m.name, "_", m.namespace_, "_", m.uid, "_", m.attempt);
}

std::string ContainerName(const ContainerMetadata& m) { return base::StrCat(m.name, "_", m.attempt); }

std::string SandboxRecord::ToJson() const {
  json ports = json::array();
  for (const PortMapping& p : port_mappings) {
    ports.push_back({{"protocol", ProtocolName(p.protocol)},
                     {"container_port", p.container_port},
                     {"host_port", p.host_port},
                     {"host_ip", p.host_ip}});
  }
  json j = {
      {"version", kRecordVersion},
      {"id", id},
      {"metadata",
       {{"name", metadata.name},
        {"namespace", metadata.namespace_},
        {"uid", metadata.uid},
        {"attempt", metadata.attempt}}},
      {"runtime_handler", runtime_handler},
      {"state", SandboxStateName(state)},
      {"phase", PhaseName(phase)},
      {"created_at", created_at},
      {"labels", labels},
      {"annotations", annotations},
      {"log_directory", log_directory},
      {"hostname", hostname},
      {"netns_path", netns_path},
      {"dns", {{"servers", dns.servers}, {"searches", dns.searches}, {"options", dns.options}}},
      {"port_mappings", std::move(ports)},
      {"host_network", host_network},
      {"cgroup_parent", cgroup_parent},
      {"network", NetworkJson(network)},
  };
  if (!sysctls.empty()) j["sysctls"] = sysctls;
  if (!pod_vm.domain_name.empty()) {  // records without one stay as before
    j["pod_vm"] = {{"domain_name", pod_vm.domain_name},   {"dir", pod_vm.dir},
                   {"share", pod_vm.share},               {"console_path", pod_vm.console_path},
                   {"console_socket", pod_vm.console_socket}, {"agent_socket", pod_vm.agent_socket},
                   {"kernel", pod_vm.kernel},             {"initrd", pod_vm.initrd},
                   {"cmdline", pod_vm.cmdline},           {"vcpus", pod_vm.vcpus},
                   {"memory_mib", pod_vm.memory_mib},     {"cgroup_path", pod_vm.cgroup_path},
                   {"cgroup_unit", pod_vm.cgroup_unit},   {"started_at", pod_vm.started_at}};
  }
  return Dump(j);
}

absl::StatusOr<SandboxRecord> SandboxRecord::FromJson(std::string_view text) {
  constexpr std::string_view kWhat = "sandbox record";
  absl::StatusOr<json> doc = ParseVersioned(text, kWhat);
  if (!doc.ok()) return doc.status();
  SandboxRecord r;
  absl::Status status;
  ObjectReader top(*doc, "", &status);
  top.Str("id", &r.id, /*required=*/true);
  if (auto m = top.Object("metadata", /*required=*/true)) {
    m->Str("name", &r.metadata.name, true);
    m->Str("namespace", &r.metadata.namespace_, true);
    m->Str("uid", &r.metadata.uid, true);
    m->Int("attempt", &r.metadata.attempt);
  }
  top.Str("runtime_handler", &r.runtime_handler);
  top.Enum("state", kSandboxStates, &r.state, true);
  top.Enum("phase", kPhases, &r.phase, true);
  top.Int("created_at", &r.created_at);
  top.StrMap("labels", &r.labels);
  top.StrMap("annotations", &r.annotations);
  top.Str("log_directory", &r.log_directory);
  top.Str("hostname", &r.hostname);
  top.Str("netns_path", &r.netns_path);
  if (auto d = top.Object("dns")) {
    d->StrList("servers", &r.dns.servers);
    d->StrList("searches", &r.dns.searches);
    d->StrList("options", &r.dns.options);
  }
  top.Objects("port_mappings", [&](ObjectReader& p) {
    PortMapping pm;
    p.Enum("protocol", kProtocols, &pm.protocol);
    p.Int("container_port", &pm.container_port);
    p.Int("host_port", &pm.host_port);
    p.Str("host_ip", &pm.host_ip);
    r.port_mappings.push_back(std::move(pm));
  });
  top.Bool("host_network", &r.host_network);
  top.Str("cgroup_parent", &r.cgroup_parent);
  if (auto n = top.Object("network")) {
    n->Str("ip", &r.network.ip);
    n->StrList("additional_ips", &r.network.additional_ips);
    bool has_nics = false;
    n->Objects("nics", [&](ObjectReader& in) {
      has_nics = true;
      GuestNic nic;
      ReadNic(in, &nic);
      r.network.nics.push_back(std::move(nic));
    });
    if (!has_nics) {
      GuestNic nic;
      if (auto in = n->Object("nic")) ReadNic(*in, &nic);
      if (!nic.tap_name.empty()) r.network.nics.push_back(std::move(nic));
    }
  }
  top.StrMap("sysctls", &r.sysctls);
  if (auto v = top.Object("pod_vm")) {
    v->Str("domain_name", &r.pod_vm.domain_name, true);
    v->Str("dir", &r.pod_vm.dir);
    v->Str("share", &r.pod_vm.share);
    v->Str("console_path", &r.pod_vm.console_path);
    v->Str("console_socket", &r.pod_vm.console_socket);
    v->Str("agent_socket", &r.pod_vm.agent_socket);
    v->Str("kernel", &r.pod_vm.kernel);
    v->Str("initrd", &r.pod_vm.initrd);
    v->Str("cmdline", &r.pod_vm.cmdline);
    v->Int("vcpus", &r.pod_vm.vcpus);
    v->Int("memory_mib", &r.pod_vm.memory_mib);
    v->Str("cgroup_path", &r.pod_vm.cgroup_path);
    v->Str("cgroup_unit", &r.pod_vm.cgroup_unit);
    v->Int("started_at", &r.pod_vm.started_at);
  }
  CheckIdField("id", r.id, &status);
  if (!status.ok()) return Annotate(status, kWhat);
  return r;
}

std::string ContainerRecord::ToJson() const {
  json devs = json::array();
  for (const DeviceSpec& d : devices) {
    devs.push_back({{"container_path", d.container_path},
                    {"host_path", d.host_path},
                    {"permissions", d.permissions},
                    {"host_rdev", d.host_rdev}});
  }
  json mnts = json::array();
  for (const MountSpec& m : mounts) {
    mnts.push_back({{"container_path", m.container_path},
                    {"host_path", m.host_path},
                    {"readonly", m.readonly},
                    {"host_dev", m.host_dev},
                    {"host_ino", m.host_ino}});
  }
  json j = {
      {"version", kRecordVersion},
      {"id", id},
      {"sandbox_id", sandbox_id},
      {"metadata", {{"name", metadata.name}, {"attempt", metadata.attempt}}},
      {"image", image},
      {"image_ref", image_ref},
      {"labels", labels},
      {"annotations", annotations},
      {"log_path", log_path},
      {"state", ContainerStateName(state)},
      {"phase", PhaseName(phase)},
      {"created_at", created_at},
      {"started_at", started_at},
      {"finished_at", finished_at},
      {"exit_code", exit_code},
      {"reason", reason},
      {"message", message},
      {"domain_name", domain_name},
      {"overlay_path", overlay_path},
      {"console_path", console_path},
      {"vcpus", vcpus},
      {"memory_mib", memory_mib},
      {"max_vcpus", max_vcpus},
      {"max_memory_mib", max_memory_mib},
      {"resources",
       {{"cpu_period", resources.cpu_period},
        {"cpu_quota", resources.cpu_quota},
        {"cpu_shares", resources.cpu_shares},
        {"memory_limit_in_bytes", resources.memory_limit_in_bytes},
        {"cpuset_cpus", resources.cpuset_cpus},
        {"cpuset_mems", resources.cpuset_mems}}},
      {"boot",
       {{"kind", NameOf(kBootKinds, boot.kind)},
        {"kernel", boot.kernel},
        {"initrd", boot.initrd},
        {"cmdline", boot.cmdline},
        {"disk", boot.disk},
        {"disk_format", boot.disk_format},
        {"device", boot.device},
        {"firmware", boot.firmware},
        {"uefi_code", boot.uefi_code},
        {"uefi_vars", boot.uefi_vars},
        {"nvram", boot.nvram},
        {"nvram_device", boot.nvram_device},
        {"tpm", boot.tpm}}},
      {"devices", std::move(devs)},
      {"mounts", std::move(mnts)},
      {"seed_path", seed_path},
      {"io_error_since", io_error_since},
      {"vm_uid", vm_uid},
      {"vm_grants", vm_grants},
      {"console_socket", console_socket},
      {"agent_socket", agent_socket},
      {"cgroup_path", cgroup_path},
      {"cgroup_unit", cgroup_unit},
  };
  if (!bundle_dir.empty()) j["bundle_dir"] = bundle_dir;
  if (!exec_process.empty()) j["exec_process"] = exec_process;
  return Dump(j);
}

absl::StatusOr<ContainerRecord> ContainerRecord::FromJson(std::string_view text) {
  constexpr std::string_view kWhat = "container record";
  absl::StatusOr<json> doc = ParseVersioned(text, kWhat);
  if (!doc.ok()) return doc.status();
  ContainerRecord r;
  absl::Status status;
  ObjectReader top(*doc, "", &status);
  top.Str("id", &r.id, true);
  top.Str("sandbox_id", &r.sandbox_id, true);
  if (auto m = top.Object("metadata", true)) {
    m->Str("name", &r.metadata.name, true);
    m->Int("attempt", &r.metadata.attempt);
  }
  top.Str("image", &r.image);
  top.Str("image_ref", &r.image_ref);
  top.StrMap("labels", &r.labels);
  top.StrMap("annotations", &r.annotations);
  top.Str("log_path", &r.log_path);
  top.Enum("state", kContainerStates, &r.state, true);
  top.Enum("phase", kPhases, &r.phase, true);
  top.Int("created_at", &r.created_at);
  top.Int("started_at", &r.started_at);
  top.Int("finished_at", &r.finished_at);
  top.Int("exit_code", &r.exit_code);
  top.Str("reason", &r.reason);
  top.Str("message", &r.message);
  top.Str("domain_name", &r.domain_name);
  top.Str("overlay_path", &r.overlay_path);
  top.Str("console_path", &r.console_path);
  top.Int("vcpus", &r.vcpus);
  top.Int("memory_mib", &r.memory_mib);
  top.Int("max_vcpus", &r.max_vcpus);
  top.Int("max_memory_mib", &r.max_memory_mib);
  if (auto res = top.Object("resources")) {
    res->Int("cpu_period", &r.resources.cpu_period);
    res->Int("cpu_quota", &r.resources.cpu_quota);
    res->Int("cpu_shares", &r.resources.cpu_shares);
    res->Int("memory_limit_in_bytes", &r.resources.memory_limit_in_bytes);
    res->Str("cpuset_cpus", &r.resources.cpuset_cpus);
    res->Str("cpuset_mems", &r.resources.cpuset_mems);
  }
  if (auto b = top.Object("boot")) {
    b->Enum("kind", kBootKinds, &r.boot.kind);
    b->Str("kernel", &r.boot.kernel);
    b->Str("initrd", &r.boot.initrd);
    b->Str("cmdline", &r.boot.cmdline);
    b->Str("disk", &r.boot.disk);
    b->Str("disk_format", &r.boot.disk_format);
    b->Str("device", &r.boot.device);
    b->Str("firmware", &r.boot.firmware);
    b->Str("uefi_code", &r.boot.uefi_code);
    b->Str("uefi_vars", &r.boot.uefi_vars);
    b->Str("nvram", &r.boot.nvram);
    b->Str("nvram_device", &r.boot.nvram_device);
    b->Bool("tpm", &r.boot.tpm);
  }
  top.Objects("devices", [&](ObjectReader& d) {
    DeviceSpec spec;
    d.Str("container_path", &spec.container_path);
    d.Str("host_path", &spec.host_path);
    d.Str("permissions", &spec.permissions);
    d.Int("host_rdev", &spec.host_rdev);
    r.devices.push_back(std::move(spec));
  });
  top.Objects("mounts", [&](ObjectReader& m) {
    MountSpec spec;
    m.Str("container_path", &spec.container_path);
    m.Str("host_path", &spec.host_path);
    m.Bool("readonly", &spec.readonly);
    m.Int("host_dev", &spec.host_dev);
    m.Int("host_ino", &spec.host_ino);
    r.mounts.push_back(std::move(spec));
  });
  top.Str("seed_path", &r.seed_path);
  top.Int("io_error_since", &r.io_error_since);
  top.Int("vm_uid", &r.vm_uid);
  top.StrList("vm_grants", &r.vm_grants);
  top.Str("console_socket", &r.console_socket);
  top.Str("agent_socket", &r.agent_socket);
  top.Str("cgroup_path", &r.cgroup_path);
  top.Str("cgroup_unit", &r.cgroup_unit);
  top.Str("bundle_dir", &r.bundle_dir);
  top.Str("exec_process", &r.exec_process);
  CheckIdField("id", r.id, &status);
  CheckIdField("sandbox_id", r.sandbox_id, &status);
  if (!status.ok()) return Annotate(status, kWhat);
  return r;
}

}  // namespace kvcri::sandbox
