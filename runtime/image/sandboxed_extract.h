// ExtractBootArtifacts in a sandboxed child process, because image layers are untrusted.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/image/extract.h"
#include "runtime/image/layer_unpack.h"
#include "runtime/image/oci.h"

namespace kvcri::runtime::image {

struct SandboxOptions {
  ExtractLimits limits;
  // The child is killed at this time (DeadlineExceeded); its CPU time is
  // bounded by the same (RLIMIT_CPU). A pull passes its own deadline.
  absl::Time deadline = absl::InfiniteFuture();
  // When the caller is root, the unprivileged uid and gid the child runs as
  // ([images] extract_uid / extract_gid); never 0.
  uid_t uid = 65534;
  gid_t gid = 65534;
};

// ExtractBootArtifacts in a child process, because layers are untrusted:
//
//  - the child is a fresh exec of /proc/self/exe (no locks or threads
//    inherited from the daemon), recognized before main() by an environment
//    marker, so every binary linking this library can act as the child;
//  - it gets only the layer blobs (opened here, one fd each), a result pipe
//    and its request; every other descriptor is closed;
//  - it writes into a scratch directory of its own, `<out_dir>.child`
//    (created here, owned by options.uid, removed before returning); as
//    root it chroots into it, so it can write nowhere else;
//  - as root it then drops to options.uid/gid (no supplementary groups),
//    drops every capability (effective, permitted, inheritable, ambient and
//    the bounding set), sets no_new_privs, sets rlimits (RLIMIT_FSIZE to
//    limits.max_bytes, RLIMIT_NOFILE, RLIMIT_AS, RLIMIT_CPU from the
//    deadline, no core dumps), and loads a seccomp allowlist of the file and
//    memory syscalls extraction needs: no exec, no sockets, no mount, no
//    ptrace, no chroot, no chmod (denied calls fail EPERM).
//
// The child's answer is untrusted too: the parent takes from the scratch
// directory only the artifacts it names, after checking each is a regular
// file at one of the artifact paths (no symlink on the way), makes it
// root-owned (when root) and 0444, and moves it into `out_dir` (which must
// exist and be empty). Nothing else the child wrote is kept.
//
// Errors keep their code (InvalidArgument for a refused layer, as in
// ExtractBootArtifacts); a child that dies is Internal naming the signal;
// DeadlineExceeded past options.deadline.
absl::StatusOr<BootArtifacts> ExtractBootArtifactsSandboxed(BlobSource& source, const std::vector<Descriptor>& layers,
                                                            const std::filesystem::path& out_dir,
                                                            const SandboxOptions& options = {});

// UnpackLayer (layer_unpack.h) in the same kind of child: a fresh exec,
// only the layer's blob as an fd, chrooted into `out_dir`, rlimits from
// `options`; it stays root but keeps only CAP_CHOWN, CAP_DAC_OVERRIDE,
// CAP_FOWNER, CAP_FSETID and CAP_SETFCAP (owners, modes and file
// capabilities as the layer says), with the extraction seccomp allowlist
// plus fchown/fchmod/symlink/utimensat/fsetxattr/openat2 and mknodat for
// FIFOs only: no device nodes, no exec, no sockets, no mount, no chroot, no
// kill. The whiteouts it records are made here (ApplyOverlayMarks, every
// path checked). `budget` carries the image's totals across its layers.
// Root only (FailedPrecondition otherwise).
absl::StatusOr<UnpackStats> UnpackLayerSandboxed(BlobSource& source, const Descriptor& layer,
                                                 const std::filesystem::path& out_dir, const SandboxOptions& options,
                                                 LayerBudget* budget);

}  // namespace kvcri::runtime::image
