// Links, addresses and routes of a network namespace, and the CNI result they amount to (netns_links.h).
#include "cni/netns_links.h"

#include <linux/if_arp.h>
#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <sys/socket.h>

#include <algorithm>
#include <system_error>

#include <nlohmann/json.hpp>

#include "config/base/netns_exec.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::cni {
namespace {

std::string DefaultDst(int family) { return family == AF_INET6 ? "::/0" : "0.0.0.0/0"; }

struct LinkInfo {
  nl::LinkAttrs attrs;
  bool tun = false;  // a tun/tap device (ours from a wiring, never CNI's)
};

absl::StatusOr<std::vector<LinkInfo>> ListLinks(nl_sock* sock) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_link_alloc_cache(sock, AF_UNSPEC, &raw); err < 0) return nl::Error(err, "list links", "");
  nl::CachePtr cache(raw);
  std::vector<LinkInfo> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o != nullptr; o = nl_cache_get_next(o)) {
    auto* link = reinterpret_cast<rtnl_link*>(o);
    LinkInfo info;
    info.attrs = nl::ReadLink(link);
    const char* type = rtnl_link_get_type(link);
    info.tun = type != nullptr && std::string_view(type) == "tun";
    if (rtnl_link_get_arptype(link) == ARPHRD_LOOPBACK) continue;
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<nl::RtAddrPtr>> ListGlobalAddresses(nl_sock* sock, int ifindex, std::string_view ifname) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_addr_alloc_cache(sock, &raw); err < 0) return nl::Error(err, "list addresses", ifname);
  nl::CachePtr cache(raw);
  std::vector<nl::RtAddrPtr> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o != nullptr; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    if (rtnl_addr_get_ifindex(a) != ifindex || rtnl_addr_get_scope(a) != RT_SCOPE_UNIVERSE) continue;
    nl_object_get(o);
    out.emplace_back(a);
  }
  return out;
}

absl::StatusOr<std::vector<IpRoute>> ListRoutes(nl_sock* sock, int ifindex, std::string_view ifname) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_route_alloc_cache(sock, AF_UNSPEC, 0, &raw); err < 0) {
    return nl::Error(err, "list routes", ifname);
  }
  nl::CachePtr cache(raw);
  std::vector<IpRoute> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o != nullptr; o = nl_cache_get_next(o)) {
    auto* r = reinterpret_cast<rtnl_route*>(o);
    // Connected routes (proto kernel) follow from the addresses themselves.
    if (rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_type(r) != RTN_UNICAST ||
        rtnl_route_get_protocol(r) == RTPROT_KERNEL || rtnl_route_get_nnexthops(r) < 1) {
      continue;
    }
    rtnl_nexthop* nh = rtnl_route_nexthop_n(r, 0);
    if (rtnl_route_nh_get_ifindex(nh) != ifindex) continue;
    int family = rtnl_route_get_family(r);
    nl_addr* dst = rtnl_route_get_dst(r);
    IpRoute route;
    if (dst == nullptr || nl_addr_get_prefixlen(dst) == 0) {
      route.dst = DefaultDst(family);
    } else {
      route.dst = base::StrCat(nl::AddrToString(dst), "/", nl_addr_get_prefixlen(dst));
    }
    route.gateway = nl::AddrToString(rtnl_route_nh_get_gateway(nh));
    out.push_back(std::move(route));
  }
  // Defaults first: the order DHCP option 121 and cloud-init will list them.
  std::stable_sort(out.begin(), out.end(), [](const IpRoute& a, const IpRoute& b) {
    bool da = a.dst.ends_with("/0"), db = b.dst.ends_with("/0");
    return da && !db;
  });
  return out;
}

void DefaultGateways(const std::vector<IpRoute>& routes, std::string* gateway4, std::string* gateway6) {
  gateway4->clear();
  gateway6->clear();
  for (const IpRoute& r : routes) {
    if (r.dst == "0.0.0.0/0" && gateway4->empty()) *gateway4 = r.gateway;
    if (r.dst == "::/0" && gateway6->empty()) *gateway6 = r.gateway;
  }
}

absl::StatusOr<CniResult> ReadNetnsAsCniResult(const std::filesystem::path& netns, std::string_view primary_ifname) {
  std::error_code ec;
  if (!std::filesystem::exists(netns, ec)) {
    return absl::NotFoundError(base::StrCat("network namespace \"", netns.string(), "\" does not exist"));
  }
  CniResult result;
  result.cni_version = "1.0.0";
  RETURN_IF_ERROR(base::RunInNetns(netns, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(nl::SockPtr sock, nl::ConnectRoute());
    ASSIGN_OR_RETURN(std::vector<LinkInfo> links, ListLinks(sock.get()));
    links.erase(std::remove_if(links.begin(), links.end(), [](const LinkInfo& l) { return l.tun; }), links.end());
    std::stable_sort(links.begin(), links.end(), [&](const LinkInfo& a, const LinkInfo& b) {
      bool pa = a.attrs.name == primary_ifname, pb = b.attrs.name == primary_ifname;
      if (pa != pb) return pa;
      return a.attrs.ifindex < b.attrs.ifindex;
    });
    for (const LinkInfo& link : links) {
      int index = static_cast<int>(result.interfaces.size());
      CniInterface iface;
      iface.name = link.attrs.name;
      iface.mac = link.attrs.mac;
      if (link.attrs.mtu > 0) iface.mtu = link.attrs.mtu;
      iface.sandbox = netns.string();
      result.interfaces.push_back(std::move(iface));
      ASSIGN_OR_RETURN(std::vector<IpRoute> routes, ListRoutes(sock.get(), link.attrs.ifindex, link.attrs.name));
      std::string gateway4, gateway6;
      DefaultGateways(routes, &gateway4, &gateway6);
      for (const IpRoute& r : routes) result.routes.push_back(CniRoute{r.dst, r.gateway});
      ASSIGN_OR_RETURN(std::vector<nl::RtAddrPtr> addrs,
                       ListGlobalAddresses(sock.get(), link.attrs.ifindex, link.attrs.name));
      std::vector<CniIpConfig> v4, v6;
      for (const nl::RtAddrPtr& a : addrs) {
        std::string address = nl::AddrToString(rtnl_addr_get_local(a.get()));
        bool ipv6 = rtnl_addr_get_family(a.get()) == AF_INET6;
        CniIpConfig ip{base::StrCat(address, "/", rtnl_addr_get_prefixlen(a.get())), ipv6 ? gateway6 : gateway4,
                       index};
        (ipv6 ? v6 : v4).push_back(std::move(ip));
      }
      // IPv4 first, as containerd's selectPodIPs orders the Pod's IPs.
      result.ips.insert(result.ips.end(), v4.begin(), v4.end());
      result.ips.insert(result.ips.end(), v6.begin(), v6.end());
    }
    return absl::OkStatus();
  }));
  if (result.interfaces.empty()) {
    return absl::FailedPreconditionError(
        base::StrCat("network namespace \"", netns.string(), "\" has no interface besides lo: did CNI run?"));
  }
  result.raw_json = CniResultToJson(result);
  return result;
}

std::string CniResultToJson(const CniResult& result) {
  nlohmann::json doc = nlohmann::json::object();
  doc["cniVersion"] = result.cni_version;
  nlohmann::json interfaces = nlohmann::json::array();
  for (const CniInterface& i : result.interfaces) {
    nlohmann::json j = {{"name", i.name}};
    if (!i.mac.empty()) j["mac"] = i.mac;
    if (i.mtu) j["mtu"] = *i.mtu;
    if (!i.sandbox.empty()) j["sandbox"] = i.sandbox;
    interfaces.push_back(std::move(j));
  }
  doc["interfaces"] = std::move(interfaces);
  nlohmann::json ips = nlohmann::json::array();
  for (const CniIpConfig& ip : result.ips) {
    nlohmann::json j = {{"address", ip.address}};
    if (!ip.gateway.empty()) j["gateway"] = ip.gateway;
    if (ip.interface) j["interface"] = *ip.interface;
    ips.push_back(std::move(j));
  }
  doc["ips"] = std::move(ips);
  nlohmann::json routes = nlohmann::json::array();
  for (const CniRoute& r : result.routes) {
    nlohmann::json j = {{"dst", r.dst}};
    if (!r.gw.empty()) j["gw"] = r.gw;
    routes.push_back(std::move(j));
  }
  doc["routes"] = std::move(routes);
  nlohmann::json dns = nlohmann::json::object();
  if (!result.dns.nameservers.empty()) dns["nameservers"] = result.dns.nameservers;
  if (!result.dns.domain.empty()) dns["domain"] = result.dns.domain;
  if (!result.dns.search.empty()) dns["search"] = result.dns.search;
  if (!result.dns.options.empty()) dns["options"] = result.dns.options;
  doc["dns"] = std::move(dns);
  return doc.dump();
}

}  // namespace kvcri::cni
