// tc ingress qdiscs, cls_bpf guards and u32 filters with mirred redirects between two interfaces, over netlink.
#include "cni/tc_redirect.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/action.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/tc.h>

#include <memory>
#include <string>

#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::cni {
namespace {

constexpr uint32_t kIngressHandle = TC_HANDLE(0xffff, 0);
constexpr uint16_t kGuardPrio = 1;
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

struct MsgFree {
  void operator()(nl_msg* m) const { nlmsg_free(m); }
};

// A cls_bpf filter running `code` in direct-action mode. libnl-route-3 has no
// cls_bpf object, so the RTM_NEWTFILTER request is built here.
absl::Status AddGuard(nl_sock* sock, const nl::LinkAttrs& link, const std::vector<sock_filter>& code) {
  if (code.empty() || code.size() > BPF_MAXINSNS) {
    return absl::InvalidArgumentError(
        base::StrCat("tc guard on \"", link.name, "\" has ", code.size(), " instructions (1..", BPF_MAXINSNS, ")"));
  }
  std::unique_ptr<nl_msg, MsgFree> msg(
      nlmsg_alloc_simple(RTM_NEWTFILTER, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK));
  if (!msg) return absl::ResourceExhaustedError("nlmsg_alloc_simple failed");
  tcmsg tc{};
  tc.tcm_family = AF_UNSPEC;
  tc.tcm_ifindex = link.ifindex;
  tc.tcm_parent = kIngressHandle;
  tc.tcm_info = TC_H_MAKE(static_cast<uint32_t>(kGuardPrio) << 16, htons(ETH_P_ALL));
  int err = nlmsg_append(msg.get(), &tc, sizeof tc, NLMSG_ALIGNTO);
  if (err >= 0) err = nla_put_string(msg.get(), TCA_KIND, "bpf");
  nlattr* opts = err >= 0 ? nla_nest_start(msg.get(), TCA_OPTIONS) : nullptr;
  if (opts == nullptr) err = err < 0 ? err : -NLE_NOMEM;
  if (err >= 0) err = nla_put_u16(msg.get(), TCA_BPF_OPS_LEN, static_cast<uint16_t>(code.size()));
  if (err >= 0) {
    err = nla_put(msg.get(), TCA_BPF_OPS, static_cast<int>(code.size() * sizeof(sock_filter)), code.data());
  }
  if (err >= 0) err = nla_put_u32(msg.get(), TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT);
  if (err >= 0) err = nla_nest_end(msg.get(), opts);
  if (err < 0) return nl::Error(err, "tc filter build bpf guard", link.name);
  if (err = nl_send_auto(sock, msg.get()); err < 0) return nl::Error(err, "tc filter add bpf guard", link.name);
  if (err = nl_wait_for_ack(sock); err < 0) return nl::Error(err, "tc filter add bpf guard", link.name);
  return absl::OkStatus();
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

  if (!options.guard.empty()) RETURN_IF_ERROR(AddGuard(sock, from, options.guard));

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
