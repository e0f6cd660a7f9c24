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
  if (code_.empty() || code_.size() > BPF_MAXINSNS) return bug("empty or longer than BPF_MAXINSNS");
  if (!pending_.empty()) return bug("a label is bound past the last instruction");
  if (BPF_CLASS(code_.back().f.code) != BPF_RET) return bug("the last instruction is not a return");
  std::vector<sock_filter> out;
  out.reserve(code_.size());
  for (size_t i = 0; i < code_.size(); ++i) {
    sock_filter f = code_[i].f;
    auto offset = [&](Label l, uint32_t max) -> absl::StatusOr<uint32_t> {
      if (l == kNext) return 0;
      if (l < 0 || static_cast<size_t>(l) >= bound_.size()) return bug("unknown label");
      int target = bound_[l];
      if (target == -1) return bug(base::StrCat("label ", l, " is never bound"));
      if (target == -2) return bug(base::StrCat("label ", l, " is bound twice"));
      if (static_cast<size_t>(target) <= i) {
        return bug(base::StrCat("instruction ", i, " jumps backward to label ", l));
      }
      uint32_t off = static_cast<uint32_t>(target) - static_cast<uint32_t>(i) - 1;
      if (off > max) return bug(base::StrCat("instruction ", i, " jumps ", off, " ahead, over ", max));
      return off;
    };
    if (BPF_CLASS(f.code) == BPF_JMP) {
      if (BPF_OP(f.code) == BPF_JA) {
        absl::StatusOr<uint32_t> k = offset(code_[i].jt, UINT32_MAX);
        if (!k.ok()) return k.status();
        f.k = *k;
      } else {
        absl::StatusOr<uint32_t> jt = offset(code_[i].jt, 255);
        if (!jt.ok()) return jt.status();
        absl::StatusOr<uint32_t> jf = offset(code_[i].jf, 255);
        if (!jf.ok()) return jf.status();
        f.jt = static_cast<uint8_t>(*jt);
        f.jf = static_cast<uint8_t>(*jf);
      }
    }
    out.push_back(f);
  }
  return out;
}

}  // namespace kvcri::cni::bpf
