// Command-line flag parsing, config file resolution and the usage text.
#include "shim/flags.h"

#include "absl/strings/match.h"
#include "config/base/str.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"

namespace kvcri::shim {

absl::StatusOr<Flags> ParseFlags(const std::vector<std::string>& argv) {
  Flags flags;
  struct Known {
    std::string_view name;
    std::optional<std::string>* slot;
  };
  const Known known[] = {{"--config", &flags.config},       {"--listen", &flags.listen},
                         {"--root", &flags.root},           {"--state-dir", &flags.state_dir},
                         {"--log-level", &flags.log_level}};
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "-h" || a == "--help") {
      flags.help = true;
      continue;
    }
    if (!absl::StartsWith(a, "--")) {
      flags.args.push_back(a);
      continue;
    }
    std::string name = a, value;
    bool has_value = false;
    if (size_t eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      has_value = true;
    }
    const Known* match = nullptr;
    for (const Known& k : known) {
      if (k.name == name) match = &k;
    }
    if (match == nullptr) return absl::InvalidArgumentError(base::StrCat("unknown flag \"", name, "\""));
    if (!has_value) {
      if (i + 1 >= argv.size()) return absl::InvalidArgumentError(base::StrCat("flag ", name, " needs a value"));
      value = argv[++i];
    }
    if (value.empty()) return absl::InvalidArgumentError(base::StrCat("flag ", name, " is empty"));
    *match->slot = value;
  }
  return flags;
}

absl::StatusOr<config::Config> ResolveConfig(const Flags& flags) {
  config::Config cfg;
  if (flags.config) {
    ASSIGN_OR_RETURN(cfg, config::LoadConfig(*flags.config, /*optional=*/false));
  } else {
    ASSIGN_OR_RETURN(cfg, config::LoadConfig(kDefaultConfigPath, /*optional=*/true));
  }
  // Flags override exactly what they name, nothing derived from it.
  if (flags.root) cfg.root = *flags.root;
  if (flags.state_dir) cfg.state_dir = *flags.state_dir;
  if (flags.listen) cfg.listen = *flags.listen;
  if (flags.log_level) cfg.log_level = *flags.log_level;
  for (const auto& [name, path] : {std::pair<std::string_view, const std::filesystem::path*>{"--root", &cfg.root},
                                   {"--state-dir", &cfg.state_dir},
                                   {"--listen", &cfg.listen}}) {
    if (!path->is_absolute())
      return absl::InvalidArgumentError(base::StrCat(name, " \"", path->string(), "\" is not an absolute path"));
  }
  base::LogLevel level;
  RETURN_IF_ERROR(base::ParseLogLevel(cfg.log_level, &level));
  // Detected once, so every RuntimeConfig answers the same.
  cfg.runtime.cgroup_driver = config::ResolveCgroupDriver(cfg.runtime.cgroup_driver);
  return cfg;
}

std::string Usage() {
  return R"(Usage:
  kubevirt-cri [flags]                          run the CRI daemon
  kubevirt-cri images import [flags] DIR REF    import an OCI image layout directory as REF
  kubevirt-cri images list [flags]              list stored images
  kubevirt-cri version                          print the version

Flags:
  --config PATH      config file (default /etc/kubevirt-cri/config.toml, optional)
  --listen PATH      CRI unix socket (default /run/kubevirt-cri/kubevirt-cri.sock)
  --root DIR         persistent state: images, sandboxes, libvirt (default /var/lib/kubevirt-cri)
  --state-dir DIR    volatile state: network namespaces (default /run/kubevirt-cri)
  --log-level LEVEL  debug, info, warn or error (default info)
)";
}

}  // namespace kvcri::shim
