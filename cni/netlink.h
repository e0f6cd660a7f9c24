// Owning wrappers for libnl-3 objects, libnl errors as Status, and loopback bring-up in a netns.
#pragma once

// Owning wrappers for libnl-3 / libnl-route-3 objects. Raw libnl types are
// only forward-declared here; every object a caller holds is one of these.

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct nl_sock;
struct nl_cache;
struct nl_addr;
struct rtnl_link;
struct rtnl_addr;
struct rtnl_qdisc;
struct rtnl_cls;
struct rtnl_act;

namespace kvcri::cni::nl {

struct SockFree {
  void operator()(nl_sock* p) const;
};
struct CacheFree {
  void operator()(nl_cache* p) const;
};
struct AddrFree {
  void operator()(nl_addr* p) const;
};
struct LinkFree {
  void operator()(rtnl_link* p) const;
};
struct RtAddrFree {
  void operator()(rtnl_addr* p) const;
};
struct QdiscFree {
  void operator()(rtnl_qdisc* p) const;
};
struct ClsFree {
  void operator()(rtnl_cls* p) const;
};
struct ActFree {
  void operator()(rtnl_act* p) const;
};

using SockPtr = std::unique_ptr<nl_sock, SockFree>;
using CachePtr = std::unique_ptr<nl_cache, CacheFree>;
using NlAddrPtr = std::unique_ptr<nl_addr, AddrFree>;
using LinkPtr = std::unique_ptr<rtnl_link, LinkFree>;
using RtAddrPtr = std::unique_ptr<rtnl_addr, RtAddrFree>;
using QdiscPtr = std::unique_ptr<rtnl_qdisc, QdiscFree>;
using ClsPtr = std::unique_ptr<rtnl_cls, ClsFree>;
using ActPtr = std::unique_ptr<rtnl_act, ActFree>;

// A libnl error (negative NLE_* code) as a Status: `op` on interface
// `ifname` ("tc filter add" on "eth0": Object exists). Codes map to
// NotFound (no such device/object), AlreadyExists, PermissionDenied,
// InvalidArgument, Unavailable (busy/again) or Internal.
absl::Status Error(int nl_err, std::string_view op, std::string_view ifname);

// A NETLINK_ROUTE socket in the calling thread's network namespace.
absl::StatusOr<SockPtr> ConnectRoute();

// The link named `name` as the kernel reports it now; NotFound when absent.
absl::StatusOr<LinkPtr> GetLink(nl_sock* sock, std::string_view name);

// Link attributes we use, read from a LinkPtr.
struct LinkAttrs {
  int ifindex = 0;
  std::string name;
  std::string mac;  // "aa:bb:cc:dd:ee:ff"
  int mtu = 0;
  unsigned flags = 0;  // IFF_*
  std::string alias;   // IFLA_IFALIAS, empty when unset
};
LinkAttrs ReadLink(rtnl_link* link);

// Text form of an nl_addr without prefix length ("10.1.2.3", "fd00::1").
std::string AddrToString(const nl_addr* addr);

}  // namespace kvcri::cni::nl

namespace kvcri::cni {

// Brings `lo` up inside the network namespace at `netns_path` (containerd
// does this itself instead of running the loopback plugin).
absl::Status BringUpLoopback(const std::filesystem::path& netns_path);

}  // namespace kvcri::cni
