// Validation of CRI requests: sandbox and container configs, ID arguments.
#include "cri/validate.h"

#include <cctype>
#include <cstdio>
#include <filesystem>

#include "config/base/str.h"

namespace kvcri::cri {
namespace {

absl::Status Invalid(std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(base::StrCat(field, " ", why));
}

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool HasControlChars(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// Quotes a value for an error message; control characters as \xNN so the
// message (and the log line quoting it) shows what was sent.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + "\"";
}

// RFC 1123 label as Kubernetes checks it (IsDNS1123Label): at most 63
// characters, lowercase alphanumerics and '-', starting and ending with an
// alphanumeric.
absl::Status CheckDnsLabel(std::string_view field, std::string_view v) {
  if (v.size() > 63) return Invalid(field, base::StrCat(Quote(v), " is longer than 63 characters"));
  bool ok = !v.empty() && IsLowerAlnum(v.front()) && IsLowerAlnum(v.back());
  for (char c : v) ok = ok && (IsLowerAlnum(c) || c == '-');
  if (!ok) {
    return Invalid(field, base::StrCat(Quote(v),
                                       " is not a DNS-1123 label (lowercase letters, digits and '-', starting and "
                                       "ending with a letter or digit), as Kubernetes requires"));
  }
  return absl::OkStatus();
}

// RFC 1123 subdomain (IsDNS1123Subdomain): at most 253 characters, labels of
// the above characters separated by '.'.
absl::Status CheckDnsSubdomain(std::string_view field, std::string_view v) {
  if (v.size() > 253) return Invalid(field, base::StrCat(Quote(v), " is longer than 253 characters"));
  bool ok = !v.empty();
  for (size_t i = 0; ok && i < v.size(); ++i) {
    const char c = v[i];
    const bool edge = i == 0 || i + 1 == v.size() || v[i - 1] == '.' || v[i + 1] == '.';
    ok = IsLowerAlnum(c) || (c == '-' && !edge) || (c == '.' && i > 0 && i + 1 < v.size() && v[i - 1] != '.');
  }
  if (!ok) {
    return Invalid(field, base::StrCat(Quote(v),
                                       " is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', each "
                                       "part starting and ending with a letter or digit), as Kubernetes requires"));
  }
  return absl::OkStatus();
}

// kubelet sends the Pod's UID (a UUID; a hash for static Pods); crictl users
// write their own. Characters that separate fields in CNI_ARGS (';', '='),
// in our sandbox names ('_' is allowed: the UID is the last free part) or in
// paths are refused.
absl::Status CheckUid(std::string_view field, std::string_view v) {
  if (v.size() > 128) return Invalid(field, base::StrCat(Quote(v), " is longer than 128 characters"));
  for (char c : v) {
    if (!(IsLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '-' || c == '_' || c == '.')) {
      return Invalid(field, base::StrCat(Quote(v), " has a character other than letters, digits, '-', '_' and '.'"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckNoControlChars(std::string_view field, std::string_view v) {
  if (HasControlChars(v)) return Invalid(field, base::StrCat(Quote(v), " contains control characters"));
  return absl::OkStatus();
}

bool HasDotDot(const std::filesystem::path& p) {
  for (const auto& part : p) {
    if (part == "..") return true;
  }
  return false;
}

}  // namespace

bool IsContainedRelativePath(std::string_view path) {
  if (path.empty()) return false;
  std::filesystem::path p(path);
  if (p.is_absolute() || HasDotDot(p)) return false;
  std::filesystem::path norm = p.lexically_normal();
  return !norm.empty() && norm != ".";
}

absl::Status ValidateSandboxConfig(const pb::PodSandboxConfig& config) {
  if (!config.has_metadata()) return Invalid("config.metadata", "is missing");
  const pb::PodSandboxMetadata& md = config.metadata();
  if (md.name().empty()) return Invalid("config.metadata.name", "is empty");
  if (md.namespace_().empty()) return Invalid("config.metadata.namespace", "is empty");
  if (md.uid().empty()) return Invalid("config.metadata.uid", "is empty");
  // Kubernetes' own rules (pod names are DNS subdomains, namespaces DNS
  // labels): what kubelet sends always passes, and nothing that passes can
  // inject into CNI_ARGS (';', '='), a path ('/') or a log or XML line.
  if (absl::Status s = CheckDnsSubdomain("config.metadata.name", md.name()); !s.ok()) return s;
  if (absl::Status s = CheckDnsLabel("config.metadata.namespace", md.namespace_()); !s.ok()) return s;
  if (absl::Status s = CheckUid("config.metadata.uid", md.uid()); !s.ok()) return s;
  // Free-form fields that reach the VM's definition, its seed or a path:
  // refused here rather than at StartContainer.
  if (absl::Status s = CheckNoControlChars("config.hostname", config.hostname()); !s.ok()) return s;
  if (config.hostname().size() > 253)
    return Invalid("config.hostname", base::StrCat(Quote(config.hostname()), " is longer than 253 characters"));
  if (absl::Status s = CheckNoControlChars("config.log_directory", config.log_directory()); !s.ok()) return s;
  if (auto it = config.annotations().find(kKernelCmdlineAnnotation); it != config.annotations().end()) {
    if (absl::Status s =
            CheckNoControlChars(base::StrCat("config.annotations[\"", kKernelCmdlineAnnotation, "\"]"), it->second);
        !s.ok())
      return s;
  }
  if (!config.log_directory().empty()) {
    std::filesystem::path dir(config.log_directory());
    if (!dir.is_absolute())
      return Invalid("config.log_directory", base::StrCat("\"", config.log_directory(), "\" is not absolute"));
    if (HasDotDot(dir))
      return Invalid("config.log_directory", base::StrCat("\"", config.log_directory(), "\" contains \"..\""));
  }
  if (config.has_linux()) {
    // Applied in a Pod micro-VM by its init (docs/microvm.md): names as
    // /proc/sys paths, values as one line each.
    if (config.linux().sysctls_size() > 64) return Invalid("config.linux.sysctls", "has more than 64 entries");
    for (const auto& [name, value] : config.linux().sysctls()) {
      const std::string field = base::StrCat("config.linux.sysctls[", Quote(name), "]");
      bool ok = !name.empty() && name.size() <= 128 && name.front() != '.' && name.front() != '/' &&
                name.find("..") == std::string::npos;
      for (char ch : name) ok = ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-' || ch == '/');
      if (!ok) return Invalid(field, "is not a sysctl name (letters, digits, \"._-/\", no \"..\")");
      if (value.size() > 256) return Invalid(field, "has a value longer than 256 bytes");
      if (absl::Status s = CheckNoControlChars(field, value); !s.ok()) return s;
    }
  }
  for (int i = 0; i < config.port_mappings_size(); ++i) {
    const pb::PortMapping& pm = config.port_mappings(i);
    std::string field = base::StrCat("config.port_mappings[", i, "]");
    if (pm.container_port() <= 0 || pm.container_port() > 65535)
      return Invalid(field, base::StrCat("container_port ", pm.container_port(), " is out of range"));
    if (pm.host_port() < 0 || pm.host_port() > 65535)
      return Invalid(field, base::StrCat("host_port ", pm.host_port(), " is out of range"));
  }
  return absl::OkStatus();
}

absl::Status ValidateContainerConfig(const pb::ContainerConfig& config) {
  if (!config.has_metadata()) return Invalid("config.metadata", "is missing");
  if (config.metadata().name().empty()) return Invalid("config.metadata.name", "is empty");
  // Container names are DNS labels in Kubernetes.
  if (absl::Status s = CheckDnsLabel("config.metadata.name", config.metadata().name()); !s.ok()) return s;
  if (!config.has_image() || config.image().image().empty()) return Invalid("config.image.image", "is empty");
  if (absl::Status s = CheckNoControlChars("config.image.image", config.image().image()); !s.ok()) return s;
  if (absl::Status s = CheckNoControlChars("config.log_path", config.log_path()); !s.ok()) return s;
  if (!config.log_path().empty() && !IsContainedRelativePath(config.log_path()))
    return Invalid("config.log_path",
                   base::StrCat("\"", config.log_path(), "\" must be relative to the sandbox log directory and not escape it"));
  return absl::OkStatus();
}

absl::Status ValidateIdArgument(std::string_view field, std::string_view id) {
  if (id.empty()) return Invalid(field, "is empty");
  if (id.size() > 64) return Invalid(field, base::StrCat("\"", id, "\" is longer than 64 characters"));
  for (char c : id) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    if (!ok) return Invalid(field, base::StrCat("\"", id, "\" is not a hexadecimal ID"));
  }
  return absl::OkStatus();
}

}  // namespace kvcri::cri
