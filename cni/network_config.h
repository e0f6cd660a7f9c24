// CNI network configuration lists and the choice of the node's default network.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvcri::cni {

// One network configuration list as the CNI spec defines it (a lone .conf
// plugin config is wrapped into a one-plugin list, as containerd does).
struct NetworkConfigList {
  std::filesystem::path source;
  std::string cni_version;
  std::string name;
  std::vector<std::string> plugin_types;
  // The document to feed plugins, normalized to conflist form.
  std::string json;
};

// Parses a .conflist (or .conf/.json single plugin) document. InvalidArgument
// naming `source` for bad JSON, a missing or invalid name, a cniVersion we do
// not support, or a plugin without "type".
absl::StatusOr<NetworkConfigList> ParseNetworkConfig(std::string_view json,
                                                     const std::filesystem::path& source);

// The default network, like containerd picks it: the lexicographically first
// *.conflist/*.conf/*.json file in `conf_dir` that parses. NotFound (with the
// directory named) when there is no such file; InvalidArgument naming every
// file and its parse error when there are files but none is valid.
absl::StatusOr<NetworkConfigList> FindDefaultNetwork(const std::filesystem::path& conf_dir);

}  // namespace kvcri::cni
