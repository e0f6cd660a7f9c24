// CniResult: a CNI plugin's result as we use it, and the CNI spec versions we understand.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvcri::cni {

// CNI versions whose configs and results we understand.
bool IsSupportedCniVersion(std::string_view version);
// True when `version` >= `min` (both "x.y.z"); false for unparsable input.
bool CniVersionAtLeast(std::string_view version, std::string_view min);

struct CniInterface {
  std::string name;
  std::string mac;
  std::optional<int> mtu;
  std::string sandbox;  // netns path; empty for host-side interfaces

  bool operator==(const CniInterface&) const = default;
};

struct CniIpConfig {
  std::string address;           // CIDR, e.g. "10.1.2.3/24"
  std::string gateway;           // may be empty
  std::optional<int> interface;  // index into CniResult::interfaces

  bool operator==(const CniIpConfig&) const = default;
};

struct CniRoute {
  std::string dst;  // CIDR
  std::string gw;   // may be empty

  bool operator==(const CniRoute&) const = default;
};

struct CniDns {
  std::vector<std::string> nameservers;
  std::string domain;
  std::vector<std::string> search;
  std::vector<std::string> options;

  bool operator==(const CniDns&) const = default;
};

// A plugin result of any supported version (0.2.0's ip4/ip6 form, 0.3.x,
// 0.4.0, 1.x) in one shape.
struct CniResult {
  std::string cni_version;
  std::vector<CniInterface> interfaces;
  std::vector<CniIpConfig> ips;
  std::vector<CniRoute> routes;
  CniDns dns;
  // The plugin's JSON as it printed it, for prevResult and the cache.
  std::string raw_json;

  bool operator==(const CniResult&) const = default;
};

// InvalidArgument (naming `what`) when `json` is not a result object.
absl::StatusOr<CniResult> ParseCniResult(std::string_view json,
                                         std::string_view what = "result");

// The Pod's IPs (addresses without prefix length), IPv4 first like
// containerd's selectPodIPs: those on the sandbox interface named `ifname`,
// or every IP when the result does not say which interface holds it.
std::vector<std::string> PodIps(const CniResult& result,
                                std::string_view ifname = "eth0");

// The names of the interfaces the result places in the sandbox `netns`
// (entries whose "sandbox" is that path), in the result's order, each once.
// A meta-plugin such as Multus lists eth0, net1, ...: each becomes a guest
// NIC in this order. A result that names none of them (0.2.0-style, or a
// plugin that reports no interfaces) is taken to mean `default_ifname`.
std::vector<std::string> SandboxInterfaces(const CniResult& result, std::string_view netns,
                                           std::string_view default_ifname = "eth0");

}  // namespace kvcri::cni
