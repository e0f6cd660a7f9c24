// The daemon's command-line flags and how they combine with the config file.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"

namespace kvcri::shim {

inline constexpr char kDefaultConfigPath[] = "/etc/kubevirt-cri/config.toml";

// Command-line flags shared by the daemon and its subcommands.
struct Flags {
  std::optional<std::string> config;  // explicit --config must exist
  std::optional<std::string> listen;
  std::optional<std::string> root;
  std::optional<std::string> state_dir;
  std::optional<std::string> log_level;
  bool help = false;
  // Words that are not flags: the subcommand and its arguments.
  std::vector<std::string> args;
};

// Parses `--name value` and `--name=value`; unknown flags are errors.
absl::StatusOr<Flags> ParseFlags(const std::vector<std::string>& argv);

// Loads the config file named by the flags (or the optional default file) and
// applies the flag overrides on top.
absl::StatusOr<config::Config> ResolveConfig(const Flags& flags);

std::string Usage();

}  // namespace kvcri::shim
