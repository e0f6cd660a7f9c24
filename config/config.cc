// Parsing and validating config.toml into Config; defaults, unknown keys and type errors.
#include "config/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <toml++/toml.h>

#include <set>
#include <sstream>

#include "config/base/str.h"
#include "absl/strings/str_join.h"
#include "config/base/file_util.h"
#include "config/base/status_macros.h"

namespace kvcri::config {
namespace {

absl::Status CheckKeys(const toml::table& table, std::string_view where,
                       const std::set<std::string_view>& allowed) {
  for (const auto& [key, node] : table) {
    if (!allowed.count(key.str())) {
      return absl::InvalidArgumentError(base::StrCat(
          "unknown config key \"", where, where.empty() ? "" : ".", key.str(), "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status TypeError(std::string_view key, std::string_view want) {
  return absl::InvalidArgumentError(base::StrCat("config key \"", key, "\" must be ", want));
}

template <typename T>
absl::Status Get(const toml::table& t, std::string_view key, std::string_view full, T* out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return absl::OkStatus();
  if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::filesystem::path>) {
    auto v = n->value<std::string>();
    if (!v) return TypeError(full, "a string");
    *out = *v;
  } else if constexpr (std::is_same_v<T, bool>) {
    auto v = n->value<bool>();
    if (!v || !n->is_boolean()) return TypeError(full, "true or false");
    *out = *v;
  } else if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, int>) {
    auto v = n->value<int64_t>();
    if (!v) return TypeError(full, "an integer");
    *out = static_cast<T>(*v);
  } else {
    static_assert(sizeof(T) == 0, "unsupported type");
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status GetList(const toml::table& t, std::string_view key, std::string_view full,
                     std::vector<T>* out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return absl::OkStatus();
  const toml::array* arr = n->as_array();
  if (arr == nullptr) return TypeError(full, "an array of strings");
  out->clear();
  for (const toml::node& e : *arr) {
    auto v = e.value<std::string>();
    if (!v) return TypeError(full, "an array of strings");
    out->emplace_back(*v);
  }
  return absl::OkStatus();
}

const toml::table* Section(const toml::table& root, std::string_view name, absl::Status* err) {
  const toml::node* n = root.get(name);
  if (n == nullptr) return nullptr;
  if (!n->is_table()) *err = TypeError(name, "a table");
  return n->as_table();
}

absl::Status Validate(const Config& c) {
  if (!c.listen.is_absolute()) return TypeError("listen", "an absolute path");
  if (!c.root.is_absolute()) return TypeError("root", "an absolute path");
  if (!c.state_dir.is_absolute()) return TypeError("state_dir", "an absolute path");
  if (c.vm.default_memory_mib < c.vm.min_memory_mib)
    return TypeError("vm.default_memory_mib", base::StrCat(">= vm.min_memory_mib (", c.vm.min_memory_mib, ")"));
  if (c.vm.default_vcpus < 1) return TypeError("vm.default_vcpus", ">= 1");
  // 240: what an i440fx ('pc') machine of QEMU 7.2 takes (-smp maxcpus).
  if (c.vm.max_vcpus < c.vm.default_vcpus || c.vm.max_vcpus > 240)
    return TypeError("vm.max_vcpus", base::StrCat(">= vm.default_vcpus (", c.vm.default_vcpus, ") and <= 240"));
  if (c.vm.max_disk_mib < 1) return TypeError("vm.max_disk_mib", ">= 1");
  if (c.vm.io_error_timeout_seconds < 1) return TypeError("vm.io_error_timeout_seconds", ">= 1");
  for (auto [key, path] : {std::pair<const char*, const std::filesystem::path*>{"vm.uefi_code", &c.vm.uefi_code},
                           {"vm.uefi_vars", &c.vm.uefi_vars},
                           {"vm.uefi_secure_code", &c.vm.uefi_secure_code},
                           {"vm.uefi_secure_vars", &c.vm.uefi_secure_vars}}) {
    if (!path->is_absolute()) return TypeError(key, "an absolute path");
  }
  if (c.runtime.vm_handlers.empty()) return TypeError("runtime.vm_handlers", "a non-empty array");
  if (!c.runtime.cgroup_driver.empty() && c.runtime.cgroup_driver != "systemd" &&
      c.runtime.cgroup_driver != "cgroupfs") {
    return TypeError("runtime.cgroup_driver", "\"systemd\", \"cgroupfs\" or empty (detect)");
  }
  if (!c.cni.conf_dir.is_absolute()) return TypeError("cni.conf_dir", "an absolute path");
  if (!c.upstream.endpoint.empty() && c.upstream.endpoint.rfind("unix://", 0) != 0)
    return TypeError("upstream.endpoint", "empty or a \"unix://\" target");
  if (c.upstream.list_timeout_seconds < 1) return TypeError("upstream.list_timeout_seconds", ">= 1");
  if (c.upstream.tombstone_ttl_seconds < 1) return TypeError("upstream.tombstone_ttl_seconds", ">= 1");
  if (absl::StatusOr<HostPort> hp = ParseHostPort(c.streaming.address); !hp.ok()) {
    return absl::InvalidArgumentError(base::StrCat("config key \"streaming.address\": ", hp.status().message()));
  }
  if (c.streaming.tls_cert_file.empty() != c.streaming.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "config keys \"streaming.tls_cert_file\" and \"streaming.tls_key_file\" must be set together (or neither)");
  }
  // kubelet's own cache keeps a token one minute; a day is far past any use.
  if (c.streaming.token_ttl_seconds < 1 || c.streaming.token_ttl_seconds > 86400) {
    return TypeError("streaming.token_ttl_seconds", "1..86400");
  }
  if (!c.metrics.address.empty()) {
    if (absl::StatusOr<HostPort> hp = ParseHostPort(c.metrics.address); !hp.ok()) {
      return absl::InvalidArgumentError(base::StrCat("config key \"metrics.address\": ", hp.status().message()));
    }
  }
  if (c.streaming.max_connections < 1 || c.streaming.max_connections > 65536) {
    return TypeError("streaming.max_connections", "1..65536");
  }
  if (!c.microvm.kernel.is_absolute()) return TypeError("microvm.kernel", "an absolute path");
  if (!c.microvm.initramfs.is_absolute()) return TypeError("microvm.initramfs", "an absolute path");
  // The initramfs (≈ 8 MiB, unpacked into RAM) and the agent need 64 MiB.
  if (c.microvm.memory_mib < 128 || c.microvm.memory_mib > 1048576) return TypeError("microvm.memory_mib", "128..1048576");
  if (c.microvm.vcpus < 1 || c.microvm.vcpus > 255) return TypeError("microvm.vcpus", "1..255");
  if (c.microvm.boot_timeout_seconds < 1 || c.microvm.boot_timeout_seconds > 3600) {
    return TypeError("microvm.boot_timeout_seconds", "1..3600");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseVmUidRange(std::string_view text, SecurityConfig* out) {
  if (text.empty()) {
    out->vm_uid_first = out->vm_uid_last = 0;
    return absl::OkStatus();
  }
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        base::StrCat("config key \"security.vm_uid_range\" \"", text, "\" ", why));
  };
  size_t dash = text.find('-');
  if (dash == std::string_view::npos) return bad("is not FIRST-LAST");
  auto number = [](std::string_view s, uint64_t* v) {
    if (s.empty() || s.size() > 10) return false;
    *v = 0;
    for (char ch : s) {
      if (ch < '0' || ch > '9') return false;
      *v = *v * 10 + static_cast<uint64_t>(ch - '0');
    }
    return true;
  };
  uint64_t first = 0, last = 0;
  if (!number(text.substr(0, dash), &first) || !number(text.substr(dash + 1), &last)) {
    return bad("is not FIRST-LAST in decimal");
  }
  // Below 65536 live the system and login users (and 16-bit nobody); at
  // 2^31 and above some tools treat ids as negative.
  if (first < 65536) return bad("starts below 65536, where system and login users live");
  if (last >= (uint64_t{1} << 31)) return bad("ends at or above 2147483648");
  if (last < first) return bad("ends before it starts");
  out->vm_uid_first = static_cast<uint32_t>(first);
  out->vm_uid_last = static_cast<uint32_t>(last);
  return absl::OkStatus();
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(base::StrCat("address \"", text, "\" ", why));
  };
  HostPort out;
  std::string_view port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return bad("is not [IPv6]:port");
    }
    out.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
    in6_addr a6;
    if (inet_pton(AF_INET6, out.host.c_str(), &a6) != 1) return bad("has no numeric IPv6 address");
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("is not IP:port");
    out.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
    in_addr a4;
    if (inet_pton(AF_INET, out.host.c_str(), &a4) != 1) return bad("has no numeric IPv4 address (IPv6: [addr]:port)");
  }
  if (port.empty() || port.size() > 5) return bad("has no port 0..65535");
  uint32_t value = 0;
  for (char ch : port) {
    if (ch < '0' || ch > '9') return bad("has no port 0..65535");
    value = value * 10 + static_cast<uint32_t>(ch - '0');
  }
  if (value > 65535) return bad("has no port 0..65535");
  out.port = static_cast<uint16_t>(value);
  return out;
}

absl::StatusOr<Accelerator> ParseAccelerator(std::string_view text) {
  if (text == "auto") return Accelerator::kAuto;
  if (text == "kvm") return Accelerator::kKvm;
  if (text == "tcg") return Accelerator::kTcg;
  return absl::InvalidArgumentError(
      base::StrCat("accelerator \"", text, "\" is not one of auto, kvm, tcg"));
}

std::string_view AcceleratorName(Accelerator a) {
  switch (a) {
    case Accelerator::kAuto: return "auto";
    case Accelerator::kKvm: return "kvm";
    case Accelerator::kTcg: return "tcg";
  }
  return "auto";
}

std::string ResolveCgroupDriver(const std::string& configured, const std::filesystem::path& systemd_marker) {
  if (!configured.empty()) return configured;
  std::error_code ec;
  return std::filesystem::is_directory(systemd_marker, ec) ? "systemd" : "cgroupfs";
}

std::string Config::LibvirtUri() const {
  if (!libvirt.uri.empty()) return libvirt.uri;
  return base::StrCat("qemu:///embed?root=", (root / "libvirt").string());
}

std::filesystem::path Config::CniCacheDir() const {
  return cni.cache_dir.empty() ? root / "cni-cache" : cni.cache_dir;
}

absl::StatusOr<Config> ParseConfig(std::string_view toml_text, std::string_view source_name) {
  // A leading UTF-8 byte order mark is dropped; past it the file must be
  // ASCII: Debian's toml++ 3.3 reaches __builtin_unreachable() on non-ASCII
  // characters it checks for whitespace (U+00A1, U+FEFB, ...; found by
  // fuzz_config_toml, test/fuzz/regressions/config_toml/). Keys, paths and
  // URIs of this file are ASCII in practice.
  constexpr std::string_view kBom = "\xEF\xBB\xBF";
  if (toml_text.substr(0, kBom.size()) == kBom) toml_text.remove_prefix(kBom.size());
  for (size_t i = 0, line = 1; i < toml_text.size(); ++i) {
    if (toml_text[i] == '\n') ++line;
    if (static_cast<unsigned char>(toml_text[i]) >= 0x80) {
      return absl::InvalidArgumentError(base::StrCat("config \"", source_name, "\" line ", line,
                                                     ": non-ASCII byte; the config file must be ASCII"));
    }
  }
  // Debian's toml++ is built with exceptions; they stop here.
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(base::StrCat(
        "config \"", source_name, "\" line ", e.source().begin.line, ": ", e.description()));
  }
  Config c;
  RETURN_IF_ERROR(CheckKeys(root, "", {"listen", "root", "state_dir", "log_level", "libvirt",
                                       "vm", "cni", "runtime", "images", "upstream", "security",
                                       "streaming", "metrics", "microvm"}));
  RETURN_IF_ERROR(Get(root, "listen", "listen", &c.listen));
  RETURN_IF_ERROR(Get(root, "root", "root", &c.root));
  RETURN_IF_ERROR(Get(root, "state_dir", "state_dir", &c.state_dir));
  RETURN_IF_ERROR(Get(root, "log_level", "log_level", &c.log_level));

  absl::Status err;
  if (const toml::table* t = Section(root, "libvirt", &err)) {
    RETURN_IF_ERROR(CheckKeys(*t, "libvirt", {"uri", "accelerator", "emulator", "lifecycle_events", "state_poll_seconds"}));
    RETURN_IF_ERROR(Get(*t, "lifecycle_events", "libvirt.lifecycle_events", &c.libvirt.lifecycle_events));
    RETURN_IF_ERROR(Get(*t, "state_poll_seconds", "libvirt.state_poll_seconds", &c.libvirt.state_poll_seconds));
    RETURN_IF_ERROR(Get(*t, "uri", "libvirt.uri", &c.libvirt.uri));
    RETURN_IF_ERROR(Get(*t, "emulator", "libvirt.emulator", &c.libvirt.emulator));
    std::string accel = std::string(AcceleratorName(c.libvirt.accelerator));
    RETURN_IF_ERROR(Get(*t, "accelerator", "libvirt.accelerator", &accel));
    ASSIGN_OR_RETURN(c.libvirt.accelerator, ParseAccelerator(accel));
  }
  RETURN_IF_ERROR(err);
  if (const toml::table* t = Section(root, "vm", &err)) {
    RETURN_IF_ERROR(CheckKeys(
        *t, "vm",
        {"default_memory_mib", "min_memory_mib", "default_vcpus", "max_vcpus", "max_disk_mib", "io_error_timeout_seconds",
         "uefi_code", "uefi_vars", "uefi_secure_code", "uefi_secure_vars"}));
    RETURN_IF_ERROR(Get(*t, "default_memory_mib", "vm.default_memory_mib", &c.vm.default_memory_mib));
    RETURN_IF_ERROR(Get(*t, "min_memory_mib", "vm.min_memory_mib", &c.vm.min_memory_mib));
    RETURN_IF_ERROR(Get(*t, "default_vcpus", "vm.default_vcpus", &c.vm.default_vcpus));
    RETURN_IF_ERROR(Get(*t, "max_vcpus", "vm.max_vcpus", &c.vm.max_vcpus));
    RETURN_IF_ERROR(Get(*t, "max_disk_mib", "vm.max_disk_mib", &c.vm.max_disk_mib));
    RETURN_IF_ERROR(Get(*t, "io_error_timeout_seconds", "vm.io_error_timeout_seconds", &c.vm.io_error_timeout_seconds));
    RETURN_IF_ERROR(Get(*t, "uefi_code", "vm.uefi_code", &c.vm.uefi_code));
    RETURN_IF_ERROR(Get(*t, "uefi_vars", "vm.uefi_vars", &c.vm.uefi_vars));
    RETURN_IF_ERROR(Get(*t, "uefi_secure_code", "vm.uefi_secure_code", &c.vm.uefi_secure_code));
    RETURN_IF_ERROR(Get(*t, "uefi_secure_vars", "vm.uefi_secure_vars", &c.vm.uefi_secure_vars));
  }
  RETURN_IF_ERROR(err);
  if (const toml::table* t = Section(root, "cni", &err)) {
    RETURN_IF_ERROR(CheckKeys(*t, "cni", {"conf_dir", "bin_dirs", "cache_dir"}));
    RETURN_IF_ERROR(Get(*t, "conf_dir", "cni.conf_dir", &c.cni.conf_dir));
    RETURN_IF_ERROR(Get(*t, "cache_dir", "cni.cache_dir", &c.cni.cache_dir));
    RETURN_IF_ERROR(GetList(*t, "bin_dirs", "cni.bin_dirs", &c.cni.bin_dirs));
  }
  RETURN_IF_ERROR(err);
  if (const toml::table* t = Section(root, "runtime", &err)) {
    RETURN_IF_ERROR(CheckKeys(*t, "runtime", {"vm_handlers", "default_handler", "cgroup_driver", "default_cgroup_parent"}));
    RETURN_IF_ERROR(GetList(*t, "vm_handlers", "runtime.vm_handlers", &c.runtime.vm_handlers));
    RETURN_IF_ERROR(Get(*t, "default_handler", "runtime.default_handler", &c.runtime.default_handler));
    RETURN_IF_ERROR(Get(*t, "cgroup_driver", "runtime.cgroup_driver", &c.runtime.cgroup_driver));
    RETURN_IF_ERROR(Get(*t, "default_cgroup_parent", "runtime.default_cgroup_parent", &c.runtime.default_cgroup_parent));
  }
  RETURN_IF_ERROR(err);
  if (const toml::table* t = Section(root, "upstream", &err)) {
    RETURN_IF_ERROR(CheckKeys(*t, "upstream", {"endpoint", "list_timeout_seconds", "tombstone_ttl_seconds"}));
    RETURN_IF_ERROR(Get(*t, "endpoint", "upstream.endpoint", &c.upstream.endpoint));
    RETURN_IF_ERROR(Get(*t, "list_timeout_seconds", "upstream.list_timeout_seconds",
                        &c.upstream.list_timeout_seconds));
    RETURN_IF_ERROR(Get(*t, "tombstone_ttl_seconds", "upstream.tombstone_ttl_seconds",
                        &c.upstream.tombstone_ttl_seconds));
  }
  RETURN_IF_ERROR(err);
  if (const toml::table* t = Section(root, "images", &err)) {
    RETURN_IF_ERROR(CheckKeys(*t, "images",
                              {"pull_timeout_seconds", "insecure_registries", "mirrors", "max_image_bytes",
                               "max_image_entries", "extract_uid", "extract_gid"}));
    RETURN_IF_ERROR(Get(*t, "max_image_bytes", "images.max_image_bytes", &c.images.max_image_bytes));
    RETURN_IF_ERROR(Get(*t, "max_image_entries", "images.max_image_entries", &c.images.max_image_entries));
    RETURN_IF_ERROR(Get(*t, "extract_uid", "images.extract_uid", &c.images.extract_uid));
    RETURN_IF_ERROR(Get(*t, "extract_gid", "images.extract_gid", &c.images.extract_gid));
    RETURN_IF_ERROR(Get(*t, "pull_timeout_seconds", "images.pull_timeout_seconds",
                        &c.images.pull_timeout_seconds));
    RETURN_IF_ERROR(GetList(*t, "insecure_registries", "images.insecure_registries",
                            &c.images.insecure_registries));
    if (const toml::table* m = Section(*t, "mirrors", &err)) {
      for (const auto& [domain, node] : *m) {
        std::string key = base::StrCat("images.mirrors.", domain.str());
        RETURN_IF_ERROR(GetList(*m, domain.str(), key, &c.images.mirrors[std::string(domain.str())]));
      }
    }
    RETURN_IF_ERROR(err);
  }
  RETURN_IF_ERROR(err);
  if (const toml::table* t = Section(root, "security", &err)) {
    RETURN_IF_ERROR(CheckKeys(*t, "security", {"vm_uid_range"}));
    RETURN_IF_ERROR(Get(*t, "vm_uid_range", "security.vm_uid_range", &c.security.vm_uid_range));
    RETURN_IF_ERROR(ParseVmUidRange(c.security.vm_uid_range, &c.security));
  }
  RETURN_IF_ERROR(err);
  if (const toml::table* t = Section(root, "streaming", &err)) {
    RETURN_IF_ERROR(CheckKeys(*t, "streaming",
                              {"address", "tls_cert_file", "tls_key_file", "token_ttl_seconds", "max_connections"}));
    RETURN_IF_ERROR(Get(*t, "address", "streaming.address", &c.streaming.address));
    RETURN_IF_ERROR(Get(*t, "tls_cert_file", "streaming.tls_cert_file", &c.streaming.tls_cert_file));
    RETURN_IF_ERROR(Get(*t, "tls_key_file", "streaming.tls_key_file", &c.streaming.tls_key_file));
    RETURN_IF_ERROR(Get(*t, "token_ttl_seconds", "streaming.token_ttl_seconds", &c.streaming.token_ttl_seconds));
    RETURN_IF_ERROR(Get(*t, "max_connections", "streaming.max_connections", &c.streaming.max_connections));
  }
  RETURN_IF_ERROR(err);
  if (const toml::table* t = Section(root, "microvm", &err)) {
    RETURN_IF_ERROR(CheckKeys(*t, "microvm", {"kernel", "initramfs", "memory_mib", "vcpus", "boot_timeout_seconds"}));
    RETURN_IF_ERROR(Get(*t, "kernel", "microvm.kernel", &c.microvm.kernel));
    RETURN_IF_ERROR(Get(*t, "initramfs", "microvm.initramfs", &c.microvm.initramfs));
    RETURN_IF_ERROR(Get(*t, "memory_mib", "microvm.memory_mib", &c.microvm.memory_mib));
    RETURN_IF_ERROR(Get(*t, "vcpus", "microvm.vcpus", &c.microvm.vcpus));
    RETURN_IF_ERROR(Get(*t, "boot_timeout_seconds", "microvm.boot_timeout_seconds", &c.microvm.boot_timeout_seconds));
  }
  RETURN_IF_ERROR(err);
  if (const toml::table* t = Section(root, "metrics", &err)) {
    RETURN_IF_ERROR(CheckKeys(*t, "metrics", {"address"}));
    RETURN_IF_ERROR(Get(*t, "address", "metrics.address", &c.metrics.address));
  }
  RETURN_IF_ERROR(err);
  if (c.images.pull_timeout_seconds < 1) return TypeError("images.pull_timeout_seconds", ">= 1");
  if (c.images.max_image_bytes < 1) return TypeError("images.max_image_bytes", ">= 1");
  if (c.images.max_image_entries < 1) return TypeError("images.max_image_entries", ">= 1");
  // Extraction must leave root; uid_t/gid_t is 32 bits, (uid_t)-1 means "unchanged".
  if (c.images.extract_uid < 1 || c.images.extract_uid > 4294967294) {
    return TypeError("images.extract_uid", "an unprivileged uid (1..4294967294)");
  }
  if (c.images.extract_gid < 1 || c.images.extract_gid > 4294967294) {
    return TypeError("images.extract_gid", "an unprivileged gid (1..4294967294)");
  }
  if (c.libvirt.state_poll_seconds < 1) return TypeError("libvirt.state_poll_seconds", ">= 1");
  RETURN_IF_ERROR(Validate(c));
  return c;
}

absl::StatusOr<Config> LoadConfig(const std::filesystem::path& path, bool optional) {
  absl::StatusOr<std::string> text = base::ReadFile(path);
  if (!text.ok()) {
    if (optional && absl::IsNotFound(text.status())) return Config{};
    return text.status();
  }
  return ParseConfig(*text, path.string());
}

}  // namespace kvcri::config
