// A classic BPF interpreter for tests: runs socket/tc programs over crafted frames, as the kernel would.
#pragma once

// Follows the kernel's cBPF semantics (net/core/filter.c) for what our
// programs use and a little more: a load past the end of the frame ends the
// program with 0, division by zero too; ancillary loads give the packet type
// and the VLAN-tag-present flag. An instruction it does not know fails the
// test and returns 0.

#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/if_packet.h>

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace kvcri::testing {

struct CbpfPacket {
  std::string_view bytes;          // from the Ethernet header
  uint32_t pkttype = PACKET_HOST;  // skb->pkt_type
  bool vlan_tag_present = false;   // a tag taken off into the skb's metadata
};

inline uint32_t RunCbpf(std::span<const sock_filter> prog, const CbpfPacket& pkt) {
  uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {};
  const auto* p = reinterpret_cast<const uint8_t*>(pkt.bytes.data());
  const uint64_t len = pkt.bytes.size();
  auto load = [&](uint64_t off, int size, bool* ok) -> uint32_t {
    if (off + size > len) {
      *ok = false;
      return 0;
    }
    uint32_t v = 0;
    for (int i = 0; i < size; ++i) v = v << 8 | p[off + i];
    return v;
  };
  for (size_t pc = 0; pc < prog.size(); ++pc) {
    const sock_filter& f = prog[pc];
    const uint32_t k = f.k;
    bool ok = true;
    const int size = BPF_SIZE(f.code) == BPF_W ? 4 : BPF_SIZE(f.code) == BPF_H ? 2 : 1;
    switch (BPF_CLASS(f.code)) {
      case BPF_LD:
        switch (BPF_MODE(f.code)) {
          case BPF_ABS:
            if (k >= static_cast<uint32_t>(SKF_AD_OFF)) {
              if (k == static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_PKTTYPE)) {
                a = pkt.pkttype;
              } else if (k == static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT)) {
                a = pkt.vlan_tag_present ? 1 : 0;
              } else {
                ADD_FAILURE() << "cbpf: ancillary load " << k << " not modelled";
                return 0;
              }
              break;
            }
            a = load(k, size, &ok);
            break;
          case BPF_IND:
            a = load(uint64_t{x} + k, size, &ok);
            break;
          case BPF_MEM:
            a = mem[k % BPF_MEMWORDS];
            break;
          case BPF_IMM:
            a = k;
            break;
          case BPF_LEN:
            a = static_cast<uint32_t>(len);
            break;
          default:
            ADD_FAILURE() << "cbpf: ld mode " << f.code;
            return 0;
        }
        if (!ok) return 0;
        break;
      case BPF_LDX:
        switch (BPF_MODE(f.code)) {
          case BPF_IMM:
            x = k;
            break;
          case BPF_MEM:
            x = mem[k % BPF_MEMWORDS];
            break;
          case BPF_LEN:
            x = static_cast<uint32_t>(len);
            break;
          case BPF_MSH:
            x = (load(k, 1, &ok) & 0xf) * 4;
            if (!ok) return 0;
            break;
          default:
            ADD_FAILURE() << "cbpf: ldx mode " << f.code;
            return 0;
        }
        break;
      case BPF_ST:
        mem[k % BPF_MEMWORDS] = a;
        break;
      case BPF_STX:
        mem[k % BPF_MEMWORDS] = x;
        break;
      case BPF_ALU: {
        const uint32_t v = BPF_SRC(f.code) == BPF_X ? x : k;
        switch (BPF_OP(f.code)) {
          case BPF_ADD:
            a += v;
            break;
          case BPF_SUB:
            a -= v;
            break;
          case BPF_MUL:
            a *= v;
            break;
          case BPF_DIV:
            if (v == 0) return 0;
            a /= v;
            break;
          case BPF_MOD:
            if (v == 0) return 0;
            a %= v;
            break;
          case BPF_OR:
            a |= v;
            break;
          case BPF_AND:
            a &= v;
            break;
          case BPF_XOR:
            a ^= v;
            break;
          case BPF_LSH:
            a = v >= 32 ? 0 : a << v;
            break;
          case BPF_RSH:
            a = v >= 32 ? 0 : a >> v;
            break;
          case BPF_NEG:
            a = -a;
            break;
          default:
            ADD_FAILURE() << "cbpf: alu op " << f.code;
            return 0;
        }
        break;
      }
      case BPF_JMP: {
        if (BPF_OP(f.code) == BPF_JA) {
          pc += k;
          break;
        }
        const uint32_t v = BPF_SRC(f.code) == BPF_X ? x : k;
        bool taken = false;
        switch (BPF_OP(f.code)) {
          case BPF_JEQ:
            taken = a == v;
            break;
          case BPF_JGT:
            taken = a > v;
            break;
          case BPF_JGE:
            taken = a >= v;
            break;
          case BPF_JSET:
            taken = (a & v) != 0;
            break;
          default:
            ADD_FAILURE() << "cbpf: jmp op " << f.code;
            return 0;
        }
        pc += taken ? f.jt : f.jf;
        break;
      }
      case BPF_RET:
        return BPF_RVAL(f.code) == BPF_A ? a : k;
      case BPF_MISC:
        if (BPF_MISCOP(f.code) == BPF_TAX) {
          x = a;
        } else {
          a = x;
        }
        break;
      default:
        ADD_FAILURE() << "cbpf: class " << f.code;
        return 0;
    }
  }
  ADD_FAILURE() << "cbpf: fell off the end";
  return 0;
}

}  // namespace kvcri::testing
