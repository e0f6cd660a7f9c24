// tc ingress qdiscs and u32 filters with mirred redirects between two interfaces, over netlink.
#include "cni/tc_redirect.h"

#include <linux/if_ether.h>
#include <linux/pkt_sched.h>
#include <linux/tc_act/tc_mirred.h>
#include <netlink/netlink.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/action.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/tc.h>

#include <string>

#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::cni {
namespace {

constexpr uint32_t kIngressHandle = TC_HANDLE(0xffff, 0);
constexpr uint16_t kDhcpPrio = 1;
constexpr uint16_t kRedirectPrio = 2;

absl::StatusOr<nl::ClsPtr> NewU32(int ifindex, uint16_t prio, uint16_t protocol) {
  nl::ClsPtr cls(rtnl_cls_alloc());
  if (!cls) return absl::ResourceExhaustedError("rtnl_cls_alloc failed");
  rtnl_tc_set_ifindex(TC_CAST(cls.get()), ifindex);
  if (int err = rtnl_tc_set_kind(TC_CAST(cls.get()), "u32"); err < 0) {
    return nl::Error(err, "tc filter set kind u32", std::to_string(ifindex));
  }
  rtnl_tc_set_parent(TC_CAST(cls.get()), kIngressHandle);
  rtnl_cls_set_prio(cls.get(), prio);
  rtnl_cls_set_protocol(cls.get(), protocol);
  // Without TC_U32_TERMINAL a matching key set only descends into links.
  rtnl_u32_set_cls_terminal(cls.get());
  return cls;
}

}  // namespace

absl::Status RemoveIngress(nl_sock* sock, std::string_view ifname) {
  auto link = nl::GetLink(sock, ifname);
  if (absl::IsNotFound(link.status())) return absl::OkStatus();
  if (!link.ok()) return link.status();
  nl::QdiscPtr q(rtnl_qdisc_alloc());
  if (!q) return absl::ResourceExhaustedError("rtnl_qdisc_alloc failed");
  rtnl_tc_set_ifindex(TC_CAST(q.get()), rtnl_link_get_ifindex(link->get()));
  rtnl_tc_set_parent(TC_CAST(q.get()), TC_H_INGRESS);
  rtnl_tc_set_handle(TC_CAST(q.get()), kIngressHandle);
  if (int err = rtnl_tc_set_kind(TC_CAST(q.get()), "ingress"); err < 0) {
    return nl::Error(err, "tc qdisc set kind ingress", ifname);
  }
  int err = rtnl_qdisc_delete(sock, q.get());
  // The kernel says EINVAL/ENOENT when there is no ingress qdisc to delete.
  if (err == -NLE_OBJ_NOTFOUND || err == -NLE_INVAL || err == -NLE_NODEV) return absl::OkStatus();
  if (err < 0) return nl::Error(err, "tc qdisc del ingress", ifname);
  return absl::OkStatus();
}

absl::Status RedirectIngress(nl_sock* sock, const nl::LinkAttrs& from, const nl::LinkAttrs& to,
                             RedirectOptions options) {
  const std::string what = base::StrCat(from.name, "\" -> \"", to.name);
  // Replace, so re-wiring after a restart converges on exactly our filters.
  RETURN_IF_ERROR(RemoveIngress(sock, from.name));

  nl::QdiscPtr q(rtnl_qdisc_alloc());
  if (!q) return absl::ResourceExhaustedError("rtnl_qdisc_alloc failed");
  rtnl_tc_set_ifindex(TC_CAST(q.get()), from.ifindex);
  rtnl_tc_set_parent(TC_CAST(q.get()), TC_H_INGRESS);
  rtnl_tc_set_handle(TC_CAST(q.get()), kIngressHandle);
  if (int err = rtnl_tc_set_kind(TC_CAST(q.get()), "ingress"); err < 0) {
    return nl::Error(err, "tc qdisc set kind ingress", from.name);
  }
  if (int err = rtnl_qdisc_add(sock, q.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0) {
    return nl::Error(err, "tc qdisc add ingress", from.name);
  }

  if (options.keep_dhcp_local) {
    // IPv4 without options (IHL 5, what DHCP clients send), not a fragment,
    // protocol UDP, destination port 67. Offsets are from the IP header.
    ASSIGN_OR_RETURN(nl::ClsPtr dhcp, NewU32(from.ifindex, kDhcpPrio, ETH_P_IP));
    int err = 0;
    if (err >= 0) err = rtnl_u32_add_key_uint32(dhcp.get(), 0x05000000, 0x0f000000, 0, 0);
    if (err >= 0) err = rtnl_u32_add_key_uint32(dhcp.get(), 0x00000000, 0x00001fff, 4, 0);
    if (err >= 0) err = rtnl_u32_add_key_uint32(dhcp.get(), 0x00110000, 0x00ff0000, 8, 0);
    if (err >= 0) err = rtnl_u32_add_key_uint32(dhcp.get(), 0x00000043, 0x0000ffff, 20, 0);
    if (err < 0) return nl::Error(err, "tc filter build dhcp keys", from.name);
    // No action: a terminal match returns TC_ACT_OK, so the frame skips the
    // redirect below and dies in tap0's address-less IP stack.
    if (err = rtnl_cls_add(sock, dhcp.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0) {
      return nl::Error(err, "tc filter add dhcp exception", from.name);
    }
  }

  ASSIGN_OR_RETURN(nl::ClsPtr cls, NewU32(from.ifindex, kRedirectPrio, ETH_P_ALL));
  if (int err = rtnl_u32_add_key_uint32(cls.get(), 0, 0, 0, 0); err < 0) {
    return nl::Error(err, "tc filter build match-all key", from.name);
  }
  nl::ActPtr act(rtnl_act_alloc());
  if (!act) return absl::ResourceExhaustedError("rtnl_act_alloc failed");
  if (int err = rtnl_tc_set_kind(TC_CAST(act.get()), "mirred"); err < 0) {
    return nl::Error(err, "tc action set kind mirred", what);
  }
  rtnl_mirred_set_action(act.get(), TCA_EGRESS_REDIR);
  rtnl_mirred_set_policy(act.get(), TC_ACT_STOLEN);
  rtnl_mirred_set_ifindex(act.get(), static_cast<uint32_t>(to.ifindex));
  // The classifier takes its own reference; ours is dropped by ActPtr.
  if (int err = rtnl_u32_add_action(cls.get(), act.get()); err < 0) {
    return nl::Error(err, "tc filter attach mirred", what);
  }
  if (int err = rtnl_cls_add(sock, cls.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0) {
    return nl::Error(err, "tc filter add mirred redirect", what);
  }
  return absl::OkStatus();
}

}  // namespace kvcri::cni
