// Tap wiring in the Pod netns: create the tap, redirect it to eth0, move the addresses to the guest.
#include "cni/tap.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>

#include "cni/ipv6_packet.h"
#include "cni/l2_filter.h"
#include "cni/ndp_probe.h"
#include "cni/netlink.h"
#include "cni/netns_links.h"
#include "cni/tc_redirect.h"
#include "config/base/log.h"
#include "config/base/netns_exec.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::cni {
namespace {

constexpr std::string_view kAliasMagic = "kvcri1";
constexpr size_t kMaxAlias = 255;  // IFALIASZ - 1

void DeriveGateways(WiredNic* nic) { DefaultGateways(nic->routes, &nic->gateway4, &nic->gateway6); }

void SortAddresses(std::vector<IpPrefix>* addrs) {
  std::stable_sort(addrs->begin(), addrs->end(),
                   [](const IpPrefix& a, const IpPrefix& b) { return !a.ipv6() && b.ipv6(); });
}

absl::Status CreatePersistentTap(std::string_view name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(base::StrCat("tap name \"", name, "\" must be 1..15 characters"));
  }
  base::UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!tun.valid()) return absl::ErrnoToStatus(errno, "open \"/dev/net/tun\"");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  // Single queue with vnet headers: what libvirt asks for on <interface
  // type='ethernet'> without <driver queues>. libvirt re-attaches with its
  // own flags; these only shape the persistent device until then.
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(tun.get(), TUNSETIFF, &ifr) != 0) {
    return absl::ErrnoToStatus(errno, base::StrCat("TUNSETIFF \"", name, "\""));
  }
  if (::ioctl(tun.get(), TUNSETOWNER, 0UL) != 0) {
    return absl::ErrnoToStatus(errno, base::StrCat("TUNSETOWNER \"", name, "\""));
  }
  if (::ioctl(tun.get(), TUNSETPERSIST, 1UL) != 0) {
    return absl::ErrnoToStatus(errno, base::StrCat("TUNSETPERSIST \"", name, "\""));
  }
  return absl::OkStatus();
}

absl::Status DeleteLink(nl_sock* sock, std::string_view name) {
  nl::LinkPtr link(rtnl_link_alloc());
  if (!link) return absl::ResourceExhaustedError("rtnl_link_alloc failed");
  std::string n(name);
  rtnl_link_set_name(link.get(), n.c_str());
  int err = rtnl_link_delete(sock, link.get());
  if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND) return absl::OkStatus();
  if (err < 0) return nl::Error(err, "link delete", name);
  return absl::OkStatus();
}

// Writes a per-interface IPv6 sysctl of the calling thread's netns. A kernel
// without IPv6 has nothing to disable.
absl::Status DisableIpv6(std::string_view ifname) {
  std::string path = base::StrCat("/proc/sys/net/ipv6/conf/", ifname, "/disable_ipv6");
  base::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::ErrnoToStatus(errno, base::StrCat("open \"", path, "\""));
  }
  if (::write(fd.get(), "1", 1) != 1) return absl::ErrnoToStatus(errno, base::StrCat("write \"", path, "\""));
  return absl::OkStatus();
}

// The guest's RAs name the IPv6 gateway by its MAC (cni/ipv6_responder.h):
// ask for it while eth0 still holds the Pod address. Without an answer the
// guest gets no default IPv6 route from us (cloud-init guests still get the
// CNI routes), which beats failing the Pod.
void LearnGateway6Mac(WiredNic* nic) {
  if (nic->gateway6.empty()) return;
  auto own = std::find_if(nic->addresses.begin(), nic->addresses.end(), [](const IpPrefix& a) { return a.ipv6(); });
  if (own == nic->addresses.end()) return;
  auto gw = ip6::ParseAddr(nic->gateway6);
  auto src = ip6::ParseAddr(own->address);
  auto mac = dhcp::ParseMac(nic->mac);
  if (!gw.ok() || !src.ok() || !mac.ok()) return;
  absl::StatusOr<dhcp::Mac> router = ResolveRouterMac(nic->cni_ifname, *mac, *src, *gw);
  if (!router.ok()) {
    base::LogWarn("IPv6 gateway MAC not learnt; the guest's router advertisements name no router",
                  {{"interface", nic->cni_ifname}, {"error", std::string(router.status().message())}});
    return;
  }
  nic->gateway6_mac = dhcp::FormatMac(*router);
}

absl::Status WireInNetns(std::string_view cni_ifname, std::string_view tap_name, WiredNic* nic) {
  // The socket outlives `undo` (declared after it): undos use it.
  ASSIGN_OR_RETURN(nl::SockPtr sock, nl::ConnectRoute());
  base::Rollback undo;
  nl_sock* s = sock.get();

  ASSIGN_OR_RETURN(nl::LinkPtr eth_link, nl::GetLink(s, cni_ifname));
  nl::LinkAttrs eth = nl::ReadLink(eth_link.get());
  nic->cni_ifname = std::string(cni_ifname);
  nic->tap_name = std::string(tap_name);
  nic->mac = eth.mac;
  nic->mtu = eth.mtu;

  ASSIGN_OR_RETURN(std::vector<nl::RtAddrPtr> addrs, ListGlobalAddresses(s, eth.ifindex, cni_ifname));
  for (const nl::RtAddrPtr& a : addrs) {
    nic->addresses.push_back(
        IpPrefix{nl::AddrToString(rtnl_addr_get_local(a.get())), rtnl_addr_get_prefixlen(a.get())});
  }
  SortAddresses(&nic->addresses);
  ASSIGN_OR_RETURN(nic->routes, ListRoutes(s, eth.ifindex, cni_ifname));
  DeriveGateways(nic);
  LearnGateway6Mac(nic);

  auto existing_tap = nl::GetLink(s, tap_name);
  if (!existing_tap.ok() && !absl::IsNotFound(existing_tap.status())) return existing_tap.status();
  if (existing_tap.ok() && nic->addresses.empty()) {
    // Already wired: eth0 was flushed by an earlier call.
    nl::LinkAttrs tap = nl::ReadLink(existing_tap->get());
    // Without the record the Pod's IPs are unknowable here; saying so beats
    // handing the guest an empty configuration.
    if (tap.alias.empty()) {
      return absl::FailedPreconditionError(
          base::StrCat("\"", tap_name, "\" exists and \"", cni_ifname,
                       "\" has no addresses, but the tap carries no wiring record; use the saved WiredNic"));
    }
    RETURN_IF_ERROR(DecodeWiringAlias(tap.alias, nic));
  }
  if (!existing_tap.ok()) {
    RETURN_IF_ERROR(CreatePersistentTap(tap_name));
    undo.Add("delete tap", [s, name = std::string(tap_name)] { return DeleteLink(s, name); });
  }
  ASSIGN_OR_RETURN(nl::LinkPtr tap_link, nl::GetLink(s, tap_name));

  RETURN_IF_ERROR(DisableIpv6(tap_name));
  nl::LinkPtr change(rtnl_link_alloc());
  if (!change) return absl::ResourceExhaustedError("rtnl_link_alloc failed");
  rtnl_link_set_mtu(change.get(), static_cast<unsigned>(nic->mtu));
  rtnl_link_set_flags(change.get(), IFF_UP);
  auto alias = EncodeWiringAlias(*nic);
  if (alias.ok()) {
    rtnl_link_set_ifalias(change.get(), alias->c_str());
  } else {
    base::LogWarn("wiring not recorded on tap; a second WireTap cannot recover it",
                  {{"tap", std::string(tap_name)}, {"error", std::string(alias.status().message())}});
  }
  if (int err = rtnl_link_change(s, tap_link.get(), change.get(), 0); err < 0) {
    return nl::Error(err, "link set mtu/up/alias", tap_name);
  }
  ASSIGN_OR_RETURN(tap_link, nl::GetLink(s, tap_name));
  nl::LinkAttrs tap = nl::ReadLink(tap_link.get());

  // The guards (l2_filter.h): the guest sends only as itself, DHCP stays
  // local for our responder, and no rogue RA or DHCP server reaches it. An
  // address-less interface is a plain wire: the guards know no address to
  // allow, and the DHCP and RA of that L2 network are the guest's to use.
  std::vector<sock_filter> inbound, outbound;
  if (!nic->addresses.empty()) {
    ASSIGN_OR_RETURN(GuestAddresses guest, GuestAddressesFromNic(*nic));
    ASSIGN_OR_RETURN(inbound, PodIngressFilter(guest));
    ASSIGN_OR_RETURN(outbound, GuestEgressFilter(guest));
  }
  undo.Add("remove redirect", [s, name = std::string(cni_ifname)] { return RemoveIngress(s, name); });
  RETURN_IF_ERROR(RedirectIngress(s, eth, tap, RedirectOptions{.guard = std::move(inbound)}));
  undo.Add("remove redirect", [s, name = std::string(tap_name)] { return RemoveIngress(s, name); });
  RETURN_IF_ERROR(RedirectIngress(s, tap, eth, RedirectOptions{.guard = std::move(outbound)}));

  // The guest owns the IPs now; the netns must not answer ARP/NDP for them.
  for (const nl::RtAddrPtr& a : addrs) {
    int err = rtnl_addr_delete(s, a.get(), 0);
    if (err < 0 && err != -NLE_NOADDR && err != -NLE_OBJ_NOTFOUND) {
      return nl::Error(
          err, base::StrCat("address delete \"", nl::AddrToString(rtnl_addr_get_local(a.get())), "\""),
          cni_ifname);
    }
  }
  RETURN_IF_ERROR(DisableIpv6(cni_ifname));
  undo.Dismiss();
  return absl::OkStatus();
}

}  // namespace

std::string IpPrefix::Cidr() const { return base::StrCat(address, "/", prefix_len); }

absl::StatusOr<std::string> EncodeWiringAlias(const WiredNic& nic) {
  std::string out(kAliasMagic);
  out += " a=";
  for (size_t i = 0; i < nic.addresses.size(); ++i) {
    if (i) out += ',';
    out += nic.addresses[i].Cidr();
  }
  out += " r=";
  for (size_t i = 0; i < nic.routes.size(); ++i) {
    if (i) out += ',';
    out += nic.routes[i].dst;
    if (!nic.routes[i].gateway.empty()) out += base::StrCat(">", nic.routes[i].gateway);
  }
  if (!nic.gateway6_mac.empty()) out += base::StrCat(" m=", nic.gateway6_mac);
  if (out.size() > kMaxAlias) {
    return absl::ResourceExhaustedError(
        base::StrCat("wiring record for \"", nic.tap_name, "\" is ", out.size(), " bytes, over ", kMaxAlias));
  }
  return out;
}

absl::Status DecodeWiringAlias(std::string_view alias, WiredNic* nic) {
  auto bad = [&] {
    return absl::InvalidArgumentError(base::StrCat("tap alias \"", alias, "\" is not a wiring record"));
  };
  auto split = [](std::string_view s, char sep) {
    std::vector<std::string_view> parts;
    while (!s.empty()) {
      size_t i = s.find(sep);
      parts.push_back(s.substr(0, i));
      if (i == std::string_view::npos) break;
      s.remove_prefix(i + 1);
    }
    return parts;
  };
  std::vector<std::string_view> fields = split(alias, ' ');
  // A fourth field, the IPv6 gateway's MAC, is optional (records before it had three).
  if (fields.size() < 3 || fields.size() > 4 || fields[0] != kAliasMagic || !fields[1].starts_with("a=") ||
      !fields[2].starts_with("r=") || (fields.size() == 4 && !fields[3].starts_with("m="))) {
    return bad();
  }
  std::string gateway6_mac;
  if (fields.size() == 4) {
    if (!dhcp::ParseMac(fields[3].substr(2)).ok()) return bad();
    gateway6_mac = std::string(fields[3].substr(2));
  }
  std::vector<IpPrefix> addrs;
  for (std::string_view a : split(fields[1].substr(2), ',')) {
    size_t slash = a.find('/');
    if (slash == std::string_view::npos) return bad();
    int len = 0;
    auto [p, ec] = std::from_chars(a.data() + slash + 1, a.data() + a.size(), len);
    if (ec != std::errc() || p != a.data() + a.size()) return bad();
    addrs.push_back(IpPrefix{std::string(a.substr(0, slash)), len});
  }
  std::vector<IpRoute> routes;
  for (std::string_view r : split(fields[2].substr(2), ',')) {
    size_t gt = r.find('>');
    routes.push_back(IpRoute{std::string(r.substr(0, gt)),
                             gt == std::string_view::npos ? "" : std::string(r.substr(gt + 1))});
  }
  nic->addresses = std::move(addrs);
  nic->routes = std::move(routes);
  DeriveGateways(nic);
  nic->gateway6_mac = std::move(gateway6_mac);
  return absl::OkStatus();
}

absl::StatusOr<WiredNic> WireTap(const std::filesystem::path& netns, std::string_view cni_ifname,
                                 std::string_view tap_name) {
  WiredNic nic;
  absl::Status s = base::RunInNetns(netns, [&] { return WireInNetns(cni_ifname, tap_name, &nic); });
  if (!s.ok()) {
    return absl::Status(s.code(),
                        base::StrCat("wire tap in netns \"", netns.string(), "\": ", base::Sv(s.message())));
  }
  base::LogInfo("tap wired", {{"netns", netns.string()},
                              {"tap", nic.tap_name},
                              {"mac", nic.mac},
                              {"mtu", std::to_string(nic.mtu)},
                              {"ip", nic.addresses.empty() ? "" : nic.addresses[0].Cidr()}});
  return nic;
}

namespace {

// Gives `cni_ifname` back the Pod's addresses (the tap's wiring record)
// that WireTap took for the guest: CNI DEL's plugins find what to undo
// through them (bridge's ipMasq rules are keyed by the addresses it reads
// off the interface it deletes). Best effort: a failure only means what
// the plugin cannot find it leaves, as before.
void RestoreAddresses(nl_sock* s, std::string_view cni_ifname, std::string_view tap_name) {
  absl::StatusOr<nl::LinkPtr> tap = nl::GetLink(s, tap_name);
  absl::StatusOr<nl::LinkPtr> eth = nl::GetLink(s, cni_ifname);
  if (!tap.ok() || !eth.ok()) return;
  WiredNic nic;
  if (!DecodeWiringAlias(nl::ReadLink(tap->get()).alias, &nic).ok()) return;
  const int ifindex = rtnl_link_get_ifindex(eth->get());
  for (const IpPrefix& p : nic.addresses) {
    if (p.ipv6()) {
      // WireTap turned IPv6 off on it; the address needs it on.
      const std::string path = base::StrCat("/proc/sys/net/ipv6/conf/", cni_ifname, "/disable_ipv6");
      base::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
      if (fd.valid()) (void)!::write(fd.get(), "0", 1);
    }
    nl_addr* raw = nullptr;
    if (nl_addr_parse(p.Cidr().c_str(), AF_UNSPEC, &raw) < 0) continue;
    nl::NlAddrPtr local(raw);
    nl::RtAddrPtr a(rtnl_addr_alloc());
    if (!a) return;
    rtnl_addr_set_ifindex(a.get(), ifindex);
    rtnl_addr_set_local(a.get(), local.get());
    rtnl_addr_set_prefixlen(a.get(), p.prefix_len);
    rtnl_addr_set_flags(a.get(), IFA_F_NODAD);
    int err = rtnl_addr_add(s, a.get(), 0);
    if (err < 0 && err != -NLE_EXIST) {
      base::LogWarn("address not restored before CNI DEL", {{"address", p.Cidr()}, {"error", nl_geterror(err)}});
    }
  }
}

}  // namespace

absl::Status Unwire(const std::filesystem::path& netns, std::string_view cni_ifname,
                    std::string_view tap_name) {
  std::error_code ec;
  if (!std::filesystem::exists(netns, ec)) return absl::OkStatus();
  absl::Status s = base::RunInNetns(netns, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(nl::SockPtr sock, nl::ConnectRoute());
    // Teardown continues past failures and reports the first.
    absl::Status first = RemoveIngress(sock.get(), cni_ifname);
    // Before the tap (its record) goes.
    RestoreAddresses(sock.get(), cni_ifname, tap_name);
    absl::Status del = DeleteLink(sock.get(), tap_name);
    if (first.ok()) first = del;
    return first;
  });
  // A netns unmounted between the check and the open is gone too.
  if (absl::IsNotFound(s) && !std::filesystem::exists(netns, ec)) return absl::OkStatus();
  if (!s.ok()) {
    return absl::Status(s.code(),
                        base::StrCat("unwire netns \"", netns.string(), "\": ", base::Sv(s.message())));
  }
  return absl::OkStatus();
}

std::string TapNameFor(size_t index) { return base::StrCat("tap", index); }

absl::StatusOr<WiredNic> NetlinkTapWiring::Wire(const std::filesystem::path& netns, std::string_view cni_ifname,
                                                std::string_view tap_name) {
  if (absl::Status s = BringUpLoopback(netns); !s.ok()) {
    return absl::Status(s.code(), StrCat("loopback: ", s.message()));
  }
  return WireTap(netns, cni_ifname, tap_name);
}

}  // namespace kvcri::cni
