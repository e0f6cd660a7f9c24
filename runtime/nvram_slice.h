// NvramSlice: a persistent VM's UEFI variable store handed to QEMU as a loop device over the first bytes of its
// block volume, because OVMF needs a pflash of exactly the template's size (docs/volumes.md).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>

#include "absl/status/statusor.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime {

// A loop device over bytes [0, size) of `device`, with LO_FLAGS_AUTOCLEAR:
// the kernel detaches it when its last opener closes it. We are that opener
// until QEMU opens it (LibvirtHypervisor::Create holds the slice across the
// domain's start), so it detaches itself when QEMU exits, and when we die
// before QEMU opened it: no loop device outlives its VM.
//
// QEMU opens it through `node`, a block device node made for this VM alone
// (owned by uid:gid, 0600), not /dev/loopN: a confined VM's uid must be able
// to open it, and a /dev/loopN owned by a VM's uid would stay openable by
// that uid once the kernel hands the number to someone else. The node is
// unlinked on destruction (QEMU's open file is unaffected).
class NvramSlice {
 public:
  // InvalidArgument when `device` is smaller than `size`; FailedPrecondition
  // when `node`'s filesystem is mounted nodev (QEMU could not open it) or no
  // loop device can be had (module loop, /dev/loop-control).
  static absl::StatusOr<NvramSlice> Attach(const std::filesystem::path& device, uint64_t size,
                                           const std::filesystem::path& node, uid_t uid, gid_t gid);

  NvramSlice(NvramSlice&& other) noexcept;
  NvramSlice& operator=(NvramSlice&& other) noexcept;
  NvramSlice(const NvramSlice&) = delete;
  NvramSlice& operator=(const NvramSlice&) = delete;
  ~NvramSlice();

  const std::filesystem::path& node() const { return node_; }
  int loop_number() const { return number_; }

 private:
  NvramSlice(base::UniqueFd loop, int number, std::filesystem::path node)
      : loop_(std::move(loop)), number_(number), node_(std::move(node)) {}
  void Release();

  base::UniqueFd loop_;
  int number_ = -1;
  std::filesystem::path node_;
};

}  // namespace kvcri::runtime
