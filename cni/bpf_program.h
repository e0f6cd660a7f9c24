// BpfAssembler: classic BPF programs written with labels, so no jump offset is counted by hand.
#pragma once

// Classic BPF (the socket filter and cls_bpf dialect) built instruction by
// instruction with named forward labels. Offsets counted by hand were how the
// DHCP socket filter came to accept every frame (issue 13): here Finish()
// computes each offset, routes a conditional branch too far for its 8 bits
// through a BPF_JA placed right after it, and refuses a label that is
// unbound, bound twice or backward (classic BPF only jumps forward). Pure.

#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvcri::cni::bpf {

class Assembler {
 public:
  using Label = int;
  // A jump target meaning "the next instruction" (offset 0).
  static constexpr Label kNext = -1;

  // `name` only appears in error messages.
  explicit Assembler(std::string name) : name_(std::move(name)) {}

  Label NewLabel();
  // The next instruction emitted carries `label`. Binding twice is an error
  // reported by Finish().
  void Bind(Label label);

  // A non-jump instruction: BPF_LD/LDX/ST/STX/ALU/RET/MISC with constant k.
  void Stmt(uint16_t code, uint32_t k = 0);
  // A conditional jump (BPF_JMP | BPF_JEQ/JGT/JGE/JSET | BPF_K/BPF_X) to
  // `jt` when true and `jf` when false.
  void Jump(uint16_t code, uint32_t k, Label jt, Label jf);
  // An unconditional jump (BPF_JA, 32-bit offset).
  void Goto(Label target);

  // Shorthands for what our programs use.
  void LoadByte(uint32_t offset) { Stmt(BPF_LD | BPF_B | BPF_ABS, offset); }
  void LoadHalf(uint32_t offset) { Stmt(BPF_LD | BPF_H | BPF_ABS, offset); }
  void LoadWord(uint32_t offset) { Stmt(BPF_LD | BPF_W | BPF_ABS, offset); }
  void LoadByteX(uint32_t offset) { Stmt(BPF_LD | BPF_B | BPF_IND, offset); }
  void LoadHalfX(uint32_t offset) { Stmt(BPF_LD | BPF_H | BPF_IND, offset); }
  void LoadWordX(uint32_t offset) { Stmt(BPF_LD | BPF_W | BPF_IND, offset); }
  void JumpIfEqual(uint32_t k, Label jt, Label jf) { Jump(BPF_JMP | BPF_JEQ | BPF_K, k, jt, jf); }
  void JumpIfAnySet(uint32_t k, Label jt, Label jf) { Jump(BPF_JMP | BPF_JSET | BPF_K, k, jt, jf); }
  void Return(uint32_t k) { Stmt(BPF_RET | BPF_K, k); }

  size_t size() const { return code_.size(); }

  // The program with every label resolved. Internal (a bug in the program's
  // builder) when a label is unbound, bound twice or behind its jump; when
  // the program is empty, too long or does not end in a return.
  absl::StatusOr<std::vector<sock_filter>> Finish() const;

 private:
  struct Insn {
    sock_filter f{};
    Label jt = kNext, jf = kNext;  // for BPF_JMP; jt is the target of BPF_JA
  };
  std::string name_;
  std::vector<Insn> code_;
  std::vector<int> bound_;  // label -> instruction index, -1 unbound, -2 bound twice
  std::vector<Label> pending_;
};

}  // namespace kvcri::cni::bpf
