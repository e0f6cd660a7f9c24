// BpfAssembler: label resolution and the checks the kernel's cBPF checker would make on jumps.
#include "cni/bpf_program.h"

#include "config/base/str.h"

namespace kvcri::cni::bpf {

Assembler::Label Assembler::NewLabel() {
  bound_.push_back(-1);
  return static_cast<Label>(bound_.size() - 1);
}

void Assembler::Bind(Label label) { pending_.push_back(label); }

void Assembler::Stmt(uint16_t code, uint32_t k) {
  for (Label l : pending_) bound_[l] = bound_[l] == -1 ? static_cast<int>(code_.size()) : -2;
  pending_.clear();
  Insn insn;
  insn.f.code = code;
  insn.f.k = k;
  code_.push_back(insn);
}

void Assembler::Jump(uint16_t code, uint32_t k, Label jt, Label jf) {
  Stmt(code, k);
  code_.back().jt = jt;
  code_.back().jf = jf;
}

void Assembler::Goto(Label target) {
  Stmt(BPF_JMP | BPF_JA, 0);
  code_.back().jt = target;
}

absl::StatusOr<std::vector<sock_filter>> Assembler::Finish() const {
  auto bug = [&](std::string_view why) {
    return absl::InternalError(base::StrCat("BPF program \"", name_, "\": ", why));
  };
  if (code_.empty()) return bug("empty");
  if (!pending_.empty()) return bug("a label is bound past the last instruction");
  if (BPF_CLASS(code_.back().f.code) != BPF_RET) return bug("the last instruction is not a return");
  const size_t n = code_.size();
  // Instruction index each branch lands on; n stands for "no branch".
  auto target = [&](size_t i, Label l) -> absl::StatusOr<size_t> {
    if (l == kNext) return i + 1;
    if (l < 0 || static_cast<size_t>(l) >= bound_.size()) return bug("unknown label");
    int t = bound_[l];
    if (t == -1) return bug(base::StrCat("label ", l, " is never bound"));
    if (t == -2) return bug(base::StrCat("label ", l, " is bound twice"));
    if (static_cast<size_t>(t) <= i) return bug(base::StrCat("instruction ", i, " jumps backward to label ", l));
    return static_cast<size_t>(t);
  };
  struct Branches {
    bool conditional = false;
    size_t t = 0, f = 0;
    bool via_ja_t = false, via_ja_f = false;  // too far for 8 bits: a BPF_JA right after carries it
  };
  std::vector<Branches> br(n);
  for (size_t i = 0; i < n; ++i) {
    if (BPF_CLASS(code_[i].f.code) != BPF_JMP) continue;
    absl::StatusOr<size_t> t = target(i, code_[i].jt);
    if (!t.ok()) return t.status();
    br[i].t = *t;
    if (BPF_OP(code_[i].f.code) == BPF_JA) continue;
    absl::StatusOr<size_t> f = target(i, code_[i].jf);
    if (!f.ok()) return f.status();
    br[i].conditional = true;
    br[i].f = *f;
  }
  // Lay out, move branches that do not fit onto trampolines, repeat: each
  // round only lengthens jumps, so it ends once nothing changes.
  std::vector<size_t> pos(n + 1);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t i = 0, p = 0; i <= n; ++i) {
      pos[i] = p;
      if (i < n) p += 1 + br[i].via_ja_t + br[i].via_ja_f;
    }
    for (size_t i = 0; i < n; ++i) {
      if (!br[i].conditional) continue;
      if (!br[i].via_ja_t && pos[br[i].t] - pos[i] - 1 > 255) br[i].via_ja_t = changed = true;
      if (!br[i].via_ja_f && pos[br[i].f] - pos[i] - 1 > 255) br[i].via_ja_f = changed = true;
    }
  }
  if (pos[n] > BPF_MAXINSNS) return bug(base::StrCat(pos[n], " instructions, over BPF_MAXINSNS"));
  std::vector<sock_filter> out;
  out.reserve(pos[n]);
  auto ja = [&](size_t to) {
    sock_filter j = BPF_STMT(BPF_JMP | BPF_JA, 0);
    j.k = static_cast<uint32_t>(pos[to] - out.size() - 1);
    out.push_back(j);
  };
  for (size_t i = 0; i < n; ++i) {
    sock_filter f = code_[i].f;
    if (BPF_CLASS(f.code) == BPF_JMP && BPF_OP(f.code) == BPF_JA) {
      f.k = static_cast<uint32_t>(pos[br[i].t] - pos[i] - 1);
      out.push_back(f);
      continue;
    }
    if (!br[i].conditional) {
      out.push_back(f);
      continue;
    }
    f.jt = static_cast<uint8_t>(br[i].via_ja_t ? 0 : pos[br[i].t] - pos[i] - 1);
    f.jf = static_cast<uint8_t>(br[i].via_ja_f ? br[i].via_ja_t : pos[br[i].f] - pos[i] - 1);
    out.push_back(f);
    if (br[i].via_ja_t) ja(br[i].t);
    if (br[i].via_ja_f) ja(br[i].f);
  }
  return out;
}

}  // namespace kvcri::cni::bpf
