// libnl wrappers: deleters, errors as Status, route sockets, link reads; lo brought up in a netns.
#include "cni/netlink.h"

#include <linux/if.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/action.h>
#include <netlink/route/addr.h>
#include <netlink/route/classifier.h>
#include <netlink/route/link.h>
#include <netlink/route/qdisc.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "config/base/netns_exec.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::cni::nl {

void SockFree::operator()(nl_sock* p) const { nl_socket_free(p); }
void CacheFree::operator()(nl_cache* p) const { nl_cache_free(p); }
void AddrFree::operator()(nl_addr* p) const { nl_addr_put(p); }
void LinkFree::operator()(rtnl_link* p) const { rtnl_link_put(p); }
void RtAddrFree::operator()(rtnl_addr* p) const { rtnl_addr_put(p); }
void QdiscFree::operator()(rtnl_qdisc* p) const { rtnl_qdisc_put(p); }
void ClsFree::operator()(rtnl_cls* p) const { rtnl_cls_put(p); }
void ActFree::operator()(rtnl_act* p) const { rtnl_act_put(p); }

absl::Status Error(int nl_err, std::string_view op, std::string_view ifname) {
  int code = nl_err < 0 ? -nl_err : nl_err;
  std::string msg = base::StrCat(op, " on \"", ifname, "\": ", nl_geterror(code));
  switch (code) {
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV:
      return absl::NotFoundError(msg);
    case NLE_EXIST:
      return absl::AlreadyExistsError(msg);
    case NLE_PERM:
    case NLE_NOACCESS:
      return absl::PermissionDeniedError(msg);
    case NLE_INVAL:
    case NLE_RANGE:
      return absl::InvalidArgumentError(msg);
    case NLE_BUSY:
    case NLE_AGAIN:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::StatusOr<SockPtr> ConnectRoute() {
  SockPtr sock(nl_socket_alloc());
  if (!sock) return absl::ResourceExhaustedError("nl_socket_alloc failed");
  if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0) {
    return Error(err, "connect NETLINK_ROUTE", "-");
  }
  return sock;
}

absl::StatusOr<LinkPtr> GetLink(nl_sock* sock, std::string_view name) {
  rtnl_link* raw = nullptr;
  std::string n(name);
  if (int err = rtnl_link_get_kernel(sock, 0, n.c_str(), &raw); err < 0) {
    return Error(err, "get link", name);
  }
  return LinkPtr(raw);
}

LinkAttrs ReadLink(rtnl_link* link) {
  LinkAttrs a;
  a.ifindex = rtnl_link_get_ifindex(link);
  if (const char* n = rtnl_link_get_name(link)) a.name = n;
  a.mtu = static_cast<int>(rtnl_link_get_mtu(link));
  a.flags = rtnl_link_get_flags(link);
  if (const char* al = rtnl_link_get_ifalias(link)) a.alias = al;
  if (nl_addr* mac = rtnl_link_get_addr(link); mac && nl_addr_get_len(mac) == 6) {
    const auto* b = static_cast<const unsigned char*>(nl_addr_get_binary_addr(mac));
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
    a.mac = buf;
  }
  return a;
}

std::string AddrToString(const nl_addr* addr) {
  if (addr == nullptr) return "";
  NlAddrPtr copy(nl_addr_clone(addr));
  if (!copy) return "";
  // nl_addr2str appends "/len" unless the prefix is the full length.
  nl_addr_set_prefixlen(copy.get(), static_cast<int>(nl_addr_get_len(copy.get())) * 8);
  char buf[INET6_ADDRSTRLEN + 8];
  nl_addr2str(copy.get(), buf, sizeof buf);
  return buf;
}

}  // namespace kvcri::cni::nl

namespace kvcri::cni {

absl::Status BringUpLoopback(const std::filesystem::path& netns_path) {
  return base::RunInNetns(netns_path, [&]() -> absl::Status {
    base::UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!sock.valid()) return absl::ErrnoToStatus(errno, "socket for loopback ioctl");
    struct ifreq ifr;
    std::memset(&ifr, 0, sizeof ifr);
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) != 0) {
      return absl::ErrnoToStatus(errno, base::StrCat("SIOCGIFFLAGS \"lo\" in \"", netns_path.string(), "\""));
    }
    if (ifr.ifr_flags & IFF_UP) return absl::OkStatus();
    ifr.ifr_flags |= IFF_UP;
    if (::ioctl(sock.get(), SIOCSIFFLAGS, &ifr) != 0) {
      return absl::ErrnoToStatus(errno, base::StrCat("SIOCSIFFLAGS \"lo\" up in \"", netns_path.string(), "\""));
    }
    return absl::OkStatus();
  });
}

}  // namespace kvcri::cni
