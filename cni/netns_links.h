// Reading a network namespace's links, addresses and routes through netlink: the tap wiring and the shim's adopted Pod network.
#pragma once

#include <filesystem>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cni/netlink.h"
#include "cni/result.h"
#include "cni/tap.h"

namespace kvcri::cni {

// Global-scope addresses of `ifindex` (link-local ones are the kernel's
// own); `ifname` only names the interface in errors.
absl::StatusOr<std::vector<nl::RtAddrPtr>> ListGlobalAddresses(nl_sock* sock, int ifindex, std::string_view ifname);

// Routes of the main table through `ifindex` that CNI (not the kernel) put
// there, defaults first ("0.0.0.0/0", "::/0").
absl::StatusOr<std::vector<IpRoute>> ListRoutes(nl_sock* sock, int ifindex, std::string_view ifname);

// The gateways of the first IPv4 and IPv6 default routes among `routes`
// ("" where there is none): the guest's router per family.
void DefaultGateways(const std::vector<IpRoute>& routes, std::string* gateway4, std::string* gateway6);

// What a CNI ADD somebody else ran left in the netns at `netns` (containerd's
// CRI runs CNI before our shim sees the Pod), in the shape of a CNI result:
// every link but `lo` and tun/tap devices (a tap is ours, from an earlier
// wiring), `primary_ifname` first and the rest in creation (ifindex) order,
// each with its MAC, MTU and `sandbox` = `netns`; their global addresses
// with the interface index and the gateway of that family's default route
// on that link; their routes. cni_version "1.0.0"; raw_json is the result
// as JSON (what a plugin would have printed). NotFound when the netns is
// gone; FailedPrecondition when it holds no such interface at all.
absl::StatusOr<CniResult> ReadNetnsAsCniResult(const std::filesystem::path& netns,
                                               std::string_view primary_ifname = "eth0");

// `result` as CNI 1.0 result JSON (interfaces, ips, routes, dns).
std::string CniResultToJson(const CniResult& result);

}  // namespace kvcri::cni
