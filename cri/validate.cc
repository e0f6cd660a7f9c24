// Validation of CRI requests: sandbox and container configs, ID arguments.
#include "cri/validate.h"

#include <filesystem>

#include "config/base/str.h"

namespace kvcri::cri {
namespace {

absl::Status Invalid(std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(base::StrCat(field, " ", why));
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
  for (std::string_view s : {md.name(), md.namespace_(), md.uid()}) {
    if (s.find('/') != std::string_view::npos || s.find('\0') != std::string_view::npos)
      return Invalid("config.metadata", base::StrCat("has a name part with '/' or NUL: \"", s, "\""));
  }
  if (!config.log_directory().empty()) {
    std::filesystem::path dir(config.log_directory());
    if (!dir.is_absolute())
      return Invalid("config.log_directory", base::StrCat("\"", config.log_directory(), "\" is not absolute"));
    if (HasDotDot(dir))
      return Invalid("config.log_directory", base::StrCat("\"", config.log_directory(), "\" contains \"..\""));
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
  if (config.metadata().name().find('/') != std::string::npos)
    return Invalid("config.metadata.name", base::StrCat("\"", config.metadata().name(), "\" contains '/'"));
  if (!config.has_image() || config.image().image().empty()) return Invalid("config.image.image", "is empty");
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
